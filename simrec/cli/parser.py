"""The options of every ``simrec`` command, with argparse: what each one is called, takes and defaults to.

Values argparse can check alone (a positive integer, a number from 0 to 1) are checked
here; everything else is the use case's to check. Each command's handler is in
:mod:`simrec.cli.commands`.
"""

from __future__ import annotations

import argparse

from simrec.app.evaluate import SWEEP_COLOUR_WEIGHTS
from simrec.app.sync import PHOTO_FIELDS
from simrec.cli import commands as handlers
from simrec.core.backbones import BACKBONES, DEFAULT_BACKBONE, PREPROCESSING_MODES
from simrec.core.defaults import (
    BATCH_SIZE,
    COLOUR_WEIGHT,
    DEMO_DIR,
    DUPLICATE_CANDIDATES,
    DUPLICATE_THRESHOLD,
    N_NEIGHBORS,
    PHOTO_DUPLICATE_THRESHOLD,
    SEED,
    STORED_NEIGHBORS,
    VECTOR_DUPLICATE_THRESHOLD,
)
from simrec.core.hub_backbones import HUB_BACKBONES
from simrec.core.version import __version__
from simrec.pipeline.backend import backend_name
from simrec.pipeline.model import PRECISIONS
from simrec.pipeline.runtime import RUNTIMES
from simrec.search.approximate import ANN_TYPES

USER_ERROR = 2
"""The exit status of a user's mistake (a bad option, a missing file, a damaged index)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every user error
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``simrec`` parser: one subcommand each, its handler in ``args.handler``."""
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
    index.set_defaults(handler=handlers.index_command)


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
    query.set_defaults(handler=handlers.query_command)


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
    export.set_defaults(handler=handlers.export_command)


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
    sync.set_defaults(handler=handlers.sync_command)


def _add_duplicates_command(commands: argparse._SubParsersAction) -> None:
    duplicates = commands.add_parser(
        "duplicates", help="find products photographed twice: the same file, or a resized, mirrored or cropped copy"
    )
    duplicates.add_argument("index_dir", metavar="INDEX_DIR")
    duplicates.add_argument(
        "--threshold",
        type=_distance,
        metavar="D",
        help="largest cosine distance of the network's vectors of a candidate pair (default: "
        f"{DUPLICATE_THRESHOLD:g} when photos verify it, {VECTOR_DUPLICATE_THRESHOLD:g} for the vectors alone)",
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
        help="nearest products by the network's vectors looked at for each product (default: %(default)s)",
    )
    duplicates.add_argument(
        "--vectors-only", action="store_true", help="judge by the network's vectors alone, without decoding any photo"
    )
    duplicates.add_argument(
        "--no-pixel-candidates",
        action="store_true",
        help="candidates from the network's vectors alone: only their photos are decoded (faster on a large "
        "catalog, but copies the network places apart, such as half-size copies of small photos, are missed)",
    )
    duplicates.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    duplicates.add_argument("--format", choices=("table", "json", "csv"), default="table")
    duplicates.add_argument("--out", help="also write the pairs to this .parquet or .csv file")
    duplicates.add_argument("--plot", help="write a grid of the groups to this PNG file")
    duplicates.add_argument("--exact", action="store_true", help="exact search even if the index has an ann structure")
    duplicates.set_defaults(handler=handlers.duplicates_command)


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
    serve.set_defaults(handler=handlers.serve_command)


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
    ann.set_defaults(handler=handlers.ann_command)


def _add_verify_command(commands: argparse._SubParsersAction) -> None:
    verify = commands.add_parser("verify", help="check every checksum of an index folder (exit 0 intact, 2 damaged)")
    verify.add_argument("index_dir", metavar="INDEX_DIR")
    verify.set_defaults(handler=handlers.verify_command)


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
    evaluate.set_defaults(handler=handlers.evaluate_command)


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
    neighbors.set_defaults(handler=handlers.neighbors_command)


def _add_colours_command(commands: argparse._SubParsersAction) -> None:
    colours = commands.add_parser(
        "colours", help="add colour signatures to an index made without them (reads the photos, no model)"
    )
    colours.add_argument("index_dir", metavar="INDEX_DIR")
    colours.add_argument(
        "--batch-size", type=_positive, default=BATCH_SIZE, help="photos per batch (default: %(default)s)"
    )
    colours.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    colours.set_defaults(handler=handlers.colours_command)


def _add_demo_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the whole pipeline on a built-in synthetic catalog")
    demo.add_argument("--out", default=DEMO_DIR, help="output folder (default: %(default)s)")
    demo.add_argument("-k", type=_positive, default=N_NEIGHBORS, help="neighbors per query (default: %(default)s)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_model_options(demo)
    demo.set_defaults(handler=handlers.demo_command)


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
    bench.set_defaults(handler=handlers.bench_command)


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
