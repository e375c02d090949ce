"""What executes the extractor's network: Keras itself, or OpenVINO's CPU plugin.

The Keras model is always built the same way (:func:`simrec.build_extractor`: same weights,
preprocessing inside, BatchNormalization folded). On a CPU, OpenVINO can then run it instead of
Keras: the model's own ``tf.function`` (uint8 pixels in, float32 vectors out) is converted with
``openvino.convert_model`` in memory and compiled for the ``CPU`` device with

* ``PERFORMANCE_HINT=LATENCY``: one stream using every core on one batch, which is how simrec
  calls the model (one batch at a time while the next is decoded);
* ``INFERENCE_PRECISION_HINT=f32`` unless another precision is asked for: on CPUs with AMX or
  AVX-512 BF16, OpenVINO would otherwise compute in bfloat16, which changes the neighbors;
* ``INFERENCE_NUM_THREADS``: the cores this process may use (:func:`available_cores`).

``runtime="auto"`` picks OpenVINO on a CPU when it is installed and the Keras backend is
TensorFlow, and Keras on a GPU, on JAX or PyTorch, or without OpenVINO. A network that does not
convert, or whose converted output does not agree with Keras's on a check batch, falls back to
Keras with one warning: a vector never comes from a network that was not checked.

``precision="int8"`` quantises the converted network with NNCF's post-training quantisation,
calibrated on photos the caller gives (the catalog's own): :func:`calibrate`.

OpenVINO and NNCF are imported inside the functions.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from simrec.core.errors import InvalidArgumentError, MissingDependencyError

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "keras", "openvino")
"""What ``--runtime`` accepts."""

AGREEMENT = 0.9999
"""Least cosine between OpenVINO's and Keras's vector of each check photo, in float32."""

LOW_PRECISION_AGREEMENT = 0.8
"""Least cosine on the check batch in bfloat16, float16 or int8: a bound that catches a broken
conversion; how far these precisions move the neighbors is measured on real photos (docs/runtime.md)."""

CALIBRATION_PHOTOS = 300
"""Photos int8 calibration uses at most (NNCF's own default subset size), spread over the catalog."""

_OPENVINO_PRECISIONS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "int8": "f32"}
_CHECK_SEED = 12345


def openvino_installed() -> bool:
    """Whether the ``openvino`` package can be imported (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is one of :data:`RUNTIMES`.

    Raises:
        InvalidArgumentError: It is not.
    """
    if runtime not in RUNTIMES:
        raise InvalidArgumentError(f"Expected runtime in {RUNTIMES}, got {runtime!r}")
    return runtime


def choose_runtime(runtime: str, *, device: str, backend: str, precision: str = "float32") -> str:
    """The runtime that will execute the network: ``"keras"`` or ``"openvino"``.

    Args:
        runtime: ``"auto"``, ``"keras"`` or ``"openvino"``.
        device: ``"GPU"`` or ``"CPU"``: where Keras would run.
        backend: The Keras backend (OpenVINO converts TensorFlow functions only).
        precision: The compute precision asked for (``"int8"`` needs OpenVINO).

    Raises:
        InvalidArgumentError: An unknown ``runtime``, ``"openvino"`` or ``"int8"`` on a backend other
            than TensorFlow, or ``"int8"`` with ``runtime="keras"``.
        MissingDependencyError: ``"openvino"`` or ``"int8"`` without OpenVINO installed.
    """
    check_runtime(runtime)
    needs_openvino = runtime == "openvino" or precision == "int8"
    if precision == "int8" and runtime == "keras":
        raise InvalidArgumentError(
            "precision 'int8' runs on OpenVINO: use runtime 'auto' or 'openvino', not 'keras'",
            parameters=("precision", "runtime"),
        )
    if needs_openvino:
        what = "runtime 'openvino'" if runtime == "openvino" else "precision 'int8'"
        if backend != "tensorflow":
            raise InvalidArgumentError(
                f"{what} converts the model's TensorFlow function, but the Keras backend is {backend!r}: "
                "set KERAS_BACKEND=tensorflow, or use runtime 'keras'",
                parameters=("precision", "runtime"),
            )
        if not openvino_installed():
            raise MissingDependencyError(
                f"{what} needs OpenVINO: pip install 'simrec[openvino]' (or pip install openvino)"
            )
        return "openvino"
    if runtime == "keras":
        return "keras"
    if device == "GPU":
        logger.info("runtime auto: Keras, as the model runs on a GPU")
        return "keras"
    if backend != "tensorflow":
        logger.info("runtime auto: Keras, as OpenVINO converts TensorFlow functions and the backend is %s", backend)
        return "keras"
    if not openvino_installed():
        logger.info("runtime auto: Keras, as OpenVINO is not installed (pip install 'simrec[openvino]')")
        return "keras"
    return "openvino"


def openvino_forward(
    extractor: keras.Model,
    precision: str = "float32",
    *,
    calibration: np.ndarray | None = None,
    threads: int | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """The extractor compiled for OpenVINO's CPU plugin: uint8 ``(b, S, S, 3)`` -> float32 ``(b, dim)``.

    Args:
        extractor: A float32 Keras extractor on the TensorFlow backend.
        precision: ``"float32"``, ``"bfloat16"``, ``"float16"`` (OpenVINO's inference precision) or
            ``"int8"`` (quantised by NNCF on ``calibration``, the rest in float32).
        calibration: ``(n, S, S, 3)`` uint8 photos for ``"int8"``.
        threads: CPU threads (default: :func:`available_cores`).

    Returns:
        A function of one batch; calls from several threads are run one at a time.

    Raises:
        InvalidArgumentError: ``precision`` is not one of those, or ``"int8"`` without calibration photos.
        Exception: Whatever OpenVINO or NNCF raise when the network does not convert or compile.
    """
    import openvino as ov
    import openvino.properties as properties
    import openvino.properties.hint as hints
    import tensorflow as tf

    if precision not in _OPENVINO_PRECISIONS:
        raise InvalidArgumentError(f"Expected precision in {tuple(_OPENVINO_PRECISIONS)}, got {precision!r}")
    size = int(extractor.input_shape[1])

    # A dict names the one output: without it, layers built with tf.custom_gradient (EfficientNet's
    # swish) leave their activations as extra outputs, which are then computed and copied out.
    @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8, name="pixels")])
    def _embed(pixels):
        return {"embedding": extractor(tf.cast(pixels, tf.float32), training=False)}

    network = ov.convert_model(_embed)
    if len(network.outputs) != 1:
        network = ov.Model([network.output("embedding")], network.get_parameters(), network.get_friendly_name())
    if precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise InvalidArgumentError("precision 'int8' needs calibration photos (the catalog's own)")
        network = _quantised(network, calibration)
    config = {
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        hints.inference_precision: getattr(ov.Type, _OPENVINO_PRECISIONS[precision]),
        properties.inference_num_threads: threads or available_cores(),
    }
    compiled = ov.Core().compile_model(network, "CPU", config)
    request = compiled.create_infer_request()
    lock = threading.Lock()

    def forward(pixels: np.ndarray) -> np.ndarray:
        with lock:  # one infer request, reused: its buffers are allocated once
            outputs = request.infer({0: np.ascontiguousarray(pixels, dtype=np.uint8)}, share_outputs=False)
        return np.asarray(outputs[0], dtype=np.float32)

    forward.openvino_settings = {  # what was compiled, for logs and the benchmark
        "performance_hint": str(compiled.get_property(hints.performance_mode)).rpartition(".")[2],
        "inference_precision": compiled.get_property(hints.inference_precision).get_type_name(),
        "threads": int(compiled.get_property(properties.inference_num_threads)),
    }
    return forward


def _quantised(network: Any, calibration: np.ndarray) -> Any:
    """The network with int8 weights and activations, by NNCF post-training quantisation on ``calibration``."""
    try:
        import nncf
    except ImportError:
        raise MissingDependencyError(
            "precision 'int8' needs NNCF: pip install 'simrec[int8]' (or pip install nncf)"
        ) from None
    photos = [np.asarray(photo[None], dtype=np.uint8) for photo in calibration]
    logger.info("int8: calibrating the quantisation on %d photos", len(photos))
    return nncf.quantize(network, nncf.Dataset(photos), subset_size=len(photos))


def checked_forward(
    extractor: keras.Model,
    keras_forward: Callable[[np.ndarray], np.ndarray],
    precision: str,
    *,
    calibration: np.ndarray | None = None,
    threads: int | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`openvino_forward`, accepted only if it agrees with Keras on a check batch.

    Two seeded random images go through both; each row's cosine must reach :data:`AGREEMENT`
    in float32 (:data:`LOW_PRECISION_AGREEMENT` in a lower precision).

    Raises:
        RuntimeError: The vectors disagree (the message gives the lowest cosine).
        Exception: Whatever :func:`openvino_forward` raises.
    """
    forward = openvino_forward(extractor, precision, calibration=calibration, threads=threads)
    size = int(extractor.input_shape[1])
    pixels = np.random.default_rng(_CHECK_SEED).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    if calibration is not None and len(calibration):
        pixels[0] = calibration[0]  # a real photo too, where there is one
    lowest = float(row_cosines(forward(pixels), keras_forward(pixels)).min())
    bound = AGREEMENT if precision == "float32" else LOW_PRECISION_AGREEMENT
    if not lowest >= bound:  # NaN fails too
        raise RuntimeError(f"OpenVINO's vectors disagree with Keras's: cosine {lowest:.6f} < {bound}")
    return forward


def use_openvino(
    extractor: keras.Model,
    *,
    calibration: np.ndarray | None = None,
    strict: bool = False,
    threads: int | None = None,
) -> str:
    """Make the extractor run on OpenVINO: its compiled forward pass (what :func:`simrec.embed_images`,
    :func:`simrec.pipeline.embedding.embed_arrays` and the service call) becomes OpenVINO's.

    The precision is the extractor's own (:attr:`ExtractorInfo.precision`). Where the network does
    not convert or its vectors disagree with Keras's (:func:`checked_forward`), it stays on Keras
    with one warning, unless ``strict``, and computes in float32 (the precision it was built in).

    Args:
        extractor: From :func:`simrec.build_extractor`, built in float32 on TensorFlow.
        calibration: ``(n, S, S, 3)`` uint8 photos, for ``"int8"``
            (:func:`calibration_photos` of the catalog).
        strict: Raise instead of falling back (``runtime="openvino"`` or ``precision="int8"`` asked for).
        threads: CPU threads (default: :func:`available_cores`).

    Returns:
        The runtime now in use: ``"openvino"``, or ``"keras"`` after a fallback.

    Raises:
        InvalidArgumentError: ``strict`` and the network does not run on OpenVINO (the message says why),
            or ``"int8"`` without calibration photos.
        MissingDependencyError: ``"int8"`` without NNCF.
    """
    import dataclasses

    from simrec.core.records import extractor_info
    from simrec.pipeline.embedding import keras_forward

    info = extractor_info(extractor)
    try:
        forward = checked_forward(
            extractor, keras_forward(extractor), info.precision, calibration=calibration, threads=threads
        )
    except (InvalidArgumentError, MissingDependencyError):
        raise
    except Exception as error:  # any failure of conversion, compilation or agreement means "not on OpenVINO"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if strict or info.precision == "int8":
            raise InvalidArgumentError(f"{info.model} does not run on OpenVINO: {reason}") from None
        logger.warning("%s does not run on OpenVINO (%s): embedding with Keras instead", info.model, reason)
        # The Keras network was built in float32 for OpenVINO to lower: that is what now runs.
        extractor.simrec_info = dataclasses.replace(info, runtime="keras", precision="float32")
        return "keras"
    extractor._simrec_forward = forward
    extractor._simrec_calibration = calibration  # the Ray engine's workers quantise on the same photos
    extractor.simrec_info = dataclasses.replace(info, runtime="openvino")
    settings = forward.openvino_settings
    logger.info(
        "runtime: OpenVINO %s on the CPU, %s, inference precision %s, %d threads",
        _openvino_version(),
        settings["performance_hint"],
        settings["inference_precision"] if info.precision != "int8" else "int8 (quantised), f32 elsewhere",
        settings["threads"],
    )
    return "openvino"


def uncalibrated_forward(pixels: np.ndarray) -> np.ndarray:
    """The forward pass of an int8 extractor that has no calibration yet.

    Raises:
        InvalidArgumentError: Always.
    """
    raise InvalidArgumentError(
        "this int8 extractor has no calibration yet: pass calibration= photos of the catalog to build_extractor, "
        "or call simrec.pipeline.runtime.use_openvino(extractor, calibration=...)"
    )


def needs_calibration(extractor: keras.Model) -> bool:
    """Whether ``extractor`` is an int8 extractor still waiting for its calibration photos."""
    return getattr(extractor, "_simrec_forward", None) is uncalibrated_forward


def _openvino_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino")
    except PackageNotFoundError:
        return "?"


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of ``a`` with the same row of ``b``: ``(n,)`` float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def calibration_photos(
    paths: Sequence[str | os.PathLike], image_size: int, limit: int = CALIBRATION_PHOTOS
) -> np.ndarray:
    """Up to ``limit`` photos spread evenly over ``paths``, decoded as simrec embeds them.

    Unreadable files are passed over.

    Returns:
        ``(n, image_size, image_size, 3)`` uint8.

    Raises:
        InvalidArgumentError: No photo of ``paths`` can be read.
    """
    from simrec.core.errors import ImageDecodeError
    from simrec.pipeline.images import load_image

    paths = list(paths)
    step = max(1, len(paths) // limit)
    photos = []
    for path in paths[::step][:limit]:
        try:
            photos.append(load_image(path, image_size))
        except (ImageDecodeError, OSError) as error:
            logger.debug("calibration passes over %s: %s", path, error)
    if not photos:
        raise InvalidArgumentError(f"int8 calibration: none of the {len(paths)} photos given can be read")
    return np.stack(photos).astype(np.uint8)
