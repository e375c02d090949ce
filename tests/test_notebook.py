"""The notebook stays a clean tutorial; CI executes it separately (pytest --nbmake).

Its Colab-only cells are run here too, with the Colab guard forced: the install cells in
fresh virtual environments, from a wheel, a zip and a folder of this checkout.
"""

import json
import os
import shutil
import site
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "image_similarity.ipynb"
SECTIONS = [
    "Setup",
    "Data preparation",
    "Model definition",
    "Embeddings extraction",
    "Recommendation system (KNN)",
    "Results visualisation",
    "Evaluate and save",
]


@pytest.fixture(scope="module")
def cells():
    return json.loads(NOTEBOOK.read_text())["cells"]


def test_outputs_are_stripped(cells):
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "".join(cell["source"])[:60]


def test_one_parameters_cell_in_upper_case(cells):
    tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    names = [line.split("=")[0].strip() for line in "".join(tagged[0]["source"]).splitlines() if "=" in line]
    assert names and all(name.isupper() for name in names)
    assert {"ZIP_PATH", "WEIGHTS", "N_NEIGHBORS", "BATCH_SIZE", "MAX_IMAGES", "SIMREC_SOURCE"} <= set(names)


def test_sections_follow_the_pipeline(cells):
    headings = [
        line
        for c in cells
        if c["cell_type"] == "markdown"
        for line in "".join(c["source"]).splitlines()
        if line.startswith("## ")
    ]
    found = [h.split(". ", 1)[-1] for h in headings if h[3].isdigit()]
    assert found == SECTIONS


def test_code_cells_are_short_calls_without_definitions(cells):
    """At most five lines besides imports, and no def or class."""
    for cell in cells:
        if cell["cell_type"] != "code" or "parameters" in cell["metadata"].get("tags", []):
            continue
        source = "".join(cell["source"])
        code = [line for line in source.splitlines() if line.strip() and not line.startswith(("import ", "from "))]
        assert len(code) <= 5, source
        assert not any(line.lstrip().startswith(("def ", "class ")) for line in source.splitlines()), source


def test_colab_only_cells_are_guarded(cells):
    for cell in cells:
        source = "".join(cell["source"])
        if "google.colab import" in source:
            assert source.startswith("if IN_COLAB"), source


def _code(cell) -> str:
    return "".join(cell["source"])


def _cell_index(cells, text: str) -> int:
    return next(i for i, c in enumerate(cells) if c["cell_type"] == "code" and text in _code(c))


def test_drive_is_mounted_before_anything_reads_a_drive_path(cells):
    mount = _cell_index(cells, "drive.mount(")
    parameters = _cell_index(cells, "ZIP_PATH = ")
    readers = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "code"
        and i != parameters
        and any(name in _code(c) for name in ("SIMREC_SOURCE", "ZIP_PATH", "INDEX_DIR"))
    ]
    assert readers and mount < min(readers)


def test_a_zip_path_that_names_no_file_stops_the_notebook(tmp_path):
    """A typo in ZIP_PATH must stop in the data cell, never fall back to the synthetic catalog."""
    import nbclient
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    wrong = tmp_path / "MyDrive" / "Colours_Products.zip"
    (tmp_path / "MyDrive").mkdir()
    (tmp_path / "MyDrive" / "Colors_Products.zip").write_bytes(b"the real one")
    parameters = _cell_index(notebook.cells, "ZIP_PATH = ")
    injected = nbformat.v4.new_code_cell(f"ZIP_PATH = {str(wrong)!r}\nWEIGHTS = 'random'")
    notebook.cells.insert(parameters + 1, injected)
    client = nbclient.NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError) as info:
        client.execute()
    assert info.value.ename in ("FileNotFoundError", "MissingFileError")
    assert str(wrong) in info.value.evalue and "Colors_Products.zip" in info.value.evalue
    failed = [c for c in notebook.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1 and "named_file(ZIP_PATH" in failed[0].source
    assert not (tmp_path / "simrec-work").exists()  # nothing synthetic was made


@pytest.fixture(scope="module")
def install_cells(cells) -> str:
    """The setup and install cells, run as on Colab: google.colab is importable."""
    setup = _cell_index(cells, "IN_COLAB = ")
    install = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and "SIMREC_SOURCE" in _code(c)]
    install = [i for i in install if "parameters" not in cells[i]["metadata"].get("tags", [])]
    assert install and all(i > setup for i in install)
    fake_colab = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n"
    body = "\n".join(_code(cells[i]) for i in [setup, *install])
    return fake_colab + "SIMREC_SOURCE = <source>\n" + body + "\nimport simrec\nprint('simrec from', simrec.__file__)\n"


def _fresh_venv(where: Path) -> tuple[Path, dict[str, str]]:
    """A new virtual environment without simrec that still sees this one's other packages.

    TensorFlow and the rest are reached through a .pth file pointing at links to this
    environment's packages, simrec's own entries left out, so nothing is downloaded and
    the new environment's simrec can only come from the install cell. pip builds without
    isolation and never asks an index: the test needs no network.
    """
    deps = where / "deps"
    deps.mkdir(parents=True)
    for packages in site.getsitepackages():
        for entry in Path(packages).iterdir():
            if "simrec" not in entry.name.lower() and not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    venv.EnvBuilder(with_pip=False).create(where / "venv")
    (next((where / "venv" / "lib").glob("python*/site-packages")) / "deps.pth").write_text(f"{deps}\n")
    return where / "venv" / "bin" / "python", _offline_pip_env()


def _offline_pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # PIP_NO_BUILD_ISOLATION=0 is pip's spelling of --no-build-isolation.
    env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _run_install_cells(script: str, source: str, where: Path) -> subprocess.CompletedProcess:
    python, env = _fresh_venv(where)
    (where / "cells.py").write_text(script.replace("<source>", repr(source), 1))
    return subprocess.run([python, "cells.py"], cwd=where, env=env, capture_output=True, text=True, timeout=600)


def _zip_of(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder.parent).as_posix())
    return zip_path


@pytest.mark.parametrize("kind", ["wheel", "zip", "folder"])
def test_install_cell_installs_simrec_from_a_wheel_a_zip_or_a_folder(
    install_cells, checkout, simrec_wheel, tmp_path, kind
):
    if kind == "wheel":
        source = simrec_wheel
    elif kind == "zip":
        source = _zip_of(checkout, tmp_path / "simrec-main.zip")
    else:
        source = tmp_path / "simrec-main"
        shutil.copytree(checkout, source)
    where = tmp_path / "colab"
    run = _run_install_cells(install_cells, str(source), where)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"simrec from {where / 'venv'}" in run.stdout  # installed there, not this checkout


@pytest.mark.parametrize("source", ["", "/content/drive/MyDrive/simrec-0.1.0-py3-none-any.whl"])
def test_install_cell_says_what_to_put_where_without_a_source(install_cells, tmp_path, source):
    run = _run_install_cells(install_cells, source, tmp_path)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("FileNotFoundError: simrec is not installed: upload its wheel")
    assert "set SIMREC_SOURCE to its path or to a git URL" in last and repr(source) in last
