"""A throwaway PostgreSQL server with pgvector, for the tests and ``benchmarks/postgres.py``.

:func:`start_server` runs Debian's PostgreSQL (``initdb`` then ``pg_ctl start``) in a new
temporary folder, listening on a Unix socket there and on no TCP port. PostgreSQL refuses
to run as root, so when the tests run as root the server runs as the ``postgres`` user
(through ``runuser``). :func:`missing_server` says what to install when it cannot run here.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL = (
    "apt-get install -y postgresql-15 postgresql-server-dev-15 build-essential, build pgvector from "
    "../shared/vendor/pgvector-0.8.6.tar.gz (see ../shared/vendor/README.md), and pip install 'simrec[postgres]'"
)
"""What a machine needs for the PostgreSQL tests (``.ci/run`` does all of it)."""


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def missing_server() -> str | None:
    """Why no test server can run here (with what to install), or None when one can."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        return f"no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): {INSTALL}"
    share = subprocess.run([bin_dir / "pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip()
    if not (Path(share) / "extension" / "vector.control").is_file():
        return f"pgvector is not installed into {share}/extension: {INSTALL}"
    for module in ("psycopg", "pgvector"):
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module} is not installed: {INSTALL}"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser, so the server cannot run as the postgres user"
    return None


@dataclass
class Server:
    """A running server: its folder, its socket folder, and how to reach and stop it."""

    folder: Path
    bin_dir: Path
    user: str | None  # the system user it runs as (None: the current user)

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    def url(self, database: str = "postgres", role: str = "postgres") -> str:
        """A ``postgresql://`` URL of ``database`` on this server's socket, as ``role``."""
        return f"postgresql://{role}@/{database}?host={self.socket_dir}"

    def run(self, *argv: str | os.PathLike, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(a) for a in argv]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Run one statement as the superuser (autocommit: CREATE DATABASE works too)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as connection:
            connection.execute(statement)

    def create_database(self, name: str, template: str = "template1", vector: bool = False) -> str:
        """A new database (a copy of ``template``), with the vector extension if asked; its URL."""
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        if vector:
            self.sql("CREATE EXTENSION IF NOT EXISTS vector", database=name)
        return self.url(name)

    def stop(self) -> None:
        """Stop the server at once and remove its folder."""
        try:
            self.run(self.bin_dir / "pg_ctl", "-D", self.folder / "data", "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start_server(settings: dict[str, str] | None = None) -> Server:
    """Start a fresh server in a new temporary folder (trust authentication, socket only).

    Args:
        settings: Extra server settings (``{"maintenance_work_mem": "1GB"}``).

    Returns:
        The running :class:`Server`; call :meth:`Server.stop` when done.
    """
    bin_dir = _bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="simrec-pg-"))
    user = "postgres" if os.geteuid() == 0 else None
    (folder / "socket").mkdir()
    if user:
        shutil.chown(folder, user)
        shutil.chown(folder / "socket", user)
    server = Server(folder, bin_dir, user)
    try:
        server.run(bin_dir / "initdb", "-D", folder / "data", "-U", "postgres", "-A", "trust", "-E", "UTF8")
        options = {"listen_addresses": "''", "unix_socket_directories": f"'{server.socket_dir}'", "fsync": "on"}
        options.update(settings or {})
        flags = " ".join(f"-c {key}={value}" for key, value in options.items())
        server.run(bin_dir / "pg_ctl", "-D", folder / "data", "-o", flags, "-l", folder / "log", "-w", "start")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return server


def server_or_skip() -> Server:
    """A started server; without one the test skips saying what to install, except in CI (``CI=true``): it fails."""
    import pytest

    reason = missing_server()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    return start_server()
