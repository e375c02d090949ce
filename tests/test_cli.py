"""End to end through the command line, on a small synthetic zip."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pandas as pd
import pytest
from tables import read_table

from simrec import load_index, make_synthetic_catalog
from simrec.cli import main

COLOURS, SHAPES, VARIANTS = ["red", "blue", "green"], ["shirt", "bag", "shoe"], 2
N = len(COLOURS) * len(SHAPES) * VARIANTS


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A synthetic zip with two junk entries, indexed once through `simrec index`."""
    folder = tmp_path_factory.mktemp("cli")
    zip_path = make_synthetic_catalog(
        folder / "catalog.zip", colours=COLOURS, shapes=SHAPES, n_variants=VARIANTS, image_size=96
    )
    with zipfile.ZipFile(zip_path, "a") as archive:
        archive.writestr("Colors_Products/red/broken.jpg", b"not a jpeg")
        archive.writestr("__MACOSX/Colors_Products/._x.jpg", b"junk")
    out = folder / "index"
    code = main(["index", str(zip_path), "--out", str(out), "--weights", "random", "--image-size", "64", "-q"])
    assert code == 0
    return zip_path, out


def test_index_counts_and_files(built, capsys):
    _, out = built
    meta = json.loads((out / "meta.json").read_text())
    assert meta["photo_folders"] == ["photos"]  # the zip's photos, stored by content
    catalog = read_table(out / meta["files"]["catalog"]["name"])
    photo = catalog.set_index("product_id").at["red/shirt_1", "path"]
    assert photo.startswith("photos/") and photo.endswith(".jpg") and (out / photo).is_file()
    for role in ("catalog", "embeddings", "inverse_norms", "failures"):
        assert (out / meta["files"][role]["name"]).is_file()
    assert meta["count"] == N and meta["failures"] == 2 and meta["weights"] == "random(seed=0)"
    failures = " ".join(pd.read_parquet(out / meta["files"]["failures"]["name"])["path"])
    assert "broken.jpg" in failures and "__MACOSX" in failures


def test_index_prints_summary(tmp_path, capsys):
    zip_path = make_synthetic_catalog(tmp_path / "c.zip", colours=["red", "blue"], shapes=["bag"], n_variants=2)
    argv = ["index", str(zip_path), "--out", str(tmp_path / "i"), "--weights", "random", "--image-size", "32", "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "indexed 4 images, skipped 0 (of 4 files)" in printed
    assert "added 4, updated 0, removed 0, unchanged 0" in printed


def test_query_by_id_json_excludes_itself(built, capsys):
    _, out = built
    assert main(["query", str(out), "--id", "red/shirt_1", "-k", "4", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["query"]["product_id"] == "red/shirt_1" and payload["query"]["label"] == "red"
    results = payload["results"]
    assert len(results) == 4
    assert set(results[0]) == {"rank", "product_id", "path", "label", "distance"}
    assert [r["rank"] for r in results] == [1, 2, 3, 4]
    assert "red/shirt_1" not in [r["product_id"] for r in results]


def test_query_with_an_exact_copy_of_a_catalog_photo(built, tmp_path, capsys):
    _, out = built
    copy = tmp_path / "my_photo.jpg"
    shutil.copy(load_index(out).catalog.set_index("product_id").at["blue/bag_2", "path"], copy)
    plot = tmp_path / "grid.png"
    assert main(["query", str(out), "--image", str(copy), "-k", "3", "--format", "json", "--plot", str(plot)]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results[0]["product_id"] == "blue/bag_2" and results[0]["rank"] == 1
    assert results[0]["distance"] < 1e-4
    assert plot.stat().st_size > 1000


def test_query_table_and_csv(built, capsys):
    _, out = built
    assert main(["query", str(out), "--id", "green/shoe_2", "--format", "csv", "-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "rank,product_id,path,label,distance" and len(lines) == 3
    assert main(["query", str(out), "--id", "green/shoe_2", "-k", "2"]) == 0
    assert "product_id" in capsys.readouterr().out


def test_evaluate_json(built, capsys):
    _, out = built
    assert main(["evaluate", str(out), "-k", "3", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"k", "n", "precision_at_k", "map_at_k", "per_label"} <= set(report)
    assert report["k"] == 3 and report["n"] == N and set(report["per_label"]) == set(COLOURS)
    assert 0 <= report["precision_at_k"] <= 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["query", "{out}", "--id", "red/nope"], "unknown product_id 'red/nope'"),
        (["query", "{out}", "--id", "red/shirt_1", "-k", "500"], "n_neighbors <= 17"),
        (["query", "{tmp}/missing", "--id", "x"], "index folder not found"),
        (["query", "{out}", "--image", "{tmp}/missing.jpg"], "file not found"),
        (["index", "{tmp}/missing.zip", "--out", "{tmp}/o"], "catalog source not found"),
        (["evaluate", "{out}", "-k", "0"], "expected a positive integer"),
        (["query", "{out}"], "one of the arguments --id --image --text is required"),
    ],
)
def test_user_errors_exit_2_with_one_line(built, tmp_path, capsys, argv, message):
    _, out = built
    argv = [a.format(out=out, tmp=tmp_path) for a in argv]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_python_dash_m_works_the_same(built):
    _, out = built
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ok = subprocess.run(
        [sys.executable, "-m", "simrec", "query", str(out), "--id", "red/bag_1", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["query"]["product_id"] == "red/bag_1"
    argv = [sys.executable, "-m", "simrec", "query", str(out), "--id", "nope"]
    bad = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "unknown product_id" in bad.stderr


def _table_rows(text: str) -> dict[str, str]:
    """The rows of a Markdown table whose first cell is a command's usage, by command name."""
    import re

    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)(?: [^`]*)?` \| .* \|$", text, re.M)}


def _commands() -> dict:
    from simrec.cli.parser import build_parser

    return next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices


def test_the_readme_command_table_names_every_command():
    from pathlib import Path

    rows = _table_rows((Path(__file__).parent.parent / "README.md").read_text())
    assert sorted(_commands()) == sorted(rows), "README's command table and simrec's commands differ"


def test_the_options_table_names_every_option_of_every_command():
    from pathlib import Path

    rows = _table_rows((Path(__file__).parent.parent / "docs" / "commands.md").read_text())
    for name, sub in _commands().items():
        assert name in rows, f"docs/commands.md's options table has no row for {name}"
        for action in sub._actions:
            names = [o for o in action.option_strings if o not in ("-h", "--help")]
            if names:
                assert any(f"`{o}" in rows[name] or f" {o} " in rows[name] for o in names), (
                    f"docs/commands.md's row for {name} does not name {names[-1]}"
                )
            elif not action.option_strings:  # a positional: the row's usage calls it what --help calls it
                usage = rows[name].split("|")[1]
                assert (action.metavar or action.dest.upper()) in usage.split("`")[1].split(), (name, action.metavar)


def test_demo_says_what_it_queried_and_where_it_wrote(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--model", "mobilenet-0.25", "--weights", "random", "--image-size", "32"]
    assert main([*argv, "-k", "3", "-q"]) == 0
    said = capsys.readouterr().out
    first = sorted(load_index(out / "index").catalog["label"].unique())[0]
    assert f"the 3 products most like {first}/" in said and "(colour weight 0.15)" in said
    assert f"result grid: {out / 'recommendations.png'}" in said and (out / "recommendations.png").is_file()
