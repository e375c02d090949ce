"""Read and write an index folder's tables as the tests inspect them: Parquet (format 3) or CSV (formats 1 and 2)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_table(path: Path) -> pd.DataFrame:
    """A catalog or failures table, its text as text."""
    if Path(path).suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` in the format its file name says."""
    if Path(path).suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
