"""The ``simrec`` command: index, query, ann, export, sync, duplicates, serve, verify, evaluate, colours, demo, bench.

User errors (simrec's own exceptions: missing file, unknown id, bad option, damaged or
locked index) print one line on stderr and exit with status 2; anything else is a bug and
prints its traceback with exit status 1. Ctrl-C exits with status 130 and leaves any
previous index as it was.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from simrec.app.ann import attach_ann
from simrec.app.duplicates import find_duplicates, write_duplicates
from simrec.app.evaluate import (
    SWEEP_COLOUR_WEIGHTS,
    distinguishes,
    evaluate,
    joint_labels,
    label_from,
    labels_from_table,
    sweep_colour_weight,
)
from simrec.app.export import export_embeddings, export_neighbors, results_payload
from simrec.app.indexing import add_colours, build_index
from simrec.app.plot import plot_duplicate_groups, plot_recommendation_grid, plot_recommendations
from simrec.app.precompute import store_neighbors
from simrec.app.querying import plan_query, query_extractor, query_text_embedder, recommend
from simrec.app.sync import PHOTO_FIELDS, sync_index
from simrec.app.synthetic import make_synthetic_catalog
from simrec.bench import run_ann_benchmark, run_benchmark, run_model_benchmark, run_ray_benchmark
from simrec.core.backbones import BACKBONES, DEFAULT_BACKBONE, PREPROCESSING_MODES
from simrec.core.defaults import (
    BATCH_SIZE,
    COLOUR_WEIGHT,
    DEMO_DIR,
    DUPLICATE_CANDIDATES,
    N_NEIGHBORS,
    PHOTO_DUPLICATE_THRESHOLD,
    SEED,
    STORED_NEIGHBORS,
)
from simrec.core.errors import InvalidArgumentError, NotWritableError, SimrecError
from simrec.core.hub_backbones import HUB_BACKBONES
from simrec.core.validation import check_path_argument
from simrec.core.version import __version__
from simrec.embedded_catalog import require_colours
from simrec.pipeline.backend import backend_name, import_backend_quietly
from simrec.pipeline.catalog import count_formats
from simrec.pipeline.images import load_image
from simrec.pipeline.model import PRECISIONS
from simrec.pipeline.runtime import RUNTIMES
from simrec.search.approximate import ANN_TYPES
from simrec.storage.index_folder import load_index, verify_index

logger = logging.getLogger("simrec")

USER_ERROR = 2
INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every user error
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _build_parser()
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
        print(f"simrec: error: {error}", file=sys.stderr)
        return USER_ERROR


def _build_parser() -> argparse.ArgumentParser:

    parser = _Parser(prog="simrec", description="Recommend products that look alike, from their photos.")

    parser.add_argument(
        "--version", action="version", version=f"simrec {__version__} (Keras backend: {backend_name()})"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    for add_command in _COMMANDS:
        add_command(commands)
    return parser


def _add_model_options(sub: argparse.ArgumentParser) -> None:
    """--model, --weights, --image-size, --seed, --batch-size, --precision: how photos are embedded."""
    sub.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help=f"the backbone: {', '.join(BACKBONES)}; a KerasHub one: {', '.join(HUB_BACKBONES)} "
        "(pip install 'simrec[hub]'; --weights auto, a preset folder or random); or a Keras model file "
        f"PATH.keras (default: an existing index's own, else {DEFAULT_BACKBONE}); a different one than the "
        "index's needs --rebuild",
    )
    sub.add_argument(
        "--weights",
        default="auto",
        help="auto (default: an existing index's own weights; for a new index ImageNet if cached or "
        "downloadable, else untrained with a warning; for a KerasHub model its preset, downloaded by KerasHub, "
        "never untrained), imagenet, random, a local .h5/.weights.h5 file holding the model's weights, or a "
        "KerasHub preset folder",
    )
    sub.add_argument(
        "--image-size",
        type=_positive,
        default=None,
        help="input side in pixels (default: an existing index's own, else the model's own, 224 for most)",
    )
    sub.add_argument(
        "--seed", type=int, default=None, help=f"seed for random weights (default: the index's own, else {SEED})"
    )
    sub.add_argument(
        "--batch-size", type=_positive, default=BATCH_SIZE, help="images per model call (default: %(default)s)"
    )
    sub.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="compute precision (default: an existing index's own; for a new one auto = float16 on a GPU, "
        "float32 on CPU; bfloat16 is faster on CPUs with AMX or AVX-512 BF16; int8 runs on OpenVINO, "
        "calibrated on the catalog's photos); a different one than the index's needs --rebuild",
    )
    _add_runtime_option(sub)


def _add_runtime_option(sub: argparse.ArgumentParser) -> None:
    """--runtime: what executes the network (not part of an index's model)."""
    sub.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="what runs the network: auto (default: OpenVINO on a CPU when installed and the model converts, "
        "else Keras), keras or openvino; vectors agree to float32 rounding, so an index can be extended or "
        "queried with either",
    )


def _add_colour_weight(sub: argparse.ArgumentParser) -> None:
    """--colour-weight: how much the product's colour counts beside its look."""
    sub.add_argument(
        "--colour-weight",
        type=_unit_interval,
        default=None,
        metavar="W",
        help=f"0 ranks by look (the embedding), 1 by the product's colour alone, in between a blend of the two "
        f"(default: {COLOUR_WEIGHT} on an index with colour signatures and exact search, else 0)",
    )


def _add_index_command(commands: argparse._SubParsersAction) -> None:
    index = commands.add_parser("index", help="embed a zip or folder of photos into an index folder")
    index.add_argument("source", help="a .zip file or a folder of photos (subfolders are labels)")
    index.add_argument(
        "--out",
        dest="index_dir",
        metavar="INDEX_DIR",
        required=True,
        help="the index folder to write (zips are extracted into INDEX_DIR/images-GEN)",
    )
    index.add_argument("--metadata", help="optional CSV with a product_id column to join")
    index.add_argument(
        "--rebuild",
        action="store_true",
        help="embed everything again, even photos already indexed (needed to change model, weights, precision or size)",
    )
    index.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    index.add_argument(
        "--preprocessing",
        choices=tuple(PREPROCESSING_MODES),
        default=None,
        help="for a .keras model file: the pixel preprocessing it expects (default: an existing index's own, else "
        "model = inside the model, 0-255 pixels in)",
    )
    index.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="where to embed (ray: pip install 'simrec[ray]')"
    )
    index.add_argument("--ray-address", help="Ray cluster to use: auto, ray://host:port (default: a local Ray)")
    index.add_argument("--workers", type=_positive, help="Ray embedding actors (default: 1)")
    index.add_argument("--gpus-per-worker", type=float, help="GPUs per Ray actor (default: 0, CPU only)")
    _add_model_options(index)
    index.set_defaults(handler=_cmd_index)


def _add_query_command(commands: argparse._SubParsersAction) -> None:
    query = commands.add_parser("query", help="recommend products similar to a product or a photo")
    query.add_argument("index_dir", metavar="INDEX_DIR")
    target = query.add_mutually_exclusive_group(required=True)
    target.add_argument("--id", dest="product_id", help="a catalog product_id, e.g. red/shirt_1")
    target.add_argument("--image", help="a photo file to search with")
    target.add_argument(
        "--text", help="words to search with, e.g. 'red checked shirt' (an index made with a SigLIP or CLIP preset)"
    )
    query.add_argument(
        "-k", type=_positive, default=N_NEIGHBORS, help="number of recommendations (default: %(default)s)"
    )
    query.add_argument("--plot", help="write the result grid to this PNG file")
    query.add_argument("--format", choices=("table", "json", "csv"), default="table")
    query.add_argument(
        "--weights", help="weights file or preset folder, if the index was built from one that has moved"
    )
    _add_runtime_option(query)
    _add_colour_weight(query)
    query.add_argument("--exact", action="store_true", help="exact search even if the index has an ann structure")
    query.add_argument("--nprobe", type=_positive, help="IVF lists to search (default: the one stored by simrec ann)")
    query.add_argument("--ef", type=_positive, help="HNSW search breadth (default: the one stored by simrec ann)")
    query.add_argument(
        "--distinct",
        action="store_true",
        help="drop a result that is a duplicate of the query or of a higher-ranked result (see simrec duplicates)",
    )
    query.set_defaults(handler=_cmd_query)


def _add_export_command(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="write every product's nearest neighbors to a Parquet or CSV file")
    export.add_argument("index_dir", metavar="INDEX_DIR")
    export.add_argument("-k", type=_positive, default=10, help="neighbors per product (default: %(default)s)")
    export.add_argument(
        "--embeddings",
        action="store_true",
        help="write each product's vector instead (product_id, label, path, embedding) to a .parquet file",
    )
    export.add_argument("--out", required=True, help="output file: .parquet or .csv (the suffix picks the format)")
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_colour_weight(export)
    export.add_argument("--exact", action="store_true", help="exact search even if the index has an ann structure")
    export.add_argument(
        "--distinct",
        action="store_true",
        help="drop a result that is a duplicate of the query or of a higher-ranked result (see simrec duplicates)",
    )
    export.set_defaults(handler=_cmd_export)


def _add_sync_command(commands: argparse._SubParsersAction) -> None:
    sync = commands.add_parser(
        "sync",
        help="write an index into PostgreSQL with pgvector, changes only, in one transaction (pip install "
        "'simrec[postgres]')",
    )
    sync.add_argument("index_dir", metavar="INDEX_DIR")
    sync.add_argument("url", metavar="URL", help="postgresql://user:password@host:port/dbname")
    sync.add_argument(
        "--neighbors",
        type=_non_negative,
        metavar="K",
        help="also write each product's K recommendations, the rows of simrec export (0 deletes them; default: "
        "as the database's last sync)",
    )
    _add_colour_weight(sync)
    sync.add_argument("--distinct", action="store_true", help="with --neighbors: leave out duplicates")
    sync.add_argument("--exact", action="store_true", help="with --neighbors: exact search even with an ann structure")
    sync.add_argument(
        "--photo",
        default="{path}",
        metavar="TEMPLATE",
        help=f"what the photo column holds: a template naming {', '.join('{' + f + '}' for f in PHOTO_FIELDS)}, "
        "e.g. 'https://cdn.example.com/{name}' (default: %(default)s, the photo file)",
    )
    sync.add_argument("--schema", default="public", help="schema of the tables (default: %(default)s)")
    sync.add_argument("--products-table", default="simrec_products", help="(default: %(default)s)")
    sync.add_argument("--recommendations-table", default="simrec_recommendations", help="(default: %(default)s)")
    sync.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sync.set_defaults(handler=_cmd_sync)


def _add_duplicates_command(commands: argparse._SubParsersAction) -> None:
    duplicates = commands.add_parser(
        "duplicates", help="find products photographed twice: the same file, or a resized, mirrored or cropped copy"
    )
    duplicates.add_argument("index_dir", metavar="INDEX_DIR")
    duplicates.add_argument(
        "--threshold",
        type=_distance,
        metavar="D",
        help="largest cosine distance of a candidate pair (default: 0.20 when photos verify it, 0.02 for the "
        "vectors alone)",
    )
    duplicates.add_argument(
        "--photo-threshold",
        type=_unit_interval,
        default=PHOTO_DUPLICATE_THRESHOLD,
        metavar="P",
        help="largest difference of the aligned photo thumbnails of a copy (default: %(default)s)",
    )
    duplicates.add_argument(
        "--candidates",
        type=_positive,
        default=DUPLICATE_CANDIDATES,
        metavar="N",
        help="nearest neighbors of each product looked at (default: %(default)s)",
    )
    duplicates.add_argument(
        "--vectors-only", action="store_true", help="judge by the vectors alone, without decoding any photo"
    )
    duplicates.add_argument("--format", choices=("table", "json", "csv"), default="table")
    duplicates.add_argument("--out", help="also write the pairs to this .csv or .parquet file")
    duplicates.add_argument("--plot", help="write a grid of the groups to this PNG file")
    duplicates.add_argument("--exact", action="store_true", help="exact search even if the index has an ann structure")
    duplicates.set_defaults(handler=_cmd_duplicates)


def _add_serve_command(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve an index over HTTP: a JSON API and a web page")
    serve.add_argument("index_dir", metavar="INDEX_DIR")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port, 1 to 65535 (default: %(default)s)")
    serve.add_argument(
        "--max-upload-mb", type=_positive, default=20, help="largest photo upload in MB (default: %(default)s)"
    )
    serve.add_argument("--weights", help="weights file, if the index was built from one that has moved")
    _add_runtime_option(serve)
    serve.add_argument("--exact", action="store_true", help="exact search even if the index has an ann structure")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="processes answering on the one port, each following the index (default: %(default)s)",
    )
    serve.add_argument(
        "--timeout",
        type=_positive_float,
        default=5.0,
        help="seconds a request may wait; later it is answered 503 with Retry-After (default: %(default)s)",
    )
    serve.set_defaults(handler=_cmd_serve)


def _add_ann_command(commands: argparse._SubParsersAction) -> None:
    ann = commands.add_parser(
        "ann", help="build (or remove) an approximate-search structure inside an index (pip install 'simrec[faiss]')"
    )
    ann.add_argument("index_dir", metavar="INDEX_DIR")
    ann.add_argument("--type", dest="ann_type", required=True, choices=(*ANN_TYPES, "none"), help="none removes it")
    ann.add_argument("--nlist", type=_positive, help="IVF lists (default: about 2 sqrt(items))")
    ann.add_argument("--nprobe", type=_positive, help="IVF lists searched by default (default: nlist / 16)")
    ann.add_argument("--m", type=_positive, help="hnsw: links per node (32); ivf-pq: bytes per vector (128 at 2048-d)")
    ann.add_argument("--nbits", type=_positive, help="ivf-pq: bits per code (default: 8)")
    ann.add_argument("--ef-construction", type=_positive, help="hnsw: build breadth (default: 80)")
    ann.add_argument("--ef", type=_positive, help="hnsw: search breadth stored as default (default: 128)")
    ann.add_argument("--rerank", type=int, help="ivf-pq: candidates per result re-scored exactly (default: 8; 0 off)")
    ann.add_argument("--seed", type=int, default=0, help="seed of the training sample (default: %(default)s)")
    ann.set_defaults(handler=_cmd_ann)


def _add_verify_command(commands: argparse._SubParsersAction) -> None:
    verify = commands.add_parser("verify", help="check every checksum of an index folder (exit 0 intact, 2 damaged)")
    verify.add_argument("index_dir", metavar="INDEX_DIR")
    verify.set_defaults(handler=_cmd_verify)


def _add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("evaluate", help="leave-one-out precision@k and mAP@k by label")
    evaluate.add_argument("index_dir", metavar="INDEX_DIR")
    evaluate.add_argument("-k", type=_positive, default=N_NEIGHBORS, help="neighbors per query (default: %(default)s)")
    evaluate.add_argument("--format", choices=("table", "json"), default="table")
    _add_colour_weight(evaluate)
    evaluate.add_argument(
        "--sweep",
        action="store_true",
        help=f"evaluate at colour weights {', '.join(f'{w:g}' for w in SWEEP_COLOUR_WEIGHTS)}, side by side",
    )
    evaluate.add_argument(
        "--label-from",
        metavar="REGEX",
        help="also evaluate a second labelling: the one group of REGEX searched in each product_id, "
        r"e.g. '/([a-z]+)_\d+$' for the product type in red/shirt_1",
    )
    evaluate.add_argument(
        "--labels-csv",
        metavar="FILE",
        help="a metadata table (e.g. a shop's styles.csv) with a product_id or id column, joined by product id "
        "or, failing that, by file name; its --label-column columns are evaluated as labellings",
    )
    evaluate.add_argument(
        "--label-column",
        metavar="COL",
        action="append",
        default=[],
        help="a column of --labels-csv to evaluate (repeat for several, e.g. articleType and baseColour); with two "
        "labellings or more the joint precision (every label equal) is printed too",
    )
    evaluate.set_defaults(handler=_cmd_evaluate)


def _add_neighbors_command(commands: argparse._SubParsersAction) -> None:
    neighbors = commands.add_parser(
        "neighbors", help="store every product's nearest products in an index, so id queries need no scan"
    )
    neighbors.add_argument("index_dir", metavar="INDEX_DIR")
    neighbors.add_argument(
        "-k", type=_positive, default=STORED_NEIGHBORS, help="products stored per product (default: %(default)s)"
    )
    neighbors.add_argument("--remove", action="store_true", help="remove them instead")
    neighbors.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    neighbors.set_defaults(handler=_cmd_neighbors)


def _cmd_neighbors(args: argparse.Namespace) -> int:
    embedded = store_neighbors(args.index_dir, args.k, store=not args.remove, verbose=not args.quiet)
    stored = embedded.stored_neighbors
    if stored is None:
        print(f"{args.index_dir}: no stored neighbors; id queries scan")
    else:
        print(
            f"{args.index_dir}: stored the {stored.n_neighbors} nearest products of {len(embedded)} products "
            f"at colour weight {stored.colour_weight:g}"
        )
    return 0


def _add_colours_command(commands: argparse._SubParsersAction) -> None:
    colours = commands.add_parser(
        "colours", help="add colour signatures to an index made without them (reads the photos, no model)"
    )
    colours.add_argument("index_dir", metavar="INDEX_DIR")
    colours.add_argument(
        "--batch-size", type=_positive, default=BATCH_SIZE, help="photos per batch (default: %(default)s)"
    )
    colours.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    colours.set_defaults(handler=_cmd_colours)


def _add_demo_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the whole pipeline on a built-in synthetic catalog")
    demo.add_argument("--out", default=DEMO_DIR, help="output folder (default: %(default)s)")
    demo.add_argument("-k", type=_positive, default=N_NEIGHBORS, help="neighbors per query (default: %(default)s)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_model_options(demo)
    demo.set_defaults(handler=_cmd_demo)


def _add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="measure embedding and search speed on this machine")
    bench.add_argument(
        "--images", type=_positive, help="generated JPEGs to embed (default: 96; 32 per model with --model)"
    )
    bench.add_argument("--batch-size", type=_positive, default=BATCH_SIZE)
    bench.add_argument("--precision", choices=PRECISIONS, default="float32")
    _add_runtime_option(bench)
    bench.add_argument(
        "--items", type=_positive, default=20_000, help="vectors for the search benchmark (default: %(default)s)"
    )
    bench.add_argument(
        "--memory-items", type=int, default=100_000, help="items for the all-items peak-memory figure (0 skips it)"
    )
    bench.add_argument("--repeats", type=_positive, default=2, help="rounds of the embedding figures (best kept)")
    bench.add_argument("--out", help="also write the figures to this JSON file")
    bench.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help="measure the embedding speed of these backbones instead (repeat it; 'all' for every one), at their "
        "own input sizes with untrained weights",
    )
    bench.add_argument(
        "--ann",
        type=_positive,
        nargs="?",
        const=200_000,
        help="instead: approximate vs exact search on ANN clustered 2048-d vectors (default 200000; needs faiss)",
    )
    bench.add_argument(
        "--index",
        dest="index_dir",
        metavar="INDEX_DIR",
        help="with --ann: also measure on this index folder's embeddings",
    )
    bench.add_argument(
        "--ray", action="store_true", help="instead: the Ray engine on a local Ray vs the local engine (needs ray)"
    )
    bench.set_defaults(handler=_cmd_bench)


_COMMANDS = (
    _add_index_command,
    _add_query_command,
    _add_export_command,
    _add_sync_command,
    _add_duplicates_command,
    _add_serve_command,
    _add_ann_command,
    _add_verify_command,
    _add_evaluate_command,
    _add_colours_command,
    _add_neighbors_command,
    _add_demo_command,
    _add_bench_command,
)
"""One function a command, in the order of ``simrec --help``."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {value}")
    return value


def _number_in(what: str, low: float, high: float, *, low_open: bool = False):
    """An argparse type: a float from ``low`` to ``high`` (above ``low`` when ``low_open``), or one clear line."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high:  # NaN fails too
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


_positive_float = _number_in("a positive number of seconds", 0.0, 1e9, low_open=True)
_positive_float.__name__ = "seconds"
_distance = _number_in("a cosine distance from 0 to 2", 0.0, 2.0)
_distance.__name__ = "distance"
_unit_interval = _number_in("a number from 0 to 1", 0.0, 1.0)
_unit_interval.__name__ = "number"


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="simrec: %(levelname)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if verbosity < 2 else "0")
    logging.getLogger("simrec.pipeline.embedding").setLevel(logging.ERROR if verbosity == 0 else level)


def _build_options(args: argparse.Namespace) -> dict:
    """The extractor and progress options that `index` and `demo` share."""
    return {
        "model": args.model,
        "weights": args.weights,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "image_size": args.image_size,
        "precision": args.precision,
        "runtime": args.runtime,
        "verbose": not args.quiet,
    }


def _cmd_index(args: argparse.Namespace) -> int:

    import_backend_quietly(args.verbose)
    ray_options = {"address": args.ray_address, "workers": args.workers, "gpus_per_worker": args.gpus_per_worker}
    ray_options = {key: value for key, value in ray_options.items() if value is not None}
    if args.engine == "ray" and args.verbose == 0:
        logging.getLogger("ray").setLevel(logging.WARNING)  # Ray Data logs every stage at INFO
    embedded, report = build_index(
        args.source,
        args.index_dir,
        rebuild=args.rebuild,
        metadata=args.metadata,
        engine=args.engine,
        engine_options=ray_options,
        preprocessing=args.preprocessing,
        **_build_options(args),
    )
    _print_build(embedded, report, args.index_dir)
    return 0


def _print_build(embedded, report, index_dir) -> None:

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
            print(f"  {_one_line(row.path)}: {row.reason}")
        if report.skipped > 5:
            print(f"  ... and {report.skipped - 5} more")
    if getattr(report, "ann", ""):
        print(report.ann)


def _one_line(name: str) -> str:
    """A file name as one terminal line: line breaks, tabs and other control characters escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name)


def _cmd_query(args: argparse.Namespace) -> int:
    embedded = load_index(args.index_dir, mmap=True)
    if args.product_id is not None:
        embedded.row_of(args.product_id)  # an unknown product is the first thing to say, as recommend says it
    plan = plan_query(
        embedded,
        args.k,
        photo=args.product_id is None,
        colour_weight=args.colour_weight,
        exact=args.exact,
        nprobe=args.nprobe,
        ef=args.ef,
        index_name=args.index_dir,
    )
    extractor = None
    if args.image is not None:
        load_image(args.image, int(embedded.meta.image_size))  # report a bad file before loading the model
        import_backend_quietly(args.verbose)
        extractor = query_extractor(embedded, args.weights, runtime=args.runtime)
    if args.text is not None:
        import_backend_quietly(args.verbose)
        query_text_embedder(embedded, args.weights)  # refusals and the preset's loading, before the search
    results = recommend(
        embedded,
        product_id=args.product_id,
        image=args.image,
        n_neighbors=plan.n_neighbors,
        extractor=extractor,
        colour_weight=plan.colour_weight,
        search=plan.search,
        distinct=args.distinct,
        text=args.text,
    )
    if args.format == "json":
        print(json.dumps(results_payload(results), indent=2, default=_json_default))
    elif args.format == "csv":
        print(results.to_csv(index=False), end="")
    else:
        print(results.to_string(index=False, formatters={"distance": "{:.4f}".format}))
    if embedded.warning:
        print(f"WARNING: {embedded.warning}", file=sys.stderr)
    if args.plot:
        _save_figure(plot_recommendations(results), args.plot)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    check_path_argument(args.out, "--out")
    embedded = load_index(args.index_dir, mmap=True)
    if args.embeddings:
        report = export_embeddings(embedded, args.out, verbose=not args.quiet)
        print(f"wrote {report.rows} vectors of {embedded.embeddings.shape[1]} numbers to {report.path}")
        return 0
    report = export_neighbors(
        embedded,
        args.out,
        n_neighbors=args.k,
        colour_weight=args.colour_weight,
        exact=args.exact,
        distinct=args.distinct,
        verbose=not args.quiet,
    )
    print(
        f"wrote {report.rows} rows ({report.products} products x {'up to ' if args.distinct else ''}{args.k} "
        f"neighbors) to {report.path} "
        f"in {report.seconds:.1f}s"
    )
    if embedded.warning:
        print(f"WARNING: {embedded.warning}", file=sys.stderr)
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    report = sync_index(
        args.index_dir,
        args.url,
        n_neighbors=args.neighbors,
        colour_weight=args.colour_weight,
        distinct=args.distinct,
        exact=args.exact,
        photo=args.photo,
        schema=args.schema,
        products_table=args.products_table,
        recommendations_table=args.recommendations_table,
        verbose=not args.quiet,
    )
    if not report.wrote:
        print(f"{report.url} already holds this index (generation {report.generation}): nothing written")
        return 0
    print(
        f"synced {report.products} products into {report.url} in one transaction: added {report.added}, "
        f"changed {report.changed}, removed {report.removed}, unchanged {report.unchanged}; recommendations "
        f"rewritten for {report.recommended} products ({report.recommendation_rows} rows); {report.seconds:.1f}s"
    )
    return 0


def _cmd_duplicates(args: argparse.Namespace) -> int:
    embedded = load_index(args.index_dir, mmap=True)
    report = find_duplicates(
        embedded,
        threshold=args.threshold,
        photo_threshold=args.photo_threshold,
        n_candidates=args.candidates,
        photos=False if args.vectors_only else "auto",
        exact=args.exact,
    )
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    elif args.format == "csv":
        print(report.pairs.to_csv(index=False), end="")
    else:
        if len(report.pairs):
            print(
                report.pairs.to_string(
                    index=False, formatters={"distance": "{:.4f}".format, "difference": "{:.4f}".format}
                )
            )
        n_groups = report.groups["group"].nunique()
        how = (
            f"photos compared (difference <= {report.photo_threshold:g})" if report.photos_compared else "vectors alone"
        )
        print(
            f"{len(report.pairs)} duplicate pairs in {n_groups} groups among {len(embedded)} products "
            f"({report.candidates} candidates within cosine distance {report.threshold:g}, {how}; "
            f"{report.seconds:.1f}s)"
        )
        for group, members in report.groups.groupby("group", sort=True):
            keep = members.loc[members["keep"], "product_id"].iloc[0]
            others = ", ".join(members.loc[~members["keep"], "product_id"].astype(str))
            print(f"  group {group}: keep {keep}; duplicates: {others}")
    if report.note:
        print(f"note: {report.note}", file=sys.stderr)
    if args.out:
        print(f"pairs written to {write_duplicates(report, args.out)}", file=sys.stderr)
    if args.plot:
        paths = dict(zip(embedded.catalog["product_id"].astype(str), embedded.catalog["path"].astype(str)))
        _save_figure(plot_duplicate_groups(report.groups, paths), args.plot)
    return 0


SERVE_PACKAGES = {
    "fastapi": ("fastapi",),
    "uvicorn": ("uvicorn",),
    "python-multipart": ("python_multipart", "multipart"),
    "fastapi-offline": ("fastapi_offline",),
}
"""The pip packages `simrec serve` needs, each with the module names it may be imported as."""


def _cmd_serve(args: argparse.Namespace) -> int:
    missing = [package for package, modules in SERVE_PACKAGES.items() if not any(map(_importable, modules))]
    if missing:
        print(
            f"simrec: error: simrec serve needs {', '.join(missing)}, which is not installed: "
            f"pip install {' '.join(missing)} (or pip install -r requirements.txt)",
            file=sys.stderr,
        )
        return USER_ERROR
    from simrec.serve.running import check_port, run
    from simrec.storage.index_folder import read_manifest

    check_port(args.port)
    if not read_manifest(args.index_dir).made_outside and args.workers == 1:
        import_backend_quietly(args.verbose)  # photo queries: the model is built before serving
    settings = {
        "index_dir": args.index_dir,
        "max_upload_bytes": args.max_upload_mb * 1024**2,
        "weights_path": args.weights,
        "runtime": args.runtime,
        "exact": args.exact,
        "timeout": args.timeout,
    }
    run(settings, host=args.host, port=args.port, workers=args.workers, verbose=args.verbose)
    return 0


def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _cmd_ann(args: argparse.Namespace) -> int:

    params = {"nlist": args.nlist, "nprobe": args.nprobe, "m": args.m, "nbits": args.nbits}
    params.update(ef_construction=args.ef_construction, ef=args.ef, rerank=args.rerank)
    info = attach_ann(args.index_dir, args.ann_type, seed=args.seed, **params)
    if info is None:
        print(f"{args.index_dir}: no ann structure; queries use exact search")
        return 0
    settings = ", ".join(f"{key}={value}" for key, value in info["params"].items())
    print(
        f"{args.index_dir}: ann {info['type']} ({settings}) over {info['count']} vectors: "
        f"recall@10 {info['recall_at_10']:.3f} vs exact, {info['bytes_per_vector']:.0f} bytes/vector, "
        f"built in {info['build_seconds']:.1f}s"
    )
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:

    embedded = verify_index(args.index_dir)
    meta = embedded.meta
    files = meta.files.values()
    checked = ", ".join(e["name"] for e in files) if meta.format_version > 1 else "all files"
    inside = str(Path(args.index_dir).absolute()) + os.sep
    photos = sum(str(path).startswith(inside) for path in embedded.catalog["path"])
    held = f" and the {photos} photos it holds" if photos else ""
    print(f"{args.index_dir}: intact ({len(embedded)} items, {meta.dim}-d; checked {checked}{held})")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:

    embedded = load_index(args.index_dir, mmap=True)
    if args.colour_weight is None:
        args.colour_weight = 0.0  # evaluate measures the look alone unless a weight or the sweep is asked for
    if args.sweep or args.label_from or args.labels_csv or args.colour_weight > 0:
        _colour_evaluation(args, embedded)
    else:
        report = evaluate(embedded.neighbors, embedded.catalog["label"], n_neighbors=args.k)
        if args.format == "json":
            print(json.dumps(report, indent=2))
        else:
            _print_evaluation(report)
    if embedded.warning:
        print(f"WARNING: {embedded.warning}", file=sys.stderr)
    return 0


def _colour_evaluation(args: argparse.Namespace, embedded) -> None:
    """``evaluate`` with a colour weight, a second labelling, or the colour-weight sweep."""

    labellings = _labellings(args, embedded)
    weights = SWEEP_COLOUR_WEIGHTS if args.sweep else (args.colour_weight,)
    if max(weights) > 0:
        require_colours(embedded, args.index_dir)
    sweep = sweep_colour_weight(embedded, labellings, n_neighbors=args.k, colour_weights=weights)
    if args.format == "json":
        records = sweep.astype(object).where(sweep.notna(), None).to_dict(orient="records")  # NaN -> null
        print(json.dumps({"k": args.k, "results": records}, indent=2))
    else:
        _print_sweep(sweep, args.k)


def _labellings(args: argparse.Namespace, embedded) -> dict:
    """The folder labels, the --labels-csv columns and --label-from, and their joint labelling (two or more).

    The folder labels are left out when they distinguish nothing (photos at the top of the
    source, or all in one folder) and another labelling is asked for.
    """
    product_ids = embedded.catalog["product_id"]
    asked = {}
    if args.label_column and not args.labels_csv:
        raise InvalidArgumentError("--label-column names a column of --labels-csv FILE: pass --labels-csv too")
    if args.labels_csv:
        if not args.label_column:
            raise InvalidArgumentError("--labels-csv needs --label-column COL (the column that holds the labels)")
        for column in args.label_column:
            asked[column] = labels_from_table(product_ids, args.labels_csv, column)
    if args.label_from:
        asked[args.label_from] = label_from(product_ids, args.label_from)
    labellings = {"label": embedded.catalog["label"]}
    if asked and not distinguishes(embedded.catalog["label"]):
        labellings = {}
    labellings.update(asked)
    if len(labellings) >= 2:
        labellings[" & ".join(labellings)] = joint_labels(labellings)
    return labellings


def _print_sweep(sweep, k: int) -> None:
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


def _cmd_colours(args: argparse.Namespace) -> int:

    embedded = add_colours(args.index_dir, batch_size=args.batch_size, verbose=not args.quiet)
    print(f"added colour signatures for {len(embedded)} photos to {args.index_dir}")
    return 0


def _print_evaluation(report: dict) -> None:
    k = report["k"]
    print(f"{'label':<16} {'n':>5} {f'precision@{k}':>12} {f'mAP@{k}':>8}")
    for label, row in report["per_label"].items():
        print(f"{label:<16} {row['n']:>5} {row['precision_at_k']:>12.3f} {row['map_at_k']:>8.3f}")
    print(f"{'all':<16} {report['n']:>5} {report['precision_at_k']:>12.3f} {report['map_at_k']:>8.3f}")
    print(f"(a random ranking would score precision@{k} = {report['chance_precision']:.3f})")
    if report["n_unlabelled"]:
        print(f"({report['n_unlabelled']} items without a label were neither queries nor relevant)")


def _cmd_demo(args: argparse.Namespace) -> int:
    check_path_argument(args.out, "--out")
    import_backend_quietly(args.verbose)
    out = Path(args.out)
    zip_path = make_synthetic_catalog(out / "Colors_Products.zip")
    print(f"synthetic catalog: {zip_path}")
    embedded, report = build_index(zip_path, out / "index", **_build_options(args))
    _print_build(embedded, report, out / "index")
    catalog = embedded.catalog
    queries = catalog.groupby("label", sort=True)["product_id"].first().tolist()[:4]
    results = [recommend(embedded, product_id=pid, n_neighbors=args.k) for pid in queries]
    weight = results[0].attrs.get("colour_weight", 0.0)
    print(f"\nthe {args.k} products most like {queries[0]} (colour weight {weight:g}):")
    print(results[0].to_string(index=False, formatters={"distance": "{:.4f}".format}))
    grid = out / "recommendations.png"
    _save_figure(plot_recommendation_grid(results, title="simrec demo: query, then its nearest products"), grid)
    print()
    _print_evaluation(evaluate(embedded.neighbors, catalog["label"], n_neighbors=args.k))
    print(f"\nresult grid: {grid}\nindex: {out / 'index'}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:

    if args.index_dir and not args.ann:
        raise InvalidArgumentError("--index is measured by --ann: pass --ann N too")
    if args.ann:
        run_ann_benchmark(args.ann, index_dir=args.index_dir, json_path=args.out)
        return 0
    if args.ray:
        import_backend_quietly(args.verbose)
        run_ray_benchmark(args.images or 96, args.batch_size, runtime=args.runtime)
        return 0
    if args.model:
        import_backend_quietly(args.verbose)
        run_model_benchmark(
            args.model, args.images or 32, args.batch_size, args.precision, args.repeats, args.out, runtime=args.runtime
        )
        return 0

    import_backend_quietly(args.verbose)
    run_benchmark(
        n_images=args.images or 96,
        batch_size=args.batch_size,
        precision=args.precision,
        n_items=args.items,
        memory_items=args.memory_items,
        repeats=args.repeats,
        json_path=args.out,
        runtime=args.runtime,
    )
    return 0


def _save_figure(figure, path: str | os.PathLike) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    except OSError as error:
        raise NotWritableError(f"cannot write the plot {path}: {error.strerror or error}") from None
    print(f"plot written to {path}", file=sys.stderr)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)
