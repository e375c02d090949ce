"""What the ``simrec`` commands print: build reports, result tables, evaluations, duplicates, plots.

Every function writes to stdout (notes and warnings to stderr) and returns nothing;
none of them decides anything a Python caller would want decided the same way.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from simrec.app.export import results_payload
from simrec.core.errors import NotWritableError
from simrec.pipeline.catalog import count_formats


def print_build(embedded: Any, report: Any, index_dir: str | os.PathLike) -> None:
    """What ``simrec index`` (and ``demo``) did: counts, formats, speed, and the first skipped files."""
    rate = report.embedded / report.embed_seconds if report.embed_seconds > 0 and report.embedded else 0.0
    print(f"indexed {report.indexed} images, skipped {report.skipped} (of {report.candidates} files) into {index_dir}")
    if formats := count_formats(embedded.catalog):
        print(f"formats: {formats}")
    print(
        f"added {report.added}, updated {report.updated}, removed {report.removed}, unchanged {report.unchanged}; "
        f"embedded {report.embedded} in {report.embed_seconds:.1f}s ({rate:.1f} img/s), total {report.seconds:.1f}s"
    )
    if not report.committed:
        print(f"nothing changed: nothing committed ({index_dir} stays at generation {embedded.meta.generation})")
    if report.skipped:
        table = embedded.meta.files.get("failures", {}).get("name", "")
        print(f"skipped files and reasons: {Path(index_dir) / table}")
        for row in embedded.failures.head(5).itertuples(index=False):
            print(f"  {one_line(row.path)}: {row.reason}")
        if report.skipped > 5:
            print(f"  ... and {report.skipped - 5} more")
    if getattr(report, "ann", ""):
        print(report.ann)


def one_line(name: str) -> str:
    """A file name as one terminal line: line breaks, tabs and other control characters escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name)


def print_results(results: pd.DataFrame, output_format: str = "table") -> None:
    """Recommendations as a table, JSON (``results_payload``) or CSV."""
    if output_format == "json":
        print(json.dumps(results_payload(results), indent=2, default=_json_default))
    elif output_format == "csv":
        print(results.to_csv(index=False), end="")
    else:
        print(results.to_string(index=False, formatters={"distance": "{:.4f}".format}))


def print_warning(warning: str | None) -> None:
    """An index's warning (untrained weights, ...) on stderr, when it has one."""
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)


def print_duplicates(report: Any, n_products: int, output_format: str = "table") -> None:
    """The pairs and groups of ``find_duplicates`` as a table with a summary, JSON or CSV."""
    if output_format == "json":
        print(json.dumps(report.to_dict(), indent=2))
        return
    if output_format == "csv":
        print(report.pairs.to_csv(index=False), end="")
        return
    if len(report.pairs):
        formatters = {"distance": "{:.4f}".format, "difference": "{:.4f}".format}
        print(report.pairs.to_string(index=False, formatters=formatters))
    n_groups = report.groups["group"].nunique()
    how = f"photos compared (difference <= {report.photo_threshold:g})" if report.photos_compared else "vectors alone"
    pixels = "" if report.pixel_threshold is None else f" or pixel vectors within {report.pixel_threshold:g}"
    print(
        f"{len(report.pairs)} duplicate pairs in {n_groups} groups among {n_products} products "
        f"({report.candidates} candidates within cosine distance {report.threshold:g}{pixels}, {how}; "
        f"{report.seconds:.1f}s)"
    )
    for group, members in report.groups.groupby("group", sort=True):
        keep = members.loc[members["keep"], "product_id"].iloc[0]
        others = ", ".join(members.loc[~members["keep"], "product_id"].astype(str))
        print(f"  group {group}: keep {keep}; duplicates: {others}")


def print_evaluation(report: dict[str, Any]) -> None:
    """``evaluate``'s report: precision@k and mAP@k per label, overall, and by chance."""
    k = report["k"]
    print(f"{'label':<16} {'n':>5} {f'precision@{k}':>12} {f'mAP@{k}':>8}")
    for label, row in report["per_label"].items():
        print(f"{label:<16} {row['n']:>5} {row['precision_at_k']:>12.3f} {row['map_at_k']:>8.3f}")
    print(f"{'all':<16} {report['n']:>5} {report['precision_at_k']:>12.3f} {report['map_at_k']:>8.3f}")
    print(f"(a random ranking would score precision@{k} = {report['chance_precision']:.3f})")
    if report["n_unlabelled"]:
        print(f"({report['n_unlabelled']} items without a label were neither queries nor relevant)")


def print_sweep(sweep: pd.DataFrame, k: int) -> None:
    """Precision@k and mAP@k by colour weight, labellings side by side, then precision@k per label."""
    overall = sweep[sweep["label"] == "(all)"]
    names = list(dict.fromkeys(overall["labelling"]))
    widths = [max(len(name), len(f"precision@{k}") + len(f"mAP@{k}") + 1) for name in names]
    print(f"{'':<14}" + "  ".join(f"{name:>{w}}" for name, w in zip(names, widths)))
    print(f"{'colour_weight':<14}" + "  ".join(f"{f'precision@{k} mAP@{k}':>{w}}" for w in widths))
    for weight, rows in overall.groupby("colour_weight", sort=True):
        cells = []
        for name, width in zip(names, widths):
            row = rows[rows["labelling"] == name].iloc[0]
            p_label, m_label = len(f"precision@{k}"), len(f"mAP@{k}")
            cells.append(f"{row['precision_at_k']:>{p_label}.3f} {row['map_at_k']:>{m_label}.3f}".rjust(width))
        print(f"{weight:<14.2f}" + "  ".join(cells))
    for name in names:
        chance = overall[overall["labelling"] == name]["chance_precision"].iloc[0]
        print(f"(a random ranking would score precision@{k} = {chance:.3f} for {name})")
    for name in names[:-1] if len(names) > 2 else names:  # the joint labelling's labels are too many to list
        per_label = sweep[(sweep["labelling"] == name) & (sweep["label"] != "(all)")]
        table = per_label.pivot(index="label", columns="colour_weight", values="precision_at_k")
        table.columns = [f"W={w:g}" for w in table.columns]
        print(f"\nprecision@{k} by {name}:")
        print(table.to_string(float_format="{:.3f}".format))


def print_sweep_json(sweep: pd.DataFrame, k: int) -> None:
    """The sweep as JSON: ``{"k": k, "results": [row, ...]}``, NaN as null."""
    records = sweep.astype(object).where(sweep.notna(), None).to_dict(orient="records")
    print(json.dumps({"k": k, "results": records}, indent=2))


def save_figure(figure: Any, path: str | os.PathLike) -> None:
    """Write a Matplotlib figure to ``path`` (its folder made), and say where on stderr.

    Raises:
        NotWritableError: The file cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    except OSError as error:
        raise NotWritableError(f"cannot write the plot {path}: {error.strerror or error}") from None
    print(f"plot written to {path}", file=sys.stderr)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
