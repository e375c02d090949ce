"""The notebook stays a clean tutorial; CI executes it separately (pytest --nbmake)."""

import json
from pathlib import Path

import pytest

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
    assert {"ZIP_PATH", "WEIGHTS", "N_NEIGHBORS", "BATCH_SIZE", "MAX_IMAGES", "REPO_URL"} <= set(names)


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
