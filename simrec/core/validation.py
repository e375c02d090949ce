"""Argument checks shared by every public entry point, each with its one message.

Each function validates one kind of argument and raises
:class:`simrec.InvalidArgumentError` saying what was expected and what was received, so
the same mistake reads the same from Python, the command line and the service.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from simrec.core.errors import InvalidArgumentError


def check_path_argument(value: object, name: str) -> None:
    """Refuse an empty path, which would silently mean the current folder.

    Raises:
        InvalidArgumentError: ``value`` is an empty or blank string.

    Example:
        >>> check_path_argument("", "index_dir")
        Traceback (most recent call last):
        ...
        simrec.core.errors.InvalidArgumentError: Expected index_dir to name a file or folder, got ''
    """
    if isinstance(value, str) and not value.strip():
        raise InvalidArgumentError(f"Expected {name} to name a file or folder, got {value!r}", parameters=(name,))


def check_colour_weight(colour_weight: object) -> float:
    """``colour_weight`` as a float in ``[0, 1]``, or a clear error.

    Raises:
        InvalidArgumentError: Not a number, or outside ``[0, 1]`` (NaN included).

    Example:
        >>> check_colour_weight(0.25)
        0.25
        >>> check_colour_weight(2)
        Traceback (most recent call last):
        ...
        simrec.core.errors.InvalidArgumentError: Expected colour_weight from 0 to 1, got 2
    """
    if isinstance(colour_weight, bool) or not isinstance(colour_weight, numbers.Real):
        raise InvalidArgumentError(
            f"Expected colour_weight to be a number from 0 to 1, got {colour_weight!r}", parameters=("colour_weight",)
        )
    value = float(colour_weight)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise InvalidArgumentError(
            f"Expected colour_weight from 0 to 1, got {colour_weight!r}", parameters=("colour_weight",)
        )
    return value


def check_image_size(image_size: object) -> int:
    """``image_size`` (the side of the model's square input) as an int of at least 32, or a clear error.

    Raises:
        InvalidArgumentError: Not an int (``True`` included), or below 32.

    Example:
        >>> check_image_size(31)
        Traceback (most recent call last):
        ...
        simrec.core.errors.InvalidArgumentError: Expected image_size >= 32 (an int), got 31
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 32:
        raise InvalidArgumentError(
            f"Expected image_size >= 32 (an int), got {image_size!r}", parameters=("image_size",)
        )
    return int(image_size)


def check_int(value: object, name: str, minimum: int, *, context: str = "", also_named: Iterable[str] = ()) -> int:
    """``value`` as an int of at least ``minimum``, or a clear error naming ``name``.

    Args:
        value: What the caller passed.
        name: The argument's name, as the caller knows it.
        minimum: The smallest value accepted.
        context: Said after the expectation, e.g. ``" for ann_type 'hnsw'"``.
        also_named: Other parameters that ``context`` names (``("ann_type",)``), for the error's ``parameters``.

    Raises:
        InvalidArgumentError: Not an int (``True`` included), or below ``minimum``.

    Example:
        >>> check_int(3, "nprobe", 0)
        3
        >>> check_int(0.5, "nlist", 1, context=" for ivf-flat")
        Traceback (most recent call last):
        ...
        simrec.core.errors.InvalidArgumentError: Expected nlist >= 1 (an int) for ivf-flat, got 0.5
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgumentError(
            f"Expected {name} >= {minimum} (an int){context}, got {value!r}", parameters=(name, *also_named)
        )
    return int(value)


def check_suffix(
    out: str | os.PathLike, name: str, suffixes: Sequence[str], *, context: str = "", also_named: Iterable[str] = ()
) -> str:
    """The suffix of the file ``out`` (lower case) when it is one of ``suffixes``, or a clear error naming ``name``.

    Args:
        out: The file the caller asked to write.
        name: The argument's name, as the caller knows it.
        suffixes: The suffixes accepted, in the order the message lists them (``(".parquet", ".csv")``).
        context: Said after the expectation, e.g. ``" for embeddings"``.
        also_named: Other parameters that ``context`` names, for the error's ``parameters``.

    Returns:
        The suffix, e.g. ``".csv"`` for ``recs.CSV``.

    Raises:
        InvalidArgumentError: ``out`` ends in another suffix (or none).

    Example:
        >>> check_suffix("recs.CSV", "out", (".parquet", ".csv"))
        '.csv'
        >>> check_suffix("recs.json", "out", (".parquet", ".csv"))
        Traceback (most recent call last):
        ...
        simrec.core.errors.InvalidArgumentError: Expected out to end in .parquet or .csv, got 'recs.json'
    """
    suffix = Path(out).suffix.lower()
    if suffix not in suffixes:
        raise InvalidArgumentError(
            f"Expected {name} to end in {' or '.join(suffixes)}{context}, got {os.fspath(out)!r}",
            parameters=(name, *also_named),
        )
    return suffix


def check_number_in(value: object, name: str, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]``, or a clear error naming ``name``.

    Raises:
        InvalidArgumentError: Not a number (``True`` included), or outside ``[low, high]``.

    Example:
        >>> check_number_in(0.05, "photo_threshold", 0, 1)
        0.05
        >>> check_number_in(3, "threshold", 0, 2)
        Traceback (most recent call last):
        ...
        simrec.core.errors.InvalidArgumentError: Expected threshold in [0, 2], got 3.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidArgumentError(
            f"Expected {name} to be a number in [{low:g}, {high:g}], got {value!r}", parameters=(name,)
        )
    value = float(value)
    if not low <= value <= high:
        raise InvalidArgumentError(f"Expected {name} in [{low:g}, {high:g}], got {value!r}", parameters=(name,))
    return value


def check_n_neighbors(n_neighbors: object) -> int:
    """``n_neighbors`` as a positive int, or a clear error.

    Raises:
        InvalidArgumentError: Not an int (``True`` included), or not above 0.

    Example:
        >>> check_n_neighbors(5)
        5
        >>> check_n_neighbors(0)
        Traceback (most recent call last):
        ...
        simrec.core.errors.InvalidArgumentError: Expected n_neighbors > 0 (an int), got 0
    """
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors <= 0:
        raise InvalidArgumentError(
            f"Expected n_neighbors > 0 (an int), got {n_neighbors!r}", parameters=("n_neighbors",)
        )
    return int(n_neighbors)


def check_enough_items(n_neighbors: int, n_samples_fit: int, self_query: bool) -> None:
    """Refuse ``n_neighbors`` from ``n_samples_fit`` items (one fewer when each item leaves itself out).

    Raises:
        InvalidArgumentError: In scikit-learn's words, e.g. "Expected n_neighbors <=
            n_samples_fit, but n_neighbors = 50, n_samples_fit = 37".

    Example:
        >>> check_enough_items(3, 3, self_query=False)
        >>> check_enough_items(3, 3, self_query=True)
        Traceback (most recent call last):
        ...
        simrec.core.errors.InvalidArgumentError: Expected n_neighbors <= n_samples_fit - 1 (each item is left out of its own results), but n_neighbors = 3, n_samples_fit = 3
    """  # noqa: E501
    if n_neighbors > (n_samples_fit - 1 if self_query else n_samples_fit):
        what = "n_samples_fit - 1 (each item is left out of its own results)" if self_query else "n_samples_fit"
        raise InvalidArgumentError(
            f"Expected n_neighbors <= {what}, but n_neighbors = {n_neighbors}, n_samples_fit = {n_samples_fit}"
        )


def check_recommendations(n_neighbors: object, n_products: int, product_query: bool) -> int:
    """Refuse a number of recommendations the catalog cannot give, in the catalog's words.

    Args:
        n_neighbors: Recommendations asked for.
        n_products: Products in the catalog.
        product_query: The query is a catalog product, left out of its own results.

    Raises:
        InvalidArgumentError: ``n_neighbors`` is not a positive int, or more than the catalog holds.

    Example:
        >>> check_recommendations(11, 12, product_query=True)
        11
        >>> check_recommendations(12, 12, product_query=True)
        Traceback (most recent call last):
        ...
        simrec.core.errors.InvalidArgumentError: Expected n_neighbors <= 11 (other products in the catalog), got 12
    """  # noqa: E501
    k = check_n_neighbors(n_neighbors)
    available = n_products - 1 if product_query else n_products
    if k > available:
        what = "other products in the catalog" if product_query else "products in the catalog"
        raise InvalidArgumentError(
            f"Expected n_neighbors <= {available} ({what}), got {k}", parameters=("n_neighbors",)
        )
    return k


def as_matrix(X: object, name: str, ndim_one_ok: bool = False) -> np.ndarray:
    """``X`` as a 2-D float32 array ``(n_items, dim)``; one vector becomes one row when ``ndim_one_ok``.

    Raises:
        InvalidArgumentError: ``X`` is not 2-D (or 1-D where allowed); the message names ``name``.
    """
    array = np.asarray(X)
    if ndim_one_ok and array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise InvalidArgumentError(f"Expected {name} to be a 2-D array (n_items, dim), got shape {array.shape}")
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    return array
