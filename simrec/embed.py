"""Embed many photos in batches, decoding the next batch while the model runs.

Decoding and resizing happen in a small thread pool (Pillow releases the GIL while it
decodes), a bounded number of batches ahead of the model, so memory stays flat however
large the catalog. The model runs as one compiled TensorFlow function on whole batches,
never one ``model.predict`` call per image. A file that cannot be read is recorded with
its reason and the run goes on.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from simrec.catalog import printable_path
from simrec.colour import N_BINS, colour_signature
from simrec.defaults import BATCH_SIZE
from simrec.errors import ImageDecodeError, InvalidArgumentError
from simrec.images import load_image

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

FAILURE_COLUMNS = ["path", "reason", "stage"]


@dataclass
class EmbeddingResult:
    """Output of :func:`embed_images`, aligned with the input paths.

    Attributes:
        embeddings: ``(n_paths, dim)`` float32; rows of files that failed are NaN.
        ok: ``(n_paths,)`` bool, True where the file was embedded (decoded, and the
            model's output is finite).
        failures: DataFrame with ``path``, ``reason``, ``stage`` for each failed file.
        seconds: Wall time of the run.
        colours: ``(n_paths, N_BINS)`` float32 colour signatures (see
            :mod:`simrec.colour`), NaN where ``ok`` is False; None when not asked for.
    """

    embeddings: np.ndarray
    ok: np.ndarray
    failures: pd.DataFrame
    seconds: float
    colours: np.ndarray | None = None

    @property
    def images_per_second(self) -> float:
        return float(self.ok.sum()) / self.seconds if self.seconds > 0 else float("nan")


def embed_images(
    paths: Sequence[str | os.PathLike],
    extractor: keras.Model,
    batch_size: int = BATCH_SIZE,
    verbose: bool = True,
    *,
    n_workers: int | None = None,
    out: np.ndarray | None = None,
    colours: bool = True,
) -> EmbeddingResult:
    """Embed image files with the extractor, in batches, with a progress bar.

    Args:
        paths: Image files, in the order wanted for the output rows.
        extractor: Model from :func:`simrec.build_extractor` (any Keras model taking
            square RGB batches works).
        batch_size: Images per model call.
        verbose: Show a tqdm progress bar.
        n_workers: Decoding threads (default: number of CPUs, at most 8).
        out: Optional preallocated ``(n_paths, dim)`` float32 array (e.g. a
            ``np.memmap``) to write into instead of allocating one.
        colours: Also compute each photo's colour signature from the same decoded
            pixels (in the decoding threads, while the model runs), into ``colours``.

    Returns:
        An :class:`EmbeddingResult`; one bad file never stops the run.

    Example:
        >>> result = embed_images(catalog.path, build_extractor())  # doctest: +SKIP
        >>> result.embeddings.shape, len(result.failures)
        ((150, 2048), 0)
    """
    from tqdm.auto import tqdm

    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"Expected batch_size to be a positive int, got {batch_size!r}")
    paths = [os.fspath(p) for p in paths]
    image_size = int(extractor.input_shape[1])
    dim = int(extractor.output_shape[-1])
    n = len(paths)
    if out is None:
        embeddings = np.full((n, dim), np.nan, dtype=np.float32)
    else:
        if out.shape != (n, dim) or out.dtype != np.float32:
            raise InvalidArgumentError(f"Expected out to be a ({n}, {dim}) float32 array, got {out.shape} {out.dtype}")
        embeddings = out
        embeddings[:] = np.nan
    ok = np.zeros(n, dtype=bool)
    signatures = np.full((n, N_BINS), np.nan, dtype=np.float32) if colours else None
    failures: list[tuple[str, str, str]] = []
    forward = compiled_forward(extractor)
    workers = n_workers or min(8, os.cpu_count() or 1)

    start = time.perf_counter()
    with tqdm(total=n, unit="img", desc="embedding", disable=not verbose) as bar:
        batches = _decoded_batches(paths, image_size, batch_size, workers, signature=colours)
        for indices, pixels, batch_signatures, batch_failures in batches:
            failures.extend(batch_failures)
            if signatures is not None and len(indices):
                signatures[indices] = batch_signatures
            if len(indices):
                vectors = forward(pixels)
                finite = np.isfinite(vectors).all(axis=1)
                embeddings[indices] = vectors
                ok[indices[finite]] = True
                failures.extend(
                    (printable_path(paths[i]), "the model's output is not finite (NaN or infinite)", "embed")
                    for i in indices[~finite]
                )
            bar.update(len(indices) + len(batch_failures))
    seconds = time.perf_counter() - start
    for path, reason, _ in failures:
        logger.warning("skipped %s: %s", path, reason)
    failure_frame = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    if signatures is not None:
        signatures[~ok] = np.nan
    return EmbeddingResult(embeddings, ok, failure_frame, seconds, signatures)


def compiled_forward(extractor: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """The extractor as one compiled function: uint8 ``(b, S, S, 3)`` -> float32 ``(b, dim)``.

    Traced once per extractor (any batch size) and kept on the extractor itself, so it is
    freed with it.
    """
    cached = getattr(extractor, "_simrec_forward", None)
    if cached is not None:
        return cached
    import tensorflow as tf

    size = int(extractor.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8)])
    def _graph(pixels):
        return extractor(tf.cast(pixels, tf.float32), training=False)

    def forward(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(_graph(pixels), dtype=np.float32)

    extractor._simrec_forward = forward
    return forward


def embed_arrays(pixels: np.ndarray, extractor: keras.Model, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Embed already-decoded square RGB images.

    Args:
        pixels: ``(n, S, S, 3)`` uint8 array, ``S`` the extractor's image size.
        extractor: Model from :func:`simrec.build_extractor`.
        batch_size: Images per model call.

    Returns:
        ``(n, dim)`` float32 embeddings.
    """
    forward = compiled_forward(extractor)
    pixels = np.asarray(pixels, dtype=np.uint8)
    parts = [forward(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    dim = int(extractor.output_shape[-1])
    return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)


def _decode(
    path: str, image_size: int, signature: bool = False
) -> tuple[np.ndarray, np.ndarray | None] | ImageDecodeError:
    try:
        pixels = load_image(path, image_size)
    except ImageDecodeError as error:
        return error
    except MemoryError:
        return ImageDecodeError(path, "not enough memory to decode")
    # The colour signature comes from the same decoded pixels, here in the decoding thread.
    return pixels, (colour_signature(pixels) if signature else None)


def compute_colours(
    paths: Sequence[str | os.PathLike],
    image_size: int,
    *,
    batch_size: int = BATCH_SIZE,
    n_workers: int | None = None,
    verbose: bool = True,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Colour signatures of photos without the model, decoded exactly as :func:`embed_images` does.

    Used to add signatures to an index made before simrec stored them.

    Returns:
        ``(colours, failures)``: ``(n_paths, N_BINS)`` float32 (NaN rows for files that
        could not be read) and a ``path``, ``reason``, ``stage`` DataFrame.
    """
    from tqdm.auto import tqdm

    paths = [os.fspath(p) for p in paths]
    signatures = np.full((len(paths), N_BINS), np.nan, dtype=np.float32)
    failures: list[tuple[str, str, str]] = []
    workers = n_workers or min(8, os.cpu_count() or 1)
    with tqdm(total=len(paths), unit="img", desc="colours", disable=not verbose) as bar:
        for indices, _, batch_signatures, batch_failures in _decoded_batches(
            paths, image_size, batch_size, workers, signature=True
        ):
            signatures[indices] = batch_signatures
            failures.extend(batch_failures)
            bar.update(len(indices) + len(batch_failures))
    return signatures, pd.DataFrame(failures, columns=FAILURE_COLUMNS)


def _decoded_batches(
    paths: list[str], image_size: int, batch_size: int, workers: int, prefetch: int = 2, *, signature: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str, str]]]]:
    """Yield ``(row indices, pixels, colour signatures, failures)`` per batch, decoding ahead in threads.

    The signatures are ``(len(indices), N_BINS)``; empty (0 columns) unless ``signature``.
    """
    starts = range(0, len(paths), batch_size)
    pending: deque[tuple[int, list[Future]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simrec-decode") as pool:
        try:
            submitted = iter(starts)

            def submit_next() -> None:
                begin = next(submitted, None)
                if begin is not None:
                    chunk = paths[begin : begin + batch_size]
                    pending.append((begin, [pool.submit(_decode, p, image_size, signature) for p in chunk]))

            for _ in range(prefetch + 1):
                submit_next()
            while pending:
                begin, futures = pending.popleft()
                submit_next()
                indices, arrays, signatures, failures = [], [], [], []
                for offset, future in enumerate(futures):
                    value = future.result()
                    if isinstance(value, ImageDecodeError):
                        failures.append((printable_path(value.path), value.reason, "decode"))
                    else:
                        indices.append(begin + offset)
                        arrays.append(value[0])
                        if signature:
                            signatures.append(value[1])
                pixels = np.stack(arrays) if arrays else np.zeros((0, image_size, image_size, 3), np.uint8)
                colours = np.stack(signatures) if signatures else np.zeros((len(indices), N_BINS if signature else 0))
                yield np.asarray(indices, dtype=np.int64), pixels, colours.astype(np.float32), failures
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
