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
    "duplicates": (
        ["--skip-planted", "--items", "2000", "--dim", "16", "--ann-items", "500", "--project", "10000"],
        "projected to 10,000 x 16",
    ),
    "runtime": (["--limit", "40"], "| int8 (int8) |"),
}
NEEDS_SHARED = {"runtime"}


@pytest.mark.parametrize("name", RUNS)
def test_the_benchmark_runs_on_small_inputs(name, tmp_path):
    arguments, expected = RUNS[name]
    if name in NEEDS_SHARED and not (SHARED / "data" / "fashion-small").is_dir():
        pytest.skip("needs ../shared/data/fashion-small")
    run = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", str(ROOT / "benchmarks" / f"{name}.py"), *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert expected in run.stdout
