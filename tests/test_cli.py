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
        (["query", "{out}", "--id", "red/shirt_1", "-k", "500"], "Expected -k <= 17"),  # the option, as typed
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


# --- errors in the caller's words -----------------------------------------------------------


def _caller_terms(out, tmp_path, zip_path):
    """One error of each layer: its Python call and message, then its command line and what that says."""
    from simrec import build_extractor
    from simrec.app.evaluate import collect_labellings, evaluate_index
    from simrec.app.querying import plan_query
    from simrec.serve.running import check_port

    missing = tmp_path / "missing.csv"
    return {
        "pipeline: a KerasHub family without its preset": (
            lambda: build_extractor("random", model="clip"),
            "model=clip takes any CLIPBackbone preset and needs one: pass weights=PRESET_DIR",
            ["index", str(zip_path), "--out", str(tmp_path / "hub"), "--model", "clip", "--weights", "random", "-q"],
            "--model clip takes any CLIPBackbone preset and needs one: pass --weights PRESET_DIR",
        ),
        "search: tuning the approximate search of a blend": (
            lambda: plan_query(load_index(out), 2, nprobe=4, colour_weight=0.5),
            "nprobe and ef tune approximate search, which colour_weight does not use",
            ["query", str(out), "--id", "red/shirt_1", "--nprobe", "4", "--colour-weight", "0.5"],
            "--nprobe and --ef tune approximate search, which --colour-weight does not use",
        ),
        "serve: a port out of range": (
            lambda: check_port(70000),
            "Expected port between 1 and 65535, got 70000",
            ["serve", str(out), "--port", "70000"],
            "Expected --port between 1 and 65535, got 70000",
        ),
        "app: label columns without their table": (
            lambda: collect_labellings(load_index(out).catalog, label_columns=["articleType"]),
            "label_columns needs labels_csv (the table that holds them)",
            ["evaluate", str(out), "--label-column", "articleType"],
            "--label-column needs --labels-csv (the table that holds them)",
        ),
        "app: a labels table that is not there": (
            lambda: evaluate_index(load_index(out), 3, labels_csv=missing, label_columns=["articleType"]),
            f"labels_csv file not found: {missing}",
            ["evaluate", str(out), "--labels-csv", str(missing), "--label-column", "articleType"],
            f"--labels-csv file not found: {missing}",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "pipeline: a KerasHub family without its preset",
        "search: tuning the approximate search of a blend",
        "serve: a port out of range",
        "app: label columns without their table",
        "app: a labels table that is not there",
    ],
)
def test_an_error_names_the_python_parameter_and_the_command_line_its_option(built, tmp_path, capsys, case):
    from simrec.core.errors import SimrecError

    zip_path, out = built
    call, python_says, argv, command_line_says = _caller_terms(out, tmp_path, zip_path)[case]
    with pytest.raises(SimrecError) as raised:
        call()
    assert python_says in str(raised.value) and "--" not in str(raised.value)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simrec: error: ") and command_line_says in err, err


def test_every_parameter_the_command_line_renames_is_one_of_its_options():
    """The table of option names points at options the commands really have."""
    from simrec.cli import option_names
    from simrec.cli.parser import build_parser

    subparsers = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    said = set()
    for sub in subparsers.values():
        for action in sub._actions:
            said.update(action.option_strings or [action.metavar or action.dest.upper()])
    for command in [None, *subparsers]:
        unknown = {parameter: name for parameter, name in option_names(command).items() if name not in said}
        assert not unknown, (command, unknown)


def test_serve_says_which_package_is_missing(built, capsys, monkeypatch):
    from simrec.core.errors import MissingDependencyError
    from simrec.serve import dependencies

    _, out = built
    monkeypatch.setitem(dependencies.SERVE_PACKAGES, "not-a-package", ("simrec_not_a_module",))
    with pytest.raises(MissingDependencyError, match="needs not-a-package, which is not installed"):
        dependencies.check_dependencies()
    assert main(["serve", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install not-a-package" in err


def test_printing_keeps_a_file_name_on_one_line_and_says_an_unwritable_plot(tmp_path):
    from simrec.cli.printing import one_line, save_figure
    from simrec.core.errors import NotWritableError

    assert one_line("a\nb\tc.jpg") == "a\\nb\\tc.jpg"
    blocker = tmp_path / "file"
    blocker.write_text("")

    class Figure:
        def savefig(self, path, dpi):
            raise AssertionError("never reached: the folder cannot be made")

    with pytest.raises(NotWritableError, match="cannot write the plot"):
        save_figure(Figure(), blocker / "plot.png")
