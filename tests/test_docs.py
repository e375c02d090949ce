"""The README stays a five-minute read, and the documentation site builds strictly from docs/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from paths import ROOT

README = ROOT / "README.md"


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    return [page for value in nav.values() for page in _nav_pages(value)]


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 300


def test_the_readme_keeps_its_two_quick_start_commands():
    block = README.read_text().split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line for line in block.splitlines()[1:] if line.strip()]
    assert commands == [
        "pip install -r requirements.txt && python -m simrec demo",
        "pip install -r requirements-dev.txt && python -m pytest",
    ]


def test_every_link_of_the_readme_reaches_a_file():
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), target


def test_every_page_is_in_the_site():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    pages = set(_nav_pages(config["nav"]))
    written = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages == written


def test_the_site_builds_strictly(tmp_path):
    """Strict: a broken link, a missing anchor or an API reference that names nothing fails the build."""
    if shutil.which("mkdocs") is None and not Path(sys.executable).with_name("mkdocs").exists():
        if os.environ.get("CI"):
            pytest.fail("mkdocs is not installed: pip install -r requirements-dev.txt")
        pytest.skip("pip install -r requirements-dev.txt builds the documentation site")
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).with_name("mkdocs"))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert 'id="simrec.recommend"' in api and 'id="simrec.build_index"' in api


def test_the_default_colour_weight_is_written_only_in_core_defaults():
    """Code, notebook and pages say the default by its name (the site fills the value in from it)."""
    from simrec.core.defaults import COLOUR_WEIGHT

    value = re.compile(rf"(?<![\d.]){re.escape(f'{COLOUR_WEIGHT:g}')}(?![\d])")
    places = [*(ROOT / "simrec").rglob("*.py"), *(ROOT / "docs").glob("*.md"), README]
    places += [*(ROOT / "notebooks").glob("*.ipynb")]
    said = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in places
        if path != ROOT / "simrec" / "core" / "defaults.py"
        for line in path.read_text().splitlines()
        if "default" in line.lower() and value.search(line)
    ]
    assert said == []
