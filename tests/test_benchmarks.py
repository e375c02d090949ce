"""Each benchmark still runs, on the smallest inputs: a benchmark that no longer starts measures nothing.

Their figures are not asserted (speed is measured by running them, never in tests); only that they
finish, print the lines their figures are read from, and use no name simrec has deprecated.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from paths import ROOT, SHARED

RUNS = {
    "open_query": (["--items", "200", "--dim", "8"], "ratio query_cli_s/target="),
    "export": (["--items", "300", "--dim", "8"], "peak_allocated_mb"),
    "scan": (["--files", "100", "--rounds", "1"], "ratio content/extension-only:"),
    "half_scan": (["--items", "500", "--dim", "64", "--queries", "3"], "bound on a distance"),
    "duplicates": (
        [
            "--skip-planted",
            "--skip-split",
            "--items",
            "2000",
            "--dim",
            "16",
            "--ann-items",
            "500",
            "--project",
            "10000",
        ],
        "projected to 10,000 x 16",
    ),
    "duplicates:split": (
        ["--skip-planted", "--skip-scale", "--split-photos", "40", "--split-copies", "1", "--seeds", "0"]
        + ["--split-parts", "scoring", "--split-sizes", "native"],
        "| scoring | native | 0 | 40 | 8 |",
    ),
    "duplicates:cost": (
        ["--skip-planted", "--skip-split", "--skip-scale", "--photos", "20", "--copies", "6"]
        + ["--threshold-cost", "0.1"],
        "| candidates within | simrec duplicates s |",
    ),
    "duplicates:pixels": (
        ["--skip-planted", "--skip-split", "--skip-scale", "--pixel-distances", "--pixel-copies", "1"]
        + ["--split-photos", "30", "--split-parts", "tuning"],
        "| tuning | 30 |",
    ),
    "runtime": (["--limit", "40"], "| int8 (int8) |"),
    "hub": (["--tiny-only"], "| tiny clip | 12 | 32 |"),
}
NEEDS_SHARED = {"runtime", "duplicates:split", "duplicates:cost", "duplicates:pixels"}


@pytest.mark.parametrize("name", RUNS)
def test_the_benchmark_runs_on_small_inputs(name, tmp_path):
    arguments, expected = RUNS[name]
    if name in NEEDS_SHARED and not (SHARED / "data" / "fashion-small").is_dir():
        pytest.skip("needs ../shared/data/fashion-small")
    run = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::FutureWarning",
            str(ROOT / "benchmarks" / f"{name.split(':')[0]}.py"),
            *arguments,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert expected in run.stdout


def test_a_float16_copy_stays_within_its_bound_of_the_canonical_distance():
    """The bound benchmarks/half_scan.py derives holds, subnormal float16 components included."""
    import importlib.util

    import numpy as np

    from simrec.search.rerank import canonical_cosine

    spec = importlib.util.spec_from_file_location("half_scan", ROOT / "benchmarks" / "half_scan.py")
    half_scan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(half_scan)
    rng = np.random.default_rng(0)
    for dim in (16, 256, 2048):
        vectors = rng.normal(size=(400, dim)) * rng.choice([1.0, 1e-6], size=(400, dim), p=[0.7, 0.3])
        units = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        half = units.astype(np.float16).astype(np.float32)
        assert (np.abs(half) < 2.0**-14).any()  # some components are float16 subnormals
        for q in units[:20]:
            fast = 1.0 - half @ q
            canonical = canonical_cosine(units, q, np.arange(len(units)))
            assert np.abs(fast - canonical).max() <= half_scan.half_bound(dim)
