"""Result grids: the query photo, then its recommendations with labels and distances.

Functions return a matplotlib Figure and never call ``plt.show()``; Jupyter displays
a returned figure by itself, and ``fig.savefig(...)`` writes it to a file.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from simrec.core.errors import ImageDecodeError, InvalidArgumentError
from simrec.pipeline.images import load_image, prepare_image

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_THUMB = 160


def plot_recommendations(results: pd.DataFrame, *, title: str | None = None, panel_size: float = 2.2) -> Figure:
    """Draw one query and its recommendations in a row.

    Args:
        results: From :func:`simrec.recommend` (its ``attrs["query"]`` gives the query).
        title: Figure title; the untrained-weights warning is added when it applies.
        panel_size: Size of each picture, in inches.

    Returns:
        A ``matplotlib.figure.Figure``.

    Example:
        >>> fig = plot_recommendations(recommend(embedded, product_id="red/shirt_1"))  # doctest: +SKIP
        >>> fig.savefig("similar.png")  # doctest: +SKIP
    """
    return plot_recommendation_grid([results], title=title, panel_size=panel_size)


def plot_recommendation_grid(
    results: Sequence[pd.DataFrame], *, title: str | None = None, panel_size: float = 2.2
) -> Figure:
    """Draw several queries, one row each: the query, then its top-k.

    Args:
        results: A list of DataFrames from :func:`simrec.recommend`.
        title: Figure title; the untrained-weights warning is added when it applies.
        panel_size: Size of each picture, in inches.

    Returns:
        A ``matplotlib.figure.Figure``.

    Raises:
        InvalidArgumentError: ``results`` is empty.
    """
    from matplotlib.figure import Figure

    if isinstance(results, pd.DataFrame):
        results = [results]
    if not results:
        raise InvalidArgumentError("Expected at least one result table to plot, got none")
    columns = 1 + max(len(r) for r in results)
    figure = Figure(figsize=(panel_size * columns, panel_size * 1.25 * len(results) + 0.6), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(results), columns, squeeze=False))
    for row, table in zip(axes, results):
        query = table.attrs.get("query", {})
        caption = _query_caption(query)
        if table.attrs.get("colour_weight") is not None:
            caption += f"\ncolour weight {table.attrs['colour_weight']:g}"
        _show(row[0], _query_picture(query), caption, highlight=True)
        for ax, item in zip(row[1:], table.itertuples(index=False)):
            name = str(item.product_id).rsplit("/", 1)[-1]
            caption = f"#{item.rank} {item.label or name}\n{name if item.label else ''} d={item.distance:.4f}"
            _show(ax, _picture(item.path), caption)
        for ax in row[1 + len(table) :]:
            ax.set_axis_off()
    warning = next((t.attrs.get("warning") for t in results if t.attrs.get("warning")), None)
    if warning:  # wrapped to the figure's width, about 11 characters an inch at this size
        warning = textwrap.fill(warning, width=max(40, int(figure.get_figwidth() * 11)))
    heading = "\n".join(text for text in (title, warning) if text)
    if heading:
        figure.suptitle(heading, color="crimson" if warning else "black", fontsize=11)
    return figure


def plot_colour_sweep(sweep: pd.DataFrame, *, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Draw precision@k and mAP@k against the colour weight, one colour per labelling.

    Args:
        sweep: From :func:`simrec.app.evaluate.sweep_colour_weight` (its ``"(all)"`` rows are drawn).
        title: Axes title.
        ax: Draw into these axes instead of a new figure.

    Returns:
        The ``matplotlib.figure.Figure`` drawn into.

    Raises:
        InvalidArgumentError: ``sweep`` has no ``"(all)"`` rows.

    Example:
        >>> plot_colour_sweep(sweep_colour_weight(embedded, {"colour": embedded.catalog.label}))  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    overall = sweep[sweep["label"] == "(all)"] if len(sweep) else sweep
    if not len(overall):
        raise InvalidArgumentError("Expected a colour-weight sweep with '(all)' rows, got an empty table")
    if ax is None:
        figure = Figure(figsize=(5.5, 3.2), layout="constrained")
        ax = figure.subplots()
    else:
        figure = ax.figure
    for i, (name, rows) in enumerate(overall.groupby("labelling", sort=False)):
        rows = rows.sort_values("colour_weight")
        colour = f"C{i}"
        ax.plot(rows["colour_weight"], rows["precision_at_k"], "o-", color=colour, label=f"{name}: precision@k")
        ax.plot(rows["colour_weight"], rows["map_at_k"], "s--", color=colour, label=f"{name}: mAP@k")
        chance = rows["chance_precision"].iloc[0]
        ax.axhline(chance, color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("colour weight (0 = look, 1 = colour)")
    ax.set_ylabel("score (dotted: chance)")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(sorted(overall["colour_weight"].unique()))
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return figure


def _query_caption(query: dict) -> str:
    name = query.get("product_id") or (Path(query["path"]).name if query.get("path") else "your image")
    if query.get("text"):
        name = repr(query["text"])
    label = query.get("label")
    return f"query: {name}" + (f"\n({label})" if label else "")


def _query_picture(query: dict) -> np.ndarray | None:
    if isinstance(query.get("image"), Image.Image):
        return prepare_image(query["image"], _THUMB)
    if query.get("path"):
        return _picture(query["path"])
    return None


def _picture(path: str) -> np.ndarray | None:
    try:
        return load_image(path, _THUMB)
    except ImageDecodeError:
        return None


def _show(ax, picture: np.ndarray | None, caption: str, highlight: bool = False) -> None:
    if picture is None:
        ax.text(0.5, 0.5, "image\nunavailable", ha="center", va="center")
    else:
        ax.imshow(picture)
    ax.set_title(caption, fontsize=9, color="navy" if highlight else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(highlight)
        spine.set_color("navy")
        spine.set_linewidth(2)


def plot_duplicate_groups(
    groups: pd.DataFrame, paths: dict[str, str], *, max_groups: int = 12, max_members: int = 6, panel_size: float = 1.8
) -> Figure:
    """Draw groups of duplicates, one row each, the suggested photo to keep first and framed.

    Args:
        groups: :attr:`simrec.DuplicateReport.groups` (``group``, ``product_id``, ``keep``).
        paths: The photo of each ``product_id``.
        max_groups: Groups drawn at most (the first ones).
        max_members: Photos drawn per group at most.
        panel_size: Size of each picture, in inches.

    Returns:
        A ``matplotlib.figure.Figure`` (a note when there is no group).
    """
    from matplotlib.figure import Figure

    shown = [members for _, members in groups.groupby("group", sort=True)][:max_groups]
    if not shown:
        figure = Figure(figsize=(4, 1), layout="constrained")
        figure.text(0.5, 0.5, "no duplicates found", ha="center", va="center")
        return figure
    columns = min(max_members, max(len(m) for m in shown))
    figure = Figure(figsize=(panel_size * columns, panel_size * 1.25 * len(shown) + 0.4), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(shown), columns, squeeze=False))
    for row, members in zip(axes, shown):
        members = members.sort_values("keep", ascending=False, kind="stable")
        for ax, item in zip(row, members.itertuples(index=False)):
            name = str(item.product_id)
            caption = f"group {item.group}: keep\n{name}" if item.keep else f"\n{name}"
            _show(ax, _picture(paths.get(name, "")), caption, highlight=bool(item.keep))
        for ax in row[len(members) :]:
            ax.set_axis_off()
    figure.suptitle(f"{groups['group'].nunique()} groups of duplicates (first {len(shown)} shown)", fontsize=11)
    return figure
