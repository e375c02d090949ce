"""Embed many photos in batches, decoding the next batch while the model runs.

Decoding and resizing happen in threads or processes (:mod:`simrec.pipeline.decode`), a bounded
number of batches ahead of the model, so memory stays flat however large the catalog.
The model runs as one compiled function on whole batches (on any Keras backend), never
one ``model.predict`` call per image. A file that cannot be read, or whose vector comes
out NaN or infinite, is recorded with its reason and the run goes on.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from simrec.core.colour_signature import N_BINS
from simrec.core.crashpoints import crash_point
from simrec.core.defaults import BATCH_SIZE
from simrec.core.errors import InvalidArgumentError
from simrec.core.records import FAILURE_COLUMNS, printable_path
from simrec.core.validation import check_int
from simrec.pipeline.decode import decoded_batches

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

NOT_FINITE = "the model's output is not finite (NaN or infinite)"
"""The reason recorded for a photo whose vector is NaN or infinite."""


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
            :mod:`simrec.core.colour_signature`), NaN where ``ok`` is False; None when not asked for.
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
    decoder: str = "auto",
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
        n_workers: Decoding workers (default: every core for processes, at most 8 threads).
        decoder: ``"auto"``, ``"threads"`` or ``"processes"`` (see :mod:`simrec.pipeline.decode`);
            all give the same embeddings and failures.
        out: Optional preallocated ``(n_paths, dim)`` float32 array (e.g. a
            ``np.memmap``) to write into instead of allocating one.
        colours: Also compute each photo's colour signature from the same decoded
            pixels (in the decoding threads, while the model runs), into ``colours``.

    Returns:
        An :class:`EmbeddingResult`; one bad file never stops the run.

    Raises:
        InvalidArgumentError: ``batch_size`` is not a positive int, ``decoder`` is unknown, ``n_workers`` is below 1, or
            ``out`` has another shape or dtype.

    Example:
        >>> result = embed_images(catalog.path, build_extractor())  # doctest: +SKIP
        >>> result.embeddings.shape, len(result.failures)  # doctest: +SKIP
        ((150, 2048), 0)
    """
    from tqdm.auto import tqdm

    batch_size = check_batch_size(batch_size)
    paths = [os.fspath(p) for p in paths]
    image_size = int(extractor.input_shape[1])
    dim = int(extractor.output_shape[-1])
    n = len(paths)
    embeddings = output_array(n, dim, out)
    ok = np.zeros(n, dtype=bool)
    all_colours = np.full((n, N_BINS), np.nan, dtype=np.float32) if colours else None
    failures: list[tuple[str, str, str]] = []
    forward = compiled_forward(extractor)
    batches = decoded_batches(paths, image_size, batch_size, decoder=decoder, n_workers=n_workers, colours=colours)

    start = time.perf_counter()
    with tqdm(total=n, unit="img", desc="embedding", disable=not verbose) as bar:
        for indices, pixels, batch_colours, batch_failures in batches:
            failures.extend(batch_failures)
            if all_colours is not None and len(indices):
                all_colours[indices] = batch_colours
            if len(indices):
                vectors = forward(pixels)
                finite = np.isfinite(vectors).all(axis=1)
                embeddings[indices] = vectors
                ok[indices[finite]] = True
                failures.extend(not_finite_failure(paths[i]) for i in indices[~finite])
            bar.update(len(indices) + len(batch_failures))
            crash_point("batch")
    seconds = time.perf_counter() - start
    for path, reason, _ in failures:
        logger.warning("skipped %s: %s", path, reason)
    failure_frame = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    if all_colours is not None:
        all_colours[~ok] = np.nan
    return EmbeddingResult(embeddings, ok, failure_frame, seconds, all_colours)


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` (images per model call) as an int of at least 1: the rule of every engine.

    Raises:
        InvalidArgumentError: Not an int (``True`` included), or below 1.
    """
    return check_int(batch_size, "batch_size", 1)


def not_finite_failure(path: str) -> tuple[str, str, str]:
    """The failure row ``(path, reason, stage)`` of a photo whose vector came out NaN or infinite, for every engine.

    Example:
        >>> not_finite_failure("shop/red.jpg")
        ('shop/red.jpg', "the model's output is not finite (NaN or infinite)", 'embed')
    """
    return printable_path(path), NOT_FINITE, "embed"


def output_array(n: int, dim: int, out: np.ndarray | None = None) -> np.ndarray:
    """The ``(n, dim)`` float32 array embeddings are written into, NaN until filled.

    Args:
        out: A caller's preallocated array (e.g. a ``np.memmap``) to use instead.

    Raises:
        InvalidArgumentError: ``out`` has another shape or dtype.
    """
    if out is None:
        return np.full((n, dim), np.nan, dtype=np.float32)
    if out.shape != (n, dim) or out.dtype != np.float32:
        raise InvalidArgumentError(f"Expected out to be a ({n}, {dim}) float32 array, got {out.shape} {out.dtype}")
    out[:] = np.nan
    return out


def compiled_forward(extractor: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """The extractor as one compiled function: uint8 ``(b, S, S, 3)`` -> float32 ``(b, dim)``.

    Pixels travel to the device as uint8 and are cast there. On TensorFlow the forward pass
    is a ``tf.function`` traced once for any batch size; on JAX a ``jax.jit`` of the
    model's stateless call; on PyTorch an eager call under ``torch.inference_mode``. The
    function is kept on the extractor itself, so it is freed with it. An extractor that runs on
    OpenVINO (:mod:`simrec.pipeline.runtime`) has OpenVINO's compiled function there instead.
    """
    cached = getattr(extractor, "_simrec_forward", None)
    if cached is not None:
        return cached
    forward = keras_forward(extractor)
    extractor._simrec_forward = forward
    return forward


def keras_forward(extractor: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """The extractor's forward pass run by Keras's backend, whatever runtime the extractor uses
    (:func:`compiled_forward` gives the one it uses); a new function each call."""
    import keras

    builders = {"tensorflow": _tensorflow_forward, "jax": _jax_forward, "torch": _torch_forward}
    return builders[keras.config.backend()](extractor)


def _tensorflow_forward(extractor: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    size = int(extractor.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8)])
    def _graph(pixels):
        return extractor(tf.cast(pixels, tf.float32), training=False)

    def forward(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(_graph(pixels), dtype=np.float32)

    return forward


def _jax_forward(extractor: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    import jax
    import jax.numpy as jnp

    trainable = [variable.value for variable in extractor.trainable_variables]
    non_trainable = [variable.value for variable in extractor.non_trainable_variables]

    @jax.jit
    def _compiled(trainable, non_trainable, pixels):
        outputs, _ = extractor.stateless_call(trainable, non_trainable, pixels.astype(jnp.float32), training=False)
        return outputs

    first: list[int] = []  # a smaller last batch is padded to the first size, not compiled again

    def forward(pixels: np.ndarray) -> np.ndarray:
        count = len(pixels)
        first.append(count) if not first else None
        if count < first[0]:
            pixels = np.concatenate([pixels, np.zeros((first[0] - count, *pixels.shape[1:]), pixels.dtype)])
        return np.asarray(_compiled(trainable, non_trainable, jnp.asarray(pixels)), dtype=np.float32)[:count]

    return forward


def _torch_forward(extractor: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    import keras
    import torch

    def forward(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            batch = keras.ops.cast(keras.ops.convert_to_tensor(np.ascontiguousarray(pixels)), "float32")
            return np.asarray(keras.ops.convert_to_numpy(extractor(batch, training=False)), dtype=np.float32)

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

    Raises:
        InvalidArgumentError: ``n_workers`` is below 1.
    """
    from tqdm.auto import tqdm

    paths = [os.fspath(p) for p in paths]
    colours = np.full((len(paths), N_BINS), np.nan, dtype=np.float32)
    failures: list[tuple[str, str, str]] = []
    batches = decoded_batches(paths, image_size, batch_size, n_workers=n_workers, colours=True)
    with tqdm(total=len(paths), unit="img", desc="colours", disable=not verbose) as bar:
        for indices, _, batch_colours, batch_failures in batches:
            colours[indices] = batch_colours
            failures.extend(batch_failures)
            bar.update(len(indices) + len(batch_failures))
    return colours, pd.DataFrame(failures, columns=FAILURE_COLUMNS)
