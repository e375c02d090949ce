"""Embed photos on a Ray cluster with Ray Data: what ``simrec index --engine ray`` does.

The file list becomes a dataset (``ray.data.from_items``); ``map_batches`` runs
:class:`_EmbedActor`, a callable class that builds the extractor once per worker (on a
GPU when ``gpus_per_worker`` asks for one) and decodes and embeds one bounded batch per
call; the results stream back to this process (``iter_batches``), which writes each
batch's rows into one array and records each failed file exactly as
:func:`simrec.embed_images` does, with the same reasons and in the same order. The index
is then committed by :func:`simrec.build_index` as for the local engine, and incremental
re-indexing sends only new or changed files to the cluster.

The workers read the photos by path: on a cluster of several machines the catalog (or
the index folder a zip is extracted into) must be on a file system every node sees at
the same path. Ray (``pip install 'simrec[ray]'``) is imported only inside functions.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simrec.core.backbones import BACKBONES
from simrec.core.colour_signature import N_BINS
from simrec.core.defaults import BATCH_SIZE
from simrec.core.errors import MissingDependencyError
from simrec.core.index_meta import IndexMeta
from simrec.core.records import FAILURE_COLUMNS
from simrec.core.validation import check_int, check_number_in
from simrec.pipeline.embedding import EmbeddingResult, check_batch_size, not_finite_failure, output_array

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)


def import_ray():
    """The ``ray`` module with Ray Data, or a one-line error saying how to install it.

    Raises:
        MissingDependencyError: Ray Data is not installed; the message says how to install it.
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "the ray engine needs Ray Data: pip install 'simrec[ray]' (or pip install 'ray[data]')"
        ) from None
    return ray


def embed_images_ray(
    paths: Sequence[str | os.PathLike],
    extractor: keras.Model,
    batch_size: int = BATCH_SIZE,
    verbose: bool = True,
    *,
    out: np.ndarray | None = None,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    timings: dict[str, float] | None = None,
) -> EmbeddingResult:
    """Embed image files on Ray; same arguments and result as :func:`simrec.embed_images`.

    Args:
        paths: Image files, in the order wanted for the output rows; every Ray node
            must be able to read them at these paths.
        extractor: Model from :func:`simrec.build_extractor`; its weights are shipped
            to the workers, which build the same network once each.
        batch_size: Images per model call (and per Ray Data batch).
        verbose: Show a tqdm progress bar.
        out: Optional preallocated ``(n_paths, dim)`` float32 array to write into.
        address: Ray cluster (``"auto"``, ``"ray://host:port"``); default: the Ray
            already initialised in this process, else a new local one.
        workers: Embedding actors (default 1; on a cluster, one per node or per GPU).
        gpus_per_worker: GPUs per actor (default 0: CPU only).
        timings: If given, filled with ``startup_s`` (until the first batch came back:
            Ray start, actors building their extractors) and ``steady_img_per_s`` (after).

    Returns:
        An :class:`~simrec.pipeline.embedding.EmbeddingResult`; one bad file never stops the run.

    Raises:
        MissingDependencyError: Ray is not installed.
        InvalidArgumentError: Bad ``batch_size``, ``workers`` or ``gpus_per_worker``, or ``out`` of another shape or
            dtype.
        TypeError: ``extractor`` was not made by :func:`simrec.build_extractor`.
    """
    from tqdm.auto import tqdm

    from simrec.core.records import extractor_info, printable_path

    ray = import_ray()
    batch_size = check_batch_size(batch_size)
    if workers is not None:
        workers = check_int(workers, "workers", 1)
    gpus = check_number_in(gpus_per_worker or 0, "gpus_per_worker", 0, math.inf)
    paths = [os.fspath(p) for p in paths]
    n = len(paths)
    info = extractor_info(extractor)
    dim = int(extractor.output_shape[-1])
    embeddings = output_array(n, dim, out)
    ok = np.zeros(n, dtype=bool)
    colours = np.full((n, N_BINS), np.nan, dtype=np.float32)
    failures: list[tuple[tuple[int, int, int], str, str, str]] = []  # (sort key, path, reason, stage)
    start = time.perf_counter()
    if n == 0:
        return EmbeddingResult(embeddings, ok, pd.DataFrame(columns=FAILURE_COLUMNS), 0.0, colours)

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    elif address is not None:
        logger.info("Ray is already initialised in this process; the address %s is not used", address)
    try:
        weights = ray.put(extractor.get_weights())
        spec = {
            "model": info.model,
            "image_size": info.image_size,
            "precision": info.precision,
            "runtime": info.runtime,
            "weights": weights,
            "calibration": getattr(extractor, "_simrec_calibration", None),
        }
        if info.model not in BACKBONES:  # KerasHub backbones and model files: rebuilt from the preset or file
            spec["info"] = info
        ray.data.DataContext.get_current().enable_progress_bars = False  # the tqdm bar below is the progress
        dataset = ray.data.from_items([{"row": i, "path": p} for i, p in enumerate(paths)])
        embedded = dataset.map_batches(
            _EmbedActor,
            fn_constructor_kwargs={"spec": spec},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(workers or 1, -(-n // batch_size))),
            num_gpus=gpus or None,
        )
        first, after_first = None, 0
        with tqdm(total=n, unit="img", desc="embedding (ray)", disable=not verbose) as bar:
            for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
                if first is None:
                    first = time.perf_counter()
                else:
                    after_first += len(batch["row"])
                rows = batch["row"].astype(np.int64)
                good = batch["reason"] == ""
                embeddings[rows[good]] = batch["embedding"][good]
                colours[rows[good]] = batch["colour"][good]
                finite = np.isfinite(embeddings[rows[good]]).all(axis=1)
                ok[rows[good][finite]] = True
                for row in rows[good][~finite]:
                    failures.append(((row // batch_size, 1, row), *not_finite_failure(paths[row])))
                for row, reason in zip(rows[~good], batch["reason"][~good]):
                    failures.append(((row // batch_size, 0, row), printable_path(paths[row]), str(reason), "decode"))
                bar.update(len(rows))
    finally:
        if started_here:
            ray.shutdown()
    seconds = time.perf_counter() - start
    if timings is not None and first is not None:
        steady = time.perf_counter() - first
        timings.update(startup_s=first - start, steady_img_per_s=after_first / steady if steady > 0 else float("nan"))
    failures.sort(key=lambda failure: failure[0])  # the local engine's order: by batch, decode failures first
    for _, path, reason, _ in failures:
        logger.warning("skipped %s: %s", path, reason)
    frame = pd.DataFrame([failure[1:] for failure in failures], columns=FAILURE_COLUMNS)
    return EmbeddingResult(embeddings, ok, frame, seconds, colours)


class _EmbedActor:
    """One Ray actor: builds the extractor once, then decodes and embeds a batch per call."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import dataclasses

        import ray

        from simrec.pipeline.embedding import compiled_forward
        from simrec.pipeline.model import build_extractor, extractor_for
        from simrec.pipeline.runtime import use_openvino

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        weights = spec["weights"]
        if isinstance(weights, ray.ObjectRef):
            weights = ray.get(weights)
        precision, runtime = spec["precision"], spec.get("runtime", "keras")
        # The runtime the driver's extractor uses, on the driver's weights: OpenVINO converts the network
        # only once the weights are in (an int8 network is quantised on the driver's calibration photos).
        on_keras = "float32" if runtime == "openvino" else precision
        if "info" in spec:  # KerasHub backbones and model files: rebuilt from the preset or file
            extractor = extractor_for(IndexMeta.from_extractor(spec["info"]), runtime="keras")
        else:
            extractor = build_extractor(
                None, spec["image_size"], model=spec["model"], precision=on_keras, runtime="keras"
            )
        extractor.set_weights(weights)
        if runtime == "openvino":
            extractor.simrec_info = dataclasses.replace(extractor.simrec_info, precision=precision)
            use_openvino(extractor, calibration=spec.get("calibration"), strict=precision == "int8")
        self.image_size = int(spec["image_size"])
        self.dim = int(extractor.output_shape[-1])
        self.forward = compiled_forward(extractor)
        self.extractor = extractor
        self.pool = None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from concurrent.futures import ThreadPoolExecutor

        from simrec.core.colour_signature import N_BINS
        from simrec.core.errors import ImageDecodeError
        from simrec.pipeline.decode import _decode

        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
        paths = [str(p) for p in batch["path"]]
        # The colour signature comes from the same decoded pixels, as in the local engine.
        decoded = list(self.pool.map(lambda p: _decode(p, self.image_size, True), paths))
        reasons = np.array([d.reason if isinstance(d, ImageDecodeError) else "" for d in decoded], dtype=object)
        vectors = np.full((len(paths), self.dim), np.nan, dtype=np.float32)
        colours = np.full((len(paths), N_BINS), np.nan, dtype=np.float32)
        good = np.flatnonzero(reasons == "")
        if len(good):
            vectors[good] = self.forward(np.stack([decoded[i][0] for i in good]))
            colours[good] = np.stack([decoded[i][1] for i in good])
        rows = np.asarray(batch["row"], dtype=np.int64)
        return {"row": rows, "embedding": vectors, "colour": colours, "reason": reasons.astype(str)}
