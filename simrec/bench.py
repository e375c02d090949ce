"""Measure, in one run on one machine, how fast simrec embeds and searches.

Figures (one line each, ``name value``), then one ``ratio ...`` line:

* ``model_only_img_per_s``: the compiled forward pass on already-decoded batches (ceiling);
* ``pipeline_img_per_s``: :func:`simrec.embed_images` on generated 600 x 800 JPEGs (with
  colour signatures, as ``simrec index`` runs it);
* ``pipeline_without_colours_img_per_s``: the same with ``colours=False``;
* ``colour_signature_ms``: one colour signature from an already decoded photo;
* ``naive_img_per_s``: the tutorial loop, ``load_img`` + ``model.predict`` per image;
* ``bfloat16_pipeline_img_per_s``: the pipeline in bfloat16, when the CPU has BF16/AMX;
* ``keras_model_only_img_per_s`` / ``openvino_model_only_img_per_s`` / ``int8_model_only_img_per_s``:
  the forward pass on Keras, on OpenVINO in float32, and on OpenVINO in int8 (calibrated on the
  generated photos), on a CPU with OpenVINO (and NNCF for int8) installed: the ``openvino/keras``
  and ``int8/float32`` ratios;
* ``decode_1_worker_img_per_s`` / ``decode_all_cores_img_per_s``: decoding alone, with one
  worker and with every core (processes where there are more than two cores, else threads);
* ``knn_query_ms_simrec`` / ``knn_query_ms_sklearn`` / ``knn_query_ms_sklearn_normalized``:
  one query over ``n_items`` x 2048;
* ``knn_all_items_s_simrec`` / ``knn_all_items_s_sklearn`` / ``knn_all_items_s_sklearn_normalized``:
  every item's top 5;
* ``all_items_peak_mb`` and ``all_items_peak_items``: peak extra memory of all-items search.

Two scikit-learn baselines: ``sklearn`` is ``NearestNeighbors(metric="cosine",
algorithm="brute")`` as tutorials call it, which normalises the whole fitted matrix again
on every query; ``sklearn_normalized`` is the fastest exact way scikit-learn offers, the
vectors normalised once (``sklearn.preprocessing.normalize``) and searched with
``metric="euclidean"``, which ranks unit vectors as cosine does (the query is normalised
inside the timing).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simrec.core.defaults import BATCH_SIZE, IMAGE_SIZE

logger = logging.getLogger(__name__)

SEARCH_FIGURES = (
    "knn_query_ms_simrec",
    "knn_query_ms_sklearn",
    "knn_query_ms_sklearn_normalized",
    "knn_all_items_s_simrec",
    "knn_all_items_s_sklearn",
    "knn_all_items_s_sklearn_normalized",
)


def run_benchmark(
    n_images: int = 96,
    batch_size: int = BATCH_SIZE,
    precision: str = "float32",
    n_items: int = 20_000,
    memory_items: int = 100_000,
    repeats: int = 2,
    json_path: str | os.PathLike | None = None,
    print_fn=print,
    runtime: str = "auto",
) -> dict[str, float]:
    """Run every measurement and print the figures and ratios.

    Args:
        n_images: Generated JPEGs for the embedding figures.
        batch_size: Images per model call.
        precision: Extractor precision for the main figures.
        n_items: Catalog size for the search figures (dimension 2048).
        memory_items: Catalog size for the all-items peak-memory figure (dimension 16;
            the scratch memory does not depend on the dimension). 0 skips it.
        repeats: Interleaved rounds of the embedding figures; each keeps its best.
        json_path: Also write the figures to this JSON file.
        print_fn: Where lines go.
        runtime: What runs the network of the main figures (``"auto"``, ``"keras"``, ``"openvino"``).

    Returns:
        The figures by name.

    Raises:
        InvalidArgumentError: An unknown ``precision`` or ``runtime``.
        MissingDependencyError: ``runtime="openvino"`` without OpenVINO.
    """
    device = _print_machine(print_fn)
    with tempfile.TemporaryDirectory(prefix="simrec-bench-") as folder:
        workload = _embedding_workload(Path(folder), n_images, batch_size, precision, runtime, device, print_fn)
        figures = _best_rates(workload, repeats)
    _report_embedding(figures, print_fn)
    figures.update(_search_figures(n_items))
    _report_search(figures, print_fn)
    if memory_items:
        figures.update(_memory_figures(memory_items))
        _report_memory(figures, memory_items, print_fn)
    ratios = _ratios(figures)
    figures.update({f"ratio {k}": v for k, v in ratios.items()})
    print_fn(
        "ratio " + " ".join(f"{k}={v:.3f}" if k.startswith("colour") else f"{k}={v:.2f}" for k, v in ratios.items())
    )
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _print_machine(print_fn) -> str:
    """Print the machine line (CPU, cores, accelerators, Keras and its backend); return ``"GPU"`` or ``"CPU"``."""
    import keras

    from simrec.pipeline.backend import accelerators, framework_version

    gpus = accelerators()
    print_fn(
        f"machine {cpu_name()}, {os.cpu_count()} CPUs, {', '.join(gpus) or 'no GPU'}, "
        f"Keras {keras.__version__} on {framework_version()}"
    )
    return "GPU" if gpus else "CPU"


@dataclass
class _Workload:
    """The embedding figures' jobs, ready to time.

    Attributes:
        jobs: ``{figure: (images handled, job)}``; each figure is images per second of its job.
        warm_ups: Run once before any job is timed (compilation, first calls).
    """

    jobs: dict[str, tuple[int, Callable[[], object]]]
    warm_ups: list[Callable[[], object]]


def _embedding_workload(
    folder: Path, n_images: int, batch_size: int, precision: str, runtime: str, device: str, print_fn
) -> _Workload:
    """Generate the photos into ``folder``, build the extractors, and set out each embedding figure's job."""
    import keras

    from simrec.core.colour_signature import colour_signatures
    from simrec.core.records import extractor_info
    from simrec.pipeline.backend import native_bfloat16
    from simrec.pipeline.decode import choose_decoder, decoded_batches
    from simrec.pipeline.embedding import compiled_forward, embed_images
    from simrec.pipeline.images import load_image
    from simrec.pipeline.model import build_extractor, python_random_seeded

    paths = _make_photos(folder, n_images)
    extractor = build_extractor(weights=None, precision=precision, runtime=runtime)
    info = extractor_info(extractor)
    print_fn(
        f"precision {info.precision}, runtime {_runtime_text(extractor)}, batch_size {batch_size}, images {n_images}"
    )
    pixels = np.stack([load_image(p, IMAGE_SIZE) for p in paths])

    forward = compiled_forward(extractor)
    forwards = _runtime_forwards(extractor, pixels, device, print_fn) if precision in ("auto", "float32") else {}
    # Decoding is fast: the photos are read several times over, so that starting the
    # workers does not dominate what is measured.
    decode_paths = paths * max(1, -(-1024 // len(paths)))
    all_cores, cores = choose_decoder("auto", len(decode_paths))  # what "auto" picks for a large catalog
    print_fn(f"decoding on all {cores} cores with {all_cores}")
    # The tutorial pattern: a plain keras ResNet50, one load_img + predict per photo.
    with python_random_seeded(0):  # Keras seeds unseeded initializers from Python's random
        backbone = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg")
    naive_paths = paths[: max(16, n_images // 3)]

    def naive_loop() -> None:
        for path in naive_paths:
            image = keras.utils.load_img(path, target_size=(IMAGE_SIZE, IMAGE_SIZE))
            batch = keras.applications.resnet50.preprocess_input(keras.utils.img_to_array(image)[None])
            backbone.predict(batch, verbose=0)

    def in_batches(function) -> Callable[[], object]:
        return lambda: [function(pixels[i : i + batch_size]) for i in range(0, n_images, batch_size)]

    jobs = {
        "model_only_img_per_s": (n_images, in_batches(forward)),
        "pipeline_img_per_s": (n_images, lambda: embed_images(paths, extractor, batch_size=batch_size, verbose=False)),
        "naive_img_per_s": (len(naive_paths), naive_loop),
        "decode_1_worker_img_per_s": (
            len(decode_paths),
            lambda: _drain(decoded_batches(decode_paths, IMAGE_SIZE, batch_size, decoder="threads", n_workers=1)),
        ),
        "decode_all_cores_img_per_s": (
            len(decode_paths),
            lambda: _drain(decoded_batches(decode_paths, IMAGE_SIZE, batch_size, decoder=all_cores, n_workers=cores)),
        ),
        "pipeline_without_colours_img_per_s": (
            n_images,
            lambda: embed_images(paths, extractor, batch_size=batch_size, verbose=False, colours=False),
        ),
        "colour_signatures_per_s": (n_images, lambda: colour_signatures(pixels)),
    }
    for name, other in forwards.items():
        other(pixels[:batch_size])  # compile and warm up
        jobs[f"{name}_model_only_img_per_s"] = (n_images, in_batches(other))
    warm_ups = [
        lambda: forward(pixels[:batch_size]),
        lambda: embed_images(paths[:batch_size], extractor, batch_size=batch_size, verbose=False),
        lambda: backbone.predict(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32), verbose=0),
    ]
    if precision == "float32" and device == "CPU" and native_bfloat16():
        low = build_extractor(weights=None, precision="bfloat16")
        jobs["bfloat16_pipeline_img_per_s"] = (
            n_images,
            lambda: embed_images(paths, low, batch_size=batch_size, verbose=False),
        )
        warm_ups.append(lambda: embed_images(paths[:batch_size], low, batch_size=batch_size, verbose=False))
    return _Workload(jobs, warm_ups)


def _best_rates(workload: _Workload, repeats: int) -> dict[str, float]:
    """Each job's best images per second over ``repeats`` interleaved rounds, after one warm-up of each path.

    Interleaving means a busy moment on a shared machine does not favour one figure over another.
    The colour signature's rate comes back as ``colour_signature_ms``, the time of one signature.
    """
    for warm_up in workload.warm_ups:
        warm_up()
    figures: dict[str, float] = {}
    for _ in range(repeats):
        for name, (count, job) in workload.jobs.items():
            figures[name] = max(figures.get(name, 0.0), _rate(count, job))
    figures["colour_signature_ms"] = 1000 / figures.pop("colour_signatures_per_s")
    return figures


def _report_embedding(figures: dict[str, float], print_fn) -> None:
    """Print the embedding and decoding figures, one ``name value`` line each."""
    for name in (
        "model_only_img_per_s",
        "keras_model_only_img_per_s",
        "openvino_model_only_img_per_s",
        "int8_model_only_img_per_s",
        "pipeline_img_per_s",
        "naive_img_per_s",
        "bfloat16_pipeline_img_per_s",
        "decode_1_worker_img_per_s",
        "decode_all_cores_img_per_s",
    ):
        if name in figures:
            print_fn(f"{name} {figures[name]:.2f}")
    print_fn(f"pipeline_without_colours_img_per_s {figures['pipeline_without_colours_img_per_s']:.2f}")
    print_fn(f"colour_signature_ms {figures['colour_signature_ms']:.3f}")


def _report_search(figures: dict[str, float], print_fn) -> None:
    """Print the search figures and whether simrec and scikit-learn found the same neighbors."""
    for name in SEARCH_FIGURES:
        print_fn(f"{name} {figures[name]:.3f}")
    print_fn(f"knn_identical_neighbors {bool(figures['knn_identical_neighbors'])}")


def _report_memory(figures: dict[str, float], memory_items: int, print_fn) -> None:
    """Print the all-items search's peak memory beside the full matrix it avoids."""
    print_fn(
        f"all_items_peak_mb {figures['all_items_peak_mb']:.1f} at {memory_items} items "
        f"(a full {memory_items} x {memory_items} float32 matrix would be "
        f"{memory_items**2 * 4 / 1024**2:.0f} MB)"
    )


def _ratios(figures: dict[str, float]) -> dict[str, float]:
    """The ratios of the ``ratio`` line, from figures measured in the same run."""
    ratios = {
        "pipeline/model_only": figures["pipeline_img_per_s"] / figures["model_only_img_per_s"],
        "pipeline/naive": figures["pipeline_img_per_s"] / figures["naive_img_per_s"],
        "knn_single_speedup": figures["knn_query_ms_sklearn"] / figures["knn_query_ms_simrec"],
        "knn_single_speedup_vs_normalized": figures["knn_query_ms_sklearn_normalized"] / figures["knn_query_ms_simrec"],
        "knn_all_items_speedup": figures["knn_all_items_s_sklearn"] / figures["knn_all_items_s_simrec"],
        "decode_parallel_efficiency": figures["decode_all_cores_img_per_s"]
        / ((os.cpu_count() or 1) * figures["decode_1_worker_img_per_s"]),
        "pipeline/min(model_only,decode)": figures["pipeline_img_per_s"]
        / min(figures["model_only_img_per_s"], figures["decode_all_cores_img_per_s"]),
        "knn_all_items_speedup_vs_normalized": (
            figures["knn_all_items_s_sklearn_normalized"] / figures["knn_all_items_s_simrec"]
        ),
    }
    # Extra indexing time that colour signatures cost: measured end to end, and as the
    # signature's own time over the time per photo (what it would cost if not overlapped).
    ratios["colour_overhead"] = figures["pipeline_without_colours_img_per_s"] / figures["pipeline_img_per_s"] - 1
    ratios["colour_signature_share"] = figures["colour_signature_ms"] * figures["pipeline_img_per_s"] / 1000
    if "bfloat16_pipeline_img_per_s" in figures:
        ratios["bfloat16/float32"] = figures["bfloat16_pipeline_img_per_s"] / figures["pipeline_img_per_s"]
    if "keras_model_only_img_per_s" in figures and "openvino_model_only_img_per_s" in figures:
        ratios["openvino/keras"] = figures["openvino_model_only_img_per_s"] / figures["keras_model_only_img_per_s"]
    if "int8_model_only_img_per_s" in figures and "openvino_model_only_img_per_s" in figures:
        ratios["int8/float32"] = figures["int8_model_only_img_per_s"] / figures["openvino_model_only_img_per_s"]
    return ratios


def run_model_benchmark(
    models: list[str],
    n_images: int = 32,
    batch_size: int = BATCH_SIZE,
    precision: str = "float32",
    repeats: int = 2,
    json_path: str | os.PathLike | None = None,
    print_fn=print,
    runtime: str = "auto",
) -> dict[str, dict[str, float]]:
    """Embedding speed of each backbone at its own input size, in one run: ``simrec bench --model NAME``.

    Untrained weights (the speed does not depend on the values); each backbone embeds the
    same generated 600 x 800 JPEGs, first as decoded batches (the compiled forward pass
    alone), then end to end (``embed_images``, colour signatures included). On OpenVINO, the
    same network's forward pass on Keras is measured too, for the ``openvino/keras`` column.

    Args:
        models: Backbone names (``["resnet50", "mobilenet-0.25"]``), or ``["all"]``.
        n_images: Generated JPEGs embedded per figure.
        batch_size: Images per model call.
        precision: Compute precision of every backbone.
        repeats: Rounds of each figure (the best is kept).
        json_path: Also write the figures to this JSON file.
        print_fn: Where lines go.
        runtime: What runs each network (``"auto"``, ``"keras"``, ``"openvino"``).

    Returns:
        ``{model: {"model_only_img_per_s", "pipeline_img_per_s", "dim", "image_size", "parameters",
        "runtime"}}``, and ``"keras_model_only_img_per_s"`` for a backbone on OpenVINO.

    Raises:
        InvalidArgumentError: A name of ``models`` names no backbone, or an unknown ``precision`` or ``runtime``.
        MissingDependencyError: ``runtime="openvino"`` without OpenVINO.
    """
    import gc

    import keras

    from simrec.core.backbones import BACKBONES
    from simrec.pipeline.backend import framework_version

    names = list(BACKBONES) if models == ["all"] else [_model_name(name) for name in models]
    print_fn(
        f"machine {cpu_name()}, {os.cpu_count()} CPUs, Keras {keras.__version__} on {framework_version()}; "
        f"untrained weights, {precision}, batch_size {batch_size}, {n_images} images, best of {repeats}"
    )
    print_fn("| model | dim | input | parameters | runtime | model only img/s | pipeline img/s | openvino/keras |")
    print_fn("| --- | --- | --- | --- | --- | --- | --- | --- |")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="simrec-bench-") as folder:
        paths = _make_photos(Path(folder), n_images)
        for name in names:
            results[name] = figures = _model_figures(name, paths, batch_size, precision, repeats, runtime)
            keras_only = figures.get("keras_model_only_img_per_s")
            versus = f"{figures['model_only_img_per_s'] / keras_only:.2f}" if keras_only else "-"
            print_fn(
                f"| `{name}` | {figures['dim']} | {figures['image_size']} | {figures['parameters']:,} | "
                f"{figures['runtime']} | {figures['model_only_img_per_s']:.1f} | {figures['pipeline_img_per_s']:.1f} | "
                f"{versus} |"
            )
            keras.backend.clear_session()
            gc.collect()
    if len(results) > 1:
        first = names[0]
        ratios = " ".join(
            f"{name}/{first}={results[name]['pipeline_img_per_s'] / results[first]['pipeline_img_per_s']:.2f}"
            for name in names[1:]
        )
        print_fn(f"ratio (pipeline img/s) {ratios}")
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
    return results


def _model_figures(
    name: str, paths: list[str], batch_size: int, precision: str, repeats: int, runtime: str = "auto"
) -> dict[str, Any]:
    """One backbone's forward-only and end-to-end images per second (best of ``repeats``)."""
    from simrec.core.backbones import backbone
    from simrec.core.hub_backbones import HUB_BACKBONES
    from simrec.core.records import extractor_info
    from simrec.pipeline.embedding import compiled_forward, embed_images, keras_forward
    from simrec.pipeline.images import load_image
    from simrec.pipeline.model import build_extractor

    spec = HUB_BACKBONES[name] if name in HUB_BACKBONES else backbone(name)
    extractor = build_extractor(weights=None, model=name, precision=precision, runtime=runtime)
    pixels = np.stack([load_image(p, spec.image_size) for p in paths])
    forward = compiled_forward(extractor)
    forward(pixels[:batch_size])  # compile and warm up
    n = len(paths)
    used = extractor_info(extractor).runtime
    figures: dict[str, Any] = {
        "dim": spec.dim,
        "image_size": spec.image_size,
        "parameters": spec.parameters,
        "runtime": used,
    }
    timed = {"model_only_img_per_s": forward}
    if used == "openvino":
        timed["keras_model_only_img_per_s"] = on_keras = keras_forward(extractor)
        on_keras(pixels[:batch_size])
    for _ in range(repeats):
        for figure, function in timed.items():
            rate = _rate(n, lambda f=function: [f(pixels[i : i + batch_size]) for i in range(0, n, batch_size)])
            figures[figure] = max(figures.get(figure, 0.0), rate)
        pipeline = _rate(n, lambda: embed_images(paths, extractor, batch_size=batch_size, verbose=False))
        figures["pipeline_img_per_s"] = max(figures.get("pipeline_img_per_s", 0.0), pipeline)
    return figures


def _model_name(name: str) -> str:
    """A backbone's name, a KerasHub one's included (an unknown one is refused with close names)."""
    from simrec.core.backbones import backbone
    from simrec.core.hub_backbones import HUB_BACKBONES

    return name if name in HUB_BACKBONES else backbone(name).name


def _runtime_text(extractor) -> str:
    """``"openvino (LATENCY, f32, 2 threads)"`` or ``"keras"``: the runtime of an extractor and its settings."""
    from simrec.core.records import extractor_info
    from simrec.pipeline.embedding import compiled_forward

    settings = getattr(compiled_forward(extractor), "openvino_settings", None)
    text = extractor_info(extractor).runtime
    if settings:
        text += f" ({settings['performance_hint']}, {settings['inference_precision']}, {settings['threads']} threads)"
    return text


def _runtime_forwards(extractor, pixels: np.ndarray, device: str, print_fn) -> dict[str, Any]:
    """The forward passes the runtime ratios compare, where they can run: ``{"keras", "openvino", "int8"}``.

    Keras's own is the extractor's network run by its backend; OpenVINO's are compiled from the same
    network (float32, and int8 quantised on ``pixels``), on a CPU with OpenVINO installed.
    """
    import importlib.util

    from simrec.pipeline.backend import backend_name
    from simrec.pipeline.embedding import compiled_forward, keras_forward
    from simrec.pipeline.runtime import openvino_forward, openvino_installed

    forwards = {"keras": keras_forward(extractor)}
    if device != "CPU" or backend_name() != "tensorflow" or not openvino_installed():
        print_fn("runtime ratios: OpenVINO runs on a CPU with TensorFlow and OpenVINO installed; not measured here")
        return forwards
    own = compiled_forward(extractor)
    forwards["openvino"] = own if getattr(own, "openvino_settings", None) else openvino_forward(extractor)
    if importlib.util.find_spec("nncf") is not None:
        forwards["int8"] = openvino_forward(extractor, "int8", calibration=pixels)
    else:
        print_fn("int8/float32: needs NNCF (pip install 'simrec[int8]'); not measured")
    return forwards


def _drain(batches) -> None:
    for _ in batches:
        pass


def _rate(count: int, work) -> float:
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)


def _make_photos(folder: Path, count: int) -> list[str]:
    """Product-like JPEGs at a realistic 600 x 800 size."""
    from PIL import Image

    from simrec.app.synthetic import COLOURS, SHAPES, draw_product

    rng = np.random.default_rng(0)
    colours, shapes = list(COLOURS.values()), list(SHAPES)
    paths = []
    for i in range(count):
        square = draw_product(shapes[i % len(shapes)], colours[i % len(colours)], rng, image_size=800)
        photo = Image.new("RGB", (600, 800))
        photo.paste(square.crop((100, 0, 700, 800)))
        path = folder / f"photo_{i:05d}.jpg"
        photo.save(path, quality=90)
        paths.append(str(path))
    return paths


def cpu_name() -> str:
    """The CPU's model name and vector instructions, for the line every benchmark prints beside its figures.

    The model name alone does not tell two CPUs apart ("AMD EPYC" covers chips with AVX2 only and
    chips with AVX-512), so the family and model numbers and the vector and matrix instructions
    that decide a network's speed follow it: ``AMD EPYC (family 25 model 17: AVX2, AVX-512, VNNI, BF16)``.
    """
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip() and fields:
                break  # the first processor is enough
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    known = (
        ("avx2", "AVX2"),
        ("avx512f", "AVX-512"),
        ("avx512_vnni", "VNNI"),
        ("avx_vnni", "AVX-VNNI"),
        ("avx512_bf16", "BF16"),
        ("amx_tile", "AMX"),
    )
    isa = [label for flag, label in known if flag in flags]
    where = (
        f"family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields and "model" in fields else ""
    )
    details = ": ".join(part for part in (where, ", ".join(isa)) if part)
    return f"{name} ({details})" if details else name


def _search_figures(n_items: int, dim: int = 2048, n_queries: int = 20) -> dict[str, float]:
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import normalize

    from simrec.search.exact import CosineNeighbors

    rng = np.random.default_rng(0)
    data = rng.normal(size=(n_items, dim)).astype(np.float32)
    queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
    ours = CosineNeighbors(n_neighbors=5).fit(data)
    reference = NearestNeighbors(n_neighbors=5, metric="cosine", algorithm="brute").fit(data)
    normalized = NearestNeighbors(n_neighbors=5, metric="euclidean", algorithm="brute").fit(normalize(data))

    def per_query_ms(search) -> float:
        search(queries[:1])
        times = []
        for q in queries:
            start = time.perf_counter()
            search(q[None])
            times.append(time.perf_counter() - start)
        return float(np.median(times)) * 1000  # the median resists a busy neighbor

    figures = {
        "knn_query_ms_simrec": per_query_ms(lambda q: ours.kneighbors(q)),
        "knn_query_ms_sklearn": per_query_ms(lambda q: reference.kneighbors(q)),
        "knn_query_ms_sklearn_normalized": per_query_ms(lambda q: normalized.kneighbors(normalize(q))),
    }
    start = time.perf_counter()
    _, ours_all = ours.kneighbors()
    figures["knn_all_items_s_simrec"] = time.perf_counter() - start
    start = time.perf_counter()
    _, reference_all = reference.kneighbors()
    figures["knn_all_items_s_sklearn"] = time.perf_counter() - start
    start = time.perf_counter()
    _, normalized_all = normalized.kneighbors()
    figures["knn_all_items_s_sklearn_normalized"] = time.perf_counter() - start
    single = ours.kneighbors(queries)[1]
    same_single = np.array_equal(single, reference.kneighbors(queries)[1]) and np.array_equal(
        single, normalized.kneighbors(normalize(queries))[1]
    )
    same_all = min((ours_all == reference_all).mean(), (ours_all == normalized_all).mean()) > 0.999
    figures["knn_identical_neighbors"] = float(same_single and same_all)
    return figures


def _memory_figures(n_items: int, dim: int = 16) -> dict[str, float]:
    from simrec.search.exact import CosineNeighbors

    data = np.random.default_rng(1).normal(size=(n_items, dim)).astype(np.float32)
    index = CosineNeighbors(n_neighbors=5).fit(data)
    tracemalloc.start()
    index.kneighbors()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"all_items_peak_mb": peak / 1024**2, "all_items_peak_items": float(n_items)}


ANN_SETTINGS = (
    ("hnsw", {}, [{}]),
    ("ivf-flat", {}, [{}]),
    ("ivf-pq", {}, [{"rerank": 0}, {}]),
)
"""What ``simrec bench --ann`` measures: ``(ann type, build parameters, [search parameters, ...])``;
each ann type with simrec's defaults, ivf-pq with and without exact re-ranking."""


def run_ann_benchmark(
    n_items: int = 200_000,
    dim: int = 2048,
    *,
    index_dir: str | os.PathLike | None = None,
    n_queries: int = 200,
    settings: tuple = ANN_SETTINGS,
    json_path: str | os.PathLike | None = None,
    print_fn=print,
) -> dict[str, float]:
    """Approximate against exact search: build time, bytes per vector, latency, recall@10.

    Args:
        n_items: Clustered vectors to index (see :func:`clustered_vectors`).
        dim: Their dimension.
        index_dir: Also measure on the real embeddings of this index folder.
        n_queries: Queries per measurement (held out of the clustered data; for an
            index, catalog items left out of their own results).
        settings: ``(ann type, params)`` pairs to measure.
        json_path: Also write the figures to this JSON file.
        print_fn: Where lines go.

    Returns:
        The figures by name; ``ann_recall_at_10`` and ``ann_speedup`` are those of the
        fastest setting with recall@10 >= 0.95 (else the most accurate one).

    Raises:
        MissingDependencyError: faiss is not installed.
        MissingFileError: ``index_dir`` does not exist, or holds no ``meta.json``.
        IndexIntegrityError: ``index_dir`` is not a complete index.
    """
    from simrec.search.approximate import import_faiss

    faiss = import_faiss()
    print_fn(
        f"machine {cpu_name()}, {os.cpu_count()} CPUs, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads"
    )
    data, queries = clustered_vectors(n_items + n_queries, dim)
    data, queries = data[:n_items], data[n_items:]
    figures = _ann_figures(f"clustered {n_items}x{dim}", data, queries, settings, print_fn, exclude_self=False)
    del data
    if index_dir is not None:
        from simrec.storage.index_folder import load_index

        embedded = load_index(index_dir, mmap=True)
        rows = np.random.default_rng(2).choice(len(embedded), size=min(n_queries, len(embedded)), replace=False)
        real = _ann_figures(
            f"index {index_dir} {len(embedded)}x{embedded.meta.dim}",
            embedded.embeddings,
            rows,
            settings,
            print_fn,
            exclude_self=True,
            inverse_norms=embedded.inverse_norms,
        )
        figures.update({f"index {key}": value for key, value in real.items()})
    print_fn(
        f"ratio ann_recall_at_10={figures['ann_recall_at_10']:.3f} ann_speedup={figures['ann_speedup']:.1f} "
        f"({figures['ann_best']})"
    )
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return figures


def clustered_vectors(n: int, dim: int = 2048, *, seed: int = 0, latent: int = 64) -> tuple[np.ndarray, None]:
    """``(n, dim)`` float32 vectors drawn like image embeddings: clusters on a low-dimensional subspace.

    Product photos come in groups (one product type, colour, style), and CNN features
    have a low intrinsic dimension: each vector is a cluster centre plus spread in a
    ``latent``-d space, mapped linearly into ``dim`` dimensions, plus a little noise in
    every dimension. Pure noise would be the worst case for every approximate method,
    and nothing like a catalog.
    """
    rng = np.random.default_rng(seed)
    n_clusters = max(2, n // 200)
    centres = rng.normal(size=(n_clusters, latent)).astype(np.float32)
    mixing = (rng.normal(size=(latent, dim)) / np.sqrt(latent)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 16_384):
        size = min(16_384, n - start)
        z = centres[rng.integers(0, n_clusters, size)] + 0.5 * rng.normal(size=(size, latent)).astype(np.float32)
        out[start : start + size] = z @ mixing + 0.1 * rng.normal(size=(size, dim)).astype(np.float32)
    return out, None


def _ann_figures(
    name: str,
    data: np.ndarray,
    queries: np.ndarray,
    settings: tuple,
    print_fn,
    *,
    exclude_self: bool,
    inverse_norms: np.ndarray | None = None,
) -> dict[str, float]:
    """Figures for one data set; ``queries`` are vectors, or row numbers when ``exclude_self``."""
    from simrec.search.approximate import ApproximateNeighbors, build_ann
    from simrec.search.exact import CosineNeighbors

    k = 10
    exact = CosineNeighbors().fit(data, inverse_norms=inverse_norms)
    vectors = np.asarray(data[queries], dtype=np.float32) if exclude_self else queries
    extra = 1 if exclude_self else 0

    def top(search, q: int, found: np.ndarray) -> np.ndarray:
        row = found[found != queries[q]] if exclude_self else found
        return row[:k]

    def latency_and_results(search) -> tuple[float, list[np.ndarray]]:
        search(vectors[:1])
        times, results = [], []
        for q, vector in enumerate(vectors):
            started = time.perf_counter()
            _, found = search(vector[None])
            times.append(time.perf_counter() - started)
            results.append(top(search, q, found[0]))
        return float(np.median(times)) * 1000, results

    exact_ms, truth = latency_and_results(lambda v: exact.kneighbors(v, n_neighbors=k + extra))
    print_fn(f"{name}: exact query_ms {exact_ms:.2f}, {data.shape[1] * 4 + 4} bytes/vector")
    figures: dict[str, Any] = {"exact_query_ms": exact_ms}
    best = None
    for ann_type, params, variants in settings:
        started = time.perf_counter()
        index, info = build_ann(data, inverse_norms, ann_type=ann_type, **params)
        build_s = time.perf_counter() - started
        for at_search in variants:
            search = ApproximateNeighbors(index, info, embeddings=data, inverse_norms=exact._inv_norms, **at_search)
            ms, found = latency_and_results(lambda v, s=search: s.kneighbors(v, n_neighbors=k + extra))
            recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)]))
            label = ann_type + (f" rerank={search.rerank}" if ann_type == "ivf-pq" else "")
            settings_text = ", ".join(f"{p}={v}" for p, v in info["params"].items() if p != "rerank")
            print_fn(
                f"{name}: {label} ({settings_text}): build_s {build_s:.1f}, "
                f"bytes/vector {info['bytes_per_vector']:.0f}, query_ms {ms:.3f}, recall@10 {recall:.3f}, "
                f"speedup {exact_ms / ms:.1f}"
            )
            figures[label] = {
                "build_s": build_s,
                "bytes_per_vector": info["bytes_per_vector"],
                "query_ms": ms,
                "recall_at_10": recall,
                "speedup": exact_ms / ms,
                "params": info["params"],
            }
            candidate = (recall >= 0.95, exact_ms / ms if recall >= 0.95 else recall)
            if best is None or candidate > best[0]:
                best = (candidate, label, recall, exact_ms / ms)
        del index, search
    figures.update(ann_best=best[1], ann_recall_at_10=best[2], ann_speedup=best[3])
    return figures


def run_ray_benchmark(
    n_images: int = 96,
    batch_size: int = BATCH_SIZE,
    *,
    workers: int | None = None,
    print_fn=print,
    runtime: str = "auto",
) -> dict[str, float]:
    """Images per second of the Ray engine on a local Ray against the local engine, same photos.

    The Ray figure is the whole call, start of the local Ray and of its actors (each
    builds its extractor) included, as ``simrec index --engine ray`` would see it. The actors
    use the runtime of the extractor built here (``runtime``).

    Raises:
        MissingDependencyError: Ray is not installed (or OpenVINO, with ``runtime="openvino"``).
    """
    from simrec.pipeline.embedding import embed_images
    from simrec.pipeline.model import build_extractor
    from simrec.pipeline.ray_engine import embed_images_ray, import_ray

    ray = import_ray()
    with tempfile.TemporaryDirectory(prefix="simrec-bench-") as folder:
        paths = _make_photos(Path(folder), n_images)
        extractor = build_extractor(weights=None, precision="float32", runtime=runtime)
        print_fn(f"runtime {_runtime_text(extractor)}")
        embed_images(paths[:batch_size], extractor, batch_size=batch_size, verbose=False)  # warm up
        local = _rate(n_images, lambda: embed_images(paths, extractor, batch_size=batch_size, verbose=False))
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        timings: dict[str, float] = {}
        try:
            remote = _rate(
                n_images,
                lambda: embed_images_ray(
                    paths, extractor, batch_size=batch_size, verbose=False, workers=workers, timings=timings
                ),
            )
        finally:
            ray.shutdown()
    steady = timings.get("steady_img_per_s", float("nan"))
    figures = {
        "local_img_per_s": local,
        "ray_local_img_per_s": remote,
        "ray_startup_s": timings.get("startup_s", float("nan")),
        "ray_steady_img_per_s": steady,
        "ratio ray/local": remote / local,
        "ratio ray_steady/local": steady / local,
    }
    print_fn(f"local_img_per_s {local:.2f}")
    print_fn(f"ray_local_img_per_s {remote:.2f} (a local Ray, {workers or 1} actor(s), start-up included)")
    print_fn(f"ray_startup_s {figures['ray_startup_s']:.1f} (until the first batch: actors building the extractor)")
    print_fn(f"ray_steady_img_per_s {steady:.2f} (after the first batch)")
    print_fn(f"ratio ray/local={remote / local:.2f} ray_steady/local={steady / local:.2f}")
    return figures
