"""What each ``simrec`` command calls: one use case per command, its results handed to :mod:`simrec.cli.printing`.

A handler takes the parsed options and returns the exit status; the use cases raise
simrec's own errors, which :func:`simrec.cli.main` says in the command line's words.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from simrec.app.ann import attach_ann
from simrec.app.duplicates import TABLE_SUFFIXES, find_duplicates, write_duplicates
from simrec.app.evaluate import evaluate, evaluate_index
from simrec.app.export import export_embeddings, export_neighbors
from simrec.app.indexing import add_colours, build_index
from simrec.app.plot import plot_duplicate_groups, plot_recommendation_grid, plot_recommendations
from simrec.app.precompute import store_neighbors
from simrec.app.querying import plan_query, query_extractor, query_text_embedder, recommend
from simrec.app.sync import sync_index
from simrec.app.synthetic import make_synthetic_catalog
from simrec.bench import run_ann_benchmark, run_benchmark, run_model_benchmark, run_ray_benchmark
from simrec.cli.printing import (
    print_build,
    print_duplicates,
    print_evaluation,
    print_results,
    print_sweep,
    print_sweep_json,
    print_warning,
    save_figure,
)
from simrec.core.errors import InvalidArgumentError
from simrec.core.validation import check_path_argument, check_suffix
from simrec.pipeline.backend import import_backend_quietly
from simrec.pipeline.images import load_image
from simrec.storage.index_folder import load_index, verify_index


def build_options(args: argparse.Namespace) -> dict:
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


def index_command(args: argparse.Namespace) -> int:
    """``simrec index``: :func:`simrec.build_index`."""
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
        **build_options(args),
    )
    print_build(embedded, report, args.index_dir)
    return 0


def query_command(args: argparse.Namespace) -> int:
    """``simrec query``: :func:`simrec.recommend`, every refusal of :func:`plan_query` before a model is loaded."""
    embedded = load_index(args.index_dir, mmap=True)
    plan = plan_query(
        embedded,
        args.k,
        product_id=args.product_id,
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
    print_results(results, args.format)
    print_warning(embedded.warning)
    if args.plot:
        save_figure(plot_recommendations(results), args.plot)
    return 0


def export_command(args: argparse.Namespace) -> int:
    """``simrec export``: every product's neighbors, or every vector, to a file."""
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
        index_name=args.index_dir,
    )
    print(
        f"wrote {report.rows} rows ({report.products} products x {'up to ' if args.distinct else ''}{args.k} "
        f"neighbors) to {report.path} "
        f"in {report.seconds:.1f}s"
    )
    print_warning(embedded.warning)
    return 0


def sync_command(args: argparse.Namespace) -> int:
    """``simrec sync``: :func:`simrec.sync_index`."""
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


def duplicates_command(args: argparse.Namespace) -> int:
    """``simrec duplicates``: :func:`simrec.find_duplicates`, printed, written and drawn."""
    if args.out:  # before the search, not after it
        check_suffix(args.out, "out", TABLE_SUFFIXES)
    embedded = load_index(args.index_dir, mmap=True)
    report = find_duplicates(
        embedded,
        threshold=args.threshold,
        photo_threshold=args.photo_threshold,
        n_candidates=args.candidates,
        photos=False if args.vectors_only else "auto",
        exact=args.exact,
        pixel_candidates=not args.no_pixel_candidates,
        verbose=not args.quiet,
    )
    print_duplicates(report, len(embedded), args.format)
    if report.note:
        print(f"note: {report.note}", file=sys.stderr)
    if args.out:
        print(f"pairs written to {write_duplicates(report, args.out)}", file=sys.stderr)
    if args.plot:
        paths = dict(zip(embedded.catalog["product_id"].astype(str), embedded.catalog["path"].astype(str)))
        save_figure(plot_duplicate_groups(report.groups, paths), args.plot)
    return 0


def serve_command(args: argparse.Namespace) -> int:
    """``simrec serve``: the service under uvicorn, once its packages, port and index are known to be there."""
    from simrec.serve.dependencies import check_dependencies

    check_dependencies()
    from simrec.serve.running import check_port, run
    from simrec.storage.index_folder import read_meta

    check_port(args.port)
    if not read_meta(args.index_dir).made_outside and args.workers == 1:
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


def ann_command(args: argparse.Namespace) -> int:
    """``simrec ann``: build (or remove) an index's approximate-search structure."""
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


def verify_command(args: argparse.Namespace) -> int:
    """``simrec verify``: every checksum of an index folder."""
    embedded = verify_index(args.index_dir)
    meta = embedded.meta
    files = meta.files.values()
    checked = ", ".join(e["name"] for e in files) if meta.format_version > 1 else "all files"
    inside = str(Path(args.index_dir).absolute()) + os.sep
    photos = sum(str(path).startswith(inside) for path in embedded.catalog["path"])
    held = f" and the {photos} photos it holds" if photos else ""
    print(f"{args.index_dir}: intact ({len(embedded)} items, {meta.dim}-d; checked {checked}{held})")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """``simrec evaluate``: :func:`simrec.app.evaluate.evaluate_index`."""
    embedded = load_index(args.index_dir, mmap=True)
    evaluation = evaluate_index(
        embedded,
        args.k,
        colour_weight=args.colour_weight,
        sweep=args.sweep,
        labels_csv=args.labels_csv,
        label_columns=args.label_column,
        pattern=args.label_from,
        index_name=args.index_dir,
    )
    if isinstance(evaluation, dict) and args.format == "json":
        print(json.dumps(evaluation, indent=2))
    elif isinstance(evaluation, dict):
        print_evaluation(evaluation)
    elif args.format == "json":
        print_sweep_json(evaluation, args.k)
    else:
        print_sweep(evaluation, args.k)
    print_warning(embedded.warning)
    return 0


def colours_command(args: argparse.Namespace) -> int:
    """``simrec colours``: add colour signatures to an index made without them."""
    embedded = add_colours(args.index_dir, batch_size=args.batch_size, verbose=not args.quiet)
    print(f"added colour signatures for {len(embedded)} photos to {args.index_dir}")
    return 0


def neighbors_command(args: argparse.Namespace) -> int:
    """``simrec neighbors``: store (or remove) every product's nearest products."""
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


def demo_command(args: argparse.Namespace) -> int:
    """``simrec demo``: a synthetic catalog indexed, queried, drawn and evaluated."""
    check_path_argument(args.out, "--out")
    import_backend_quietly(args.verbose)
    out = Path(args.out)
    zip_path = make_synthetic_catalog(out / "Colors_Products.zip")
    print(f"synthetic catalog: {zip_path}")
    embedded, report = build_index(zip_path, out / "index", **build_options(args))
    print_build(embedded, report, out / "index")
    catalog = embedded.catalog
    queries = catalog.groupby("label", sort=True)["product_id"].first().tolist()[:4]
    results = [recommend(embedded, product_id=pid, n_neighbors=args.k) for pid in queries]
    weight = results[0].attrs.get("colour_weight", 0.0)
    print(f"\nthe {args.k} products most like {queries[0]} (colour weight {weight:g}):")
    print_results(results[0])
    grid = out / "recommendations.png"
    save_figure(plot_recommendation_grid(results, title="simrec demo: query, then its nearest products"), grid)
    print()
    print_evaluation(evaluate(embedded.neighbors, catalog["label"], n_neighbors=args.k))
    print(f"\nresult grid: {grid}\nindex: {out / 'index'}")
    return 0


def bench_command(args: argparse.Namespace) -> int:
    """``simrec bench``: one of the benchmarks of :mod:`simrec.bench`.

    Raises:
        InvalidArgumentError: ``--index`` without ``--ann``.
    """
    if args.index_dir and not args.ann:
        raise InvalidArgumentError("--index is measured by --ann: pass --ann N too")
    if args.ann:
        run_ann_benchmark(args.ann, index_dir=args.index_dir, json_path=args.out)
        return 0
    import_backend_quietly(args.verbose)
    if args.ray:
        run_ray_benchmark(args.images or 96, args.batch_size, runtime=args.runtime)
        return 0
    if args.model:
        run_model_benchmark(
            args.model, args.images or 32, args.batch_size, args.precision, args.repeats, args.out, runtime=args.runtime
        )
        return 0
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
