"""The ``simrec`` command: index, query, ann, export, sync, duplicates, serve, verify, evaluate, colours, demo, bench.

It parses the options (:mod:`simrec.cli.parser`), calls one use case
(:mod:`simrec.cli.commands`) and prints what it returned (:mod:`simrec.cli.printing`).
User errors (simrec's own exceptions: missing file, unknown id, bad option, damaged or
locked index) print one line on stderr, in the command line's words (:func:`option_names`),
and exit with status 2; anything else is a bug and prints its traceback with exit status 1.
Ctrl-C exits with status 130 and leaves any previous index as it was.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from simrec.cli.parser import USER_ERROR, build_parser
from simrec.core.errors import SimrecError, in_terms_of

INTERRUPTED = 130

_OPTIONS = {
    "index_dir": "INDEX_DIR",
    "source": "SOURCE",
    "n_neighbors": "-k",
    "colour_weight": "--colour-weight",
    "exact": "--exact",
    "distinct": "--distinct",
    "nprobe": "--nprobe",
    "ef": "--ef",
    "product_id": "--id",
    "rebuild": "--rebuild",
    "model": "--model",
    "weights": "--weights",
    "weights_path": "--weights",
    "image_size": "--image-size",
    "precision": "--precision",
    "runtime": "--runtime",
    "preprocessing": "--preprocessing",
    "batch_size": "--batch-size",
    "ann_type": "--type",
    "nlist": "--nlist",
    "m": "--m",
    "nbits": "--nbits",
    "ef_construction": "--ef-construction",
    "rerank": "--rerank",
    "seed": "--seed",
    "metadata": "--metadata",
    "engine": "--engine",
    "embeddings": "--embeddings",
    "threshold": "--threshold",
    "photo_threshold": "--photo-threshold",
    "n_candidates": "--candidates",
    "address": "--ray-address",
    "workers": "--workers",
    "gpus_per_worker": "--gpus-per-worker",
    "port": "--port",
    "host": "--host",
    "out": "--out",
    "pattern": "--label-from",
    "labels_csv": "--labels-csv",
    "label_columns": "--label-column",
    "photo": "--photo",
    "schema": "--schema",
    "products_table": "--products-table",
    "recommendations_table": "--recommendations-table",
}
"""The option (or argument) of the command line that passes each Python parameter."""

_COMMAND_OPTIONS = {
    "index": {"index_dir": "--out"},
    "demo": {"index_dir": "--out"},
    "sync": {"n_neighbors": "--neighbors"},
    "bench": {"index_dir": "--index"},
}
"""Where one command passes a parameter differently from :data:`_OPTIONS`."""


def option_names(command: str | None) -> dict[str, str]:
    """What the command line calls each Python parameter, for ``command``.

    Errors from the library name Python parameters (``index_dir``, ``n_neighbors``); the
    command line shows them as its own options (``--out``, ``-k``) with
    :func:`simrec.core.errors.in_terms_of`.

    Args:
        command: The subcommand (``"index"``, ``"query"``, ...), or None.

    Returns:
        ``{parameter: option}``.
    """
    return {**_OPTIONS, **_COMMAND_OPTIONS.get(command or "", {})}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors
        return int(stop.code or 0)
    _configure_logging(args.verbose)

    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("simrec: interrupted; any previous index was left as it was", file=sys.stderr)
        return INTERRUPTED
    except SimrecError as error:  # anything else is a bug: let its traceback show, exit 1
        print(f"simrec: error: {in_terms_of(error, option_names(args.command))}", file=sys.stderr)
        return USER_ERROR


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="simrec: %(levelname)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if verbosity < 2 else "0")
    logging.getLogger("simrec.pipeline.embedding").setLevel(logging.ERROR if verbosity == 0 else level)


__all__ = ["main", "option_names"]
