"""The SQL side of ``simrec sync``: tables in PostgreSQL with pgvector, and one transaction that writes them.

Three tables, in one schema, named by :class:`Tables`:

* the products table (default ``simrec_products``): ``product_id`` (primary key), ``label``,
  ``photo`` (the photo's URL or path), ``model``, ``generation`` (the index generation whose
  sync last wrote the row), ``digest`` (SHA-256 of what the row holds, to find changed
  products without reading vectors back) and ``embedding``, the unit-length vector:
  ``halfvec(dim)`` above :data:`VECTOR_INDEX_LIMIT` dimensions (pgvector cannot index a
  plain ``vector`` there), ``vector(dim)`` otherwise, with an HNSW index on its cosine ops;
* the recommendations table (default ``simrec_recommendations``): the rows of ``simrec
  export`` (``product_id``, ``rank``, ``neighbor_id``, ``distance``, ``label``,
  ``neighbor_label``), primary key ``(product_id, rank)``;
* the sync table (``<products>_sync``): one row saying what made the vectors (the model
  identity ``--rebuild`` compares), the dimension, the index generation last synced and
  how the recommendations were computed.

:class:`Transaction` is one transaction on one connection: every statement of a sync
runs in it and it commits once, so a reader sees the previous catalog or the new one,
and a writer killed before the commit leaves the previous state (the server rolls back
a transaction whose client is gone). Errors a user can act on (no server, no pgvector,
a missing permission, tables of another shape) become one-line
:class:`~simrec.core.errors.DatabaseError`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from simrec.core.errors import DatabaseError, InvalidArgumentError, MissingDependencyError

VECTOR_INDEX_LIMIT = 2000
"""Most dimensions of a ``vector`` column that pgvector's HNSW index takes; above it simrec stores ``halfvec``."""
HALFVEC_SINCE = (0, 7)
"""The first pgvector with ``halfvec``."""

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class Tables:
    """Where a sync writes: a schema and the names of its tables.

    Attributes:
        schema: The schema (created if missing).
        products: The products table.
        recommendations: The precomputed recommendations table.

    Raises:
        InvalidArgumentError: A name is not a plain lower-case SQL identifier (letters, digits, ``_``).
    """

    schema: str = "public"
    products: str = "simrec_products"
    recommendations: str = "simrec_recommendations"

    def __post_init__(self) -> None:
        # named as sync_index's parameters, which pass them
        names = {"schema": self.schema, "products_table": self.products}
        names["recommendations_table"] = self.recommendations
        for parameter, name in names.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise InvalidArgumentError(
                    f"Expected {parameter} to be a lower-case SQL name (letters, digits, _), got {name!r}",
                    parameters=(parameter,),
                )
        if len({self.products, self.recommendations, self.state}) < 3:
            raise InvalidArgumentError(
                f"Expected different names for the products and recommendations tables, got {self.products!r} twice"
            )

    @property
    def state(self) -> str:
        """The sync table: one row saying what the products table holds."""
        return f"{self.products}_sync"

    def qualified(self, table: str) -> str:
        """``schema.table``, quoted."""
        return f'"{self.schema}"."{table}"'


def vector_type(dim: int) -> str:
    """The pgvector column type simrec stores ``dim``-dimensional vectors in.

    Example:
        >>> vector_type(2048), vector_type(256)
        ('halfvec', 'vector')
    """
    return "halfvec" if dim > VECTOR_INDEX_LIMIT else "vector"


def product_columns(dim: int) -> dict[str, str]:
    """The products table's columns and their SQL types, as PostgreSQL's ``format_type`` writes them."""
    return {
        "product_id": "text",
        "label": "text",
        "photo": "text",
        "model": "text",
        "generation": "text",
        "digest": "bytea",
        "embedding": f"{vector_type(dim)}({dim})",
    }


RECOMMENDATION_COLUMNS = {
    "product_id": "text",
    "rank": "integer",
    "neighbor_id": "text",
    "distance": "double precision",
    "label": "text",
    "neighbor_label": "text",
}
"""The recommendations table's columns: those of ``simrec export``."""

STATE_COLUMNS = {
    "singleton": "boolean",
    "identity": "jsonb",
    "dim": "integer",
    "generation": "text",
    "recommendations": "jsonb",
    "synced_at": "timestamp with time zone",
}
"""The sync table's columns: what made the vectors, the index generation, the recommendation settings."""


def safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    return re.sub(r"^(postgres(?:ql)?://[^:/@?]*):[^@/?]*@", r"\1:***@", url)


def check_url(url: str) -> None:
    """Refuse what is not a PostgreSQL URL before connecting.

    Raises:
        InvalidArgumentError: ``url`` does not start with ``postgresql://`` (or ``postgres://``).
    """
    if not isinstance(url, str) or not url.startswith(_SCHEMES):
        shown = safe_url(url) if isinstance(url, str) else repr(url)
        raise InvalidArgumentError(f"Expected a database URL like postgresql://user@host/dbname, got {shown!r}")


def import_psycopg() -> Any:
    """The ``psycopg`` module with pgvector's adapter, or a one-line error saying how to install them.

    Raises:
        MissingDependencyError: psycopg 3 or pgvector's Python package is not installed.
    """
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg
    except ImportError:
        raise MissingDependencyError(
            "simrec sync needs psycopg 3 and pgvector's Python package: pip install 'simrec[postgres]' "
            "(or pip install 'psycopg[binary]' pgvector)"
        ) from None
    return psycopg


class Transaction:
    """One connection and its one transaction; :meth:`commit` ends it, anything else rolls it back.

    Use it as a context manager from :func:`transaction`.
    """

    def __init__(self, connection: Any, url: str, tables: Tables) -> None:
        self.connection = connection
        self.url = url
        self.tables = tables
        self.created_products = False

    def execute(self, statement: str, params: Sequence[Any] | None = None) -> Any:
        return self.connection.execute(statement, params)

    def lock(self) -> None:
        """Wait for any other sync into the same tables to finish (a transaction-scoped advisory lock)."""
        self.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self.tables.qualified(self.tables.products)])

    def require_vector(self, dim: int) -> None:
        """Create the vector extension if missing and allowed, and check it has what ``dim`` needs.

        Raises:
            DatabaseError: pgvector is not installed on the server, cannot be created by this role, or
                is older than ``halfvec``.
        """
        row = self.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if row is None:
            available = self.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
            if available is None:
                raise DatabaseError(
                    f"pgvector is not installed on the server of {safe_url(self.url)}: install the extension "
                    "(https://github.com/pgvector/pgvector) and run CREATE EXTENSION vector; nothing was written"
                )
            self.execute("CREATE EXTENSION vector")
            row = self.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        version = tuple(int(part) for part in re.findall(r"\d+", row[0])[:2])
        if vector_type(dim) == "halfvec" and version < HALFVEC_SINCE:
            raise DatabaseError(
                f"pgvector {row[0]} in {safe_url(self.url)} has no halfvec, which {dim}-d vectors need: "
                "update it to 0.7 or later (ALTER EXTENSION vector UPDATE); nothing was written"
            )
        from pgvector.psycopg import register_vector

        register_vector(self.connection)

    def prepare_tables(self, wanted: dict[str, dict[str, str]]) -> None:
        """Create the schema and those of the ``wanted`` tables (name: columns) that are missing; check those
        that exist have exactly those columns.

        Raises:
            DatabaseError: A table exists with other columns or types.
        """
        tables = self.tables
        if self.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [tables.schema]).fetchone() is None:
            self.execute(f'CREATE SCHEMA "{tables.schema}"')
        for table, columns in wanted.items():
            existing = self.columns(table)
            if existing is None:
                self._create(table, columns)
                self.created_products |= table == tables.products
            elif existing != columns:
                raise DatabaseError(
                    f"the table {tables.schema}.{table} in {safe_url(self.url)} is not one simrec wrote "
                    f"(it has {_describe(existing)}; simrec writes {_describe(columns)}): pass other table names "
                    "or drop it; nothing was written"
                )

    def columns(self, table: str) -> dict[str, str] | None:
        """A table's columns and ``format_type`` types, in order, or None when it does not exist."""
        rows = self.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [self.tables.schema, table],
        ).fetchall()
        exists = self.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            [self.tables.schema, table],
        ).fetchone()
        return dict(rows) if exists else None

    def _create(self, table: str, columns: dict[str, str]) -> None:
        keys = {
            self.tables.products: "PRIMARY KEY (product_id)",
            self.tables.recommendations: "PRIMARY KEY (product_id, rank)",
            self.tables.state: "PRIMARY KEY (singleton), CHECK (singleton)",
        }
        nullable = {"recommendations"}
        body = ", ".join(
            f'"{name}" {kind}' + ("" if name in nullable else " NOT NULL") for name, kind in columns.items()
        )
        self.execute(f"CREATE TABLE {self.tables.qualified(table)} ({body}, {keys[table]})")

    def create_vector_index(self, dim: int) -> None:
        """The HNSW index on the embedding's cosine distance (``halfvec_cosine_ops`` or ``vector_cosine_ops``)."""
        ops = f"{vector_type(dim)}_cosine_ops"
        name = f"{self.tables.products}_embedding_hnsw"[:63]
        self.execute(
            f'CREATE INDEX "{name}" ON {self.tables.qualified(self.tables.products)} USING hnsw (embedding {ops})'
        )

    def read_state(self) -> dict[str, Any] | None:
        """The sync table's row (``identity``, ``dim``, ``generation``, ``recommendations``), or None."""
        row = self.execute(
            f"SELECT identity, dim, generation, recommendations FROM {self.tables.qualified(self.tables.state)}"
        ).fetchone()
        if row is None:
            return None
        return {"identity": row[0], "dim": row[1], "generation": row[2], "recommendations": row[3]}

    def write_state(self, identity: dict[str, Any], dim: int, generation: str, recommendations: Any) -> None:
        self.execute(
            f"INSERT INTO {self.tables.qualified(self.tables.state)} AS s VALUES (true, %s, %s, %s, %s, now()) "
            "ON CONFLICT (singleton) DO UPDATE SET identity = excluded.identity, dim = excluded.dim, "
            "generation = excluded.generation, recommendations = excluded.recommendations, synced_at = now()",
            [json.dumps(identity), dim, generation, None if recommendations is None else json.dumps(recommendations)],
        )

    def read_digests(self) -> dict[str, bytes]:
        """Every product's digest, by product id."""
        cursor = self.execute(f"SELECT product_id, digest FROM {self.tables.qualified(self.tables.products)}")
        return {product_id: bytes(digest) for product_id, digest in cursor}

    def delete(self, table: str, product_ids: Sequence[str]) -> None:
        """Delete the rows of ``product_ids`` from ``table``."""
        if len(product_ids):
            self.execute(f"DELETE FROM {self.tables.qualified(table)} WHERE product_id = ANY(%s)", [list(product_ids)])

    def copy_products(self, rows: Iterator[tuple], dim: int) -> None:
        """COPY rows ``(product_id, label, photo, model, generation, digest, vector)`` into the products table.

        Each vector is a float32 numpy array, sent in binary as ``halfvec`` or ``vector``.
        """
        from pgvector import HalfVector, Vector

        kind = vector_type(dim)
        wrap = HalfVector if kind == "halfvec" else Vector
        columns = ", ".join(product_columns(dim))
        statement = f"COPY {self.tables.qualified(self.tables.products)} ({columns}) FROM STDIN WITH (FORMAT BINARY)"
        with self.connection.cursor().copy(statement) as copy:
            copy.set_types(["text", "text", "text", "text", "text", "bytea", kind])
            for *fields, vector in rows:
                copy.write_row([*fields, wrap(vector)])

    def read_recommendations(self) -> pd.DataFrame:
        """The recommendations table's ``product_id``, ``rank``, ``neighbor_id``, ``distance``."""
        cursor = self.execute(
            f"SELECT product_id, rank, neighbor_id, distance FROM {self.tables.qualified(self.tables.recommendations)}"
        )
        return pd.DataFrame(cursor.fetchall(), columns=["product_id", "rank", "neighbor_id", "distance"])

    def copy_recommendations(self, frame: pd.DataFrame) -> None:
        """COPY rows with :data:`RECOMMENDATION_COLUMNS` into the recommendations table."""
        columns = ", ".join(RECOMMENDATION_COLUMNS)
        statement = f"COPY {self.tables.qualified(self.tables.recommendations)} ({columns}) FROM STDIN"
        with self.connection.cursor().copy(statement) as copy:
            copy.set_types(["text", "int4", "text", "float8", "text", "text"])
            for row in frame[list(RECOMMENDATION_COLUMNS)].itertuples(index=False):
                copy.write_row(row)

    def clear(self, table: str) -> None:
        """Delete every row of ``table``, when it exists."""
        if self.columns(table) is not None:
            self.execute(f"DELETE FROM {self.tables.qualified(table)}")

    def wrote(self) -> bool:
        """Whether this transaction has written anything (PostgreSQL gives a transaction an id at its first write)."""
        return self.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is not None

    def commit(self) -> None:
        self.connection.commit()


@contextlib.contextmanager
def transaction(url: str, tables: Tables) -> Iterator[Transaction]:
    """Connect to ``url`` and open one transaction; rolled back unless :meth:`Transaction.commit` ran.

    Errors a user can act on become :class:`~simrec.core.errors.DatabaseError`: no server or
    a refused login, a missing permission, a missing pgvector.

    Raises:
        InvalidArgumentError: ``url`` is not a PostgreSQL URL.
        MissingDependencyError: psycopg or pgvector's Python package is not installed.
        DatabaseError: As above; nothing was written.
    """
    check_url(url)
    psycopg = import_psycopg()
    errors = psycopg.errors
    shown = safe_url(url)
    try:
        connection = psycopg.connect(url, autocommit=False)
    except psycopg.OperationalError as error:
        raise DatabaseError(f"cannot connect to {shown}: {_first_line(error)}") from None
    except psycopg.ProgrammingError as error:  # a URL libpq cannot parse
        raise InvalidArgumentError(f"Expected a database URL libpq understands, got {shown!r}: {error}") from None
    try:
        yield Transaction(connection, url, tables)
        connection.rollback()  # a no-op after commit(); undoes a block that returned without it
    except errors.InsufficientPrivilege as error:
        user = connection.info.user
        raise DatabaseError(
            f"the role {user!r} lacks a permission in {shown}: {_first_line(error)}; nothing was written"
        ) from None
    except (errors.UndefinedFile, errors.FeatureNotSupported) as error:
        raise DatabaseError(f"pgvector cannot be used in {shown}: {_first_line(error)}; nothing was written") from None
    except psycopg.OperationalError as error:
        raise DatabaseError(f"lost the connection to {shown}: {_first_line(error)}; nothing was written") from None
    finally:
        connection.close()


def _first_line(error: Exception) -> str:
    diag = getattr(error, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(error)
    return " ".join(message.split())


def _describe(columns: dict[str, str]) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns.items()) or "no columns"


def digests(labels: Sequence[str], photos: Sequence[str], vectors: np.ndarray) -> list[bytes]:
    """SHA-256 of each row's label, photo and float32 vector: equal digests mean an unchanged row."""
    import hashlib

    out = []
    for label, photo, vector in zip(labels, photos, vectors):
        digest = hashlib.sha256(label.encode("utf-8", "surrogatepass") + b"\0")
        digest.update(photo.encode("utf-8", "surrogatepass") + b"\0")
        digest.update(np.ascontiguousarray(vector, dtype="<f4").tobytes())
        out.append(digest.digest())
    return out
