"""The feature extractor: a Keras application without its classifier, global average pooled.

The backbone is chosen by name from :data:`simrec.core.backbones.BACKBONES` (``resnet50``
by default, ``mobilenet-0.25``, ``efficientnet-b0``, ...). The returned Keras model takes
``(batch, H, W, 3)`` RGB pixels (uint8 or float, 0-255) and gives ``(batch, dim)`` float32
vectors. The backbone's own preprocessing (for ResNet50 caffe mode: RGB->BGR, ImageNet mean
subtracted, no rescaling; for MobileNet scaling to [-1, 1]; ...) is the model's first
layer, or the network's own first layers, so it is applied in exactly one place and cannot
be forgotten or doubled.

TensorFlow is imported inside the functions, so ``import simrec`` stays fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simrec.core.backbones import BACKBONES, DEFAULT_BACKBONE, Backbone, backbone, backbones_with_parameters
from simrec.core.defaults import SEED
from simrec.core.errors import IndexIntegrityError, InvalidArgumentError, MissingFileError
from simrec.core.hub_backbones import HUB_BACKBONES, is_model_file
from simrec.core.index_meta import IndexMeta, weights_name
from simrec.core.records import UNTRAINED_WARNING, ExtractorInfo, extractor_info
from simrec.core.validation import check_image_size
from simrec.pipeline.backend import accelerators
from simrec.pipeline.runtime import check_runtime, choose_runtime, uncalibrated_forward, use_openvino

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGENET_NOTOP_FILE = BACKBONES[DEFAULT_BACKBONE].weights_file
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")


def build_extractor(
    weights: str | os.PathLike | None = "imagenet",
    image_size: int | None = None,
    *,
    model: str | Backbone = DEFAULT_BACKBONE,
    seed: int = SEED,
    precision: str = "auto",
    preprocessing: str | None = None,
    runtime: str = "auto",
    calibration: np.ndarray | None = None,
) -> keras.Model:
    """Build the feature extractor of one backbone.

    Args:
        weights: ``"imagenet"`` (downloaded by Keras on first use, then cached in
            ``~/.keras/models/``); ``"auto"`` (ImageNet if cached or downloadable,
            otherwise untrained weights with a warning); ``None`` or ``"random"``
            (untrained, seeded by ``seed``: reproducible but not meaningful); or the
            path of a local ``.h5`` (Keras Applications' own) / ``.weights.h5`` (Keras 3)
            file holding that backbone's weights without its top, for machines without internet.
        image_size: Side of the square input images, in pixels (>= 32); default: the
            backbone's own (224 for ResNet50 and MobileNet, 600 for EfficientNet-B7).
        model: A name of :data:`simrec.core.backbones.BACKBONES` (``"resnet50"``,
            ``"mobilenet-0.25"``, ...) or a :class:`~simrec.core.backbones.Backbone`; a name of
            :data:`simrec.core.hub_backbones.HUB_BACKBONES` (``"dinov2-small"``, ``"clip-vit-b32"``: ``weights``
            is then a KerasHub preset folder, ``"auto"`` or ``"random"``, see :mod:`simrec.pipeline.hub`); or
            the path of a Keras model file ending in ``.keras`` (see :mod:`simrec.pipeline.model_file`).
        seed: Seed for untrained weights. Only Python's ``random`` is seeded, while the
            network is built, and then put back: no global random state changes.
        precision: ``"auto"`` (float16 mixed precision on a GPU, float32 on a CPU),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``. Outputs are float32 always.
            bfloat16 is faster on CPUs that run it natively
            (:func:`simrec.pipeline.backend.native_bfloat16`), but on real photos its top-5
            neighbors agree with float32's less than a default should (docs/backends.md), so it
            is only used when asked for. ``"int8"`` runs on OpenVINO,
            quantised on ``calibration`` (docs/runtime.md).
        preprocessing: For a model file only: a mode of
            :data:`~simrec.core.backbones.PREPROCESSING_MODES` (default ``"model"``, inside the model).
        runtime: What executes the network (:mod:`simrec.pipeline.runtime`): ``"auto"``
            (OpenVINO on a CPU when it is installed and the network converts, else Keras),
            ``"keras"`` or ``"openvino"``. Both give the same vectors to float32 rounding.
        calibration: ``(n, S, S, 3)`` uint8 photos of the catalog, for ``precision="int8"``
            (:func:`simrec.pipeline.runtime.calibration_photos`); without them an int8
            extractor embeds nothing until :func:`simrec.pipeline.runtime.use_openvino` is given some.

    Returns:
        A ``keras.Model`` mapping ``(batch, image_size, image_size, 3)`` RGB pixels to
        ``(batch, dim)`` float32 embeddings (``dim`` 2048 for ResNet50, 256 for
        MobileNet 0.25). :func:`extractor_info` describes it.

    Raises:
        InvalidArgumentError: Bad ``model``/``image_size``/``precision``/``weights``/``runtime``, a weights file that
            does not fit (the message says what the model expected and, where it can tell, which model the file
            fits), or ``runtime="openvino"``/``precision="int8"`` where the network does not run on OpenVINO.
        MissingFileError: A weights path, preset folder or model file that does not exist, or a KerasHub preset that
            cannot be downloaded.
        MissingDependencyError: A KerasHub backbone without keras-hub installed; ``runtime="openvino"`` or
            ``precision="int8"`` without OpenVINO (or NNCF for int8).

    Example:
        >>> extractor = build_extractor("mobilenet_2_5_224_tf_no_top.h5", model="mobilenet-0.25")  # doctest: +SKIP
        >>> extractor.output_shape
        (None, 256)
    """
    extractor = _build_extractor(
        weights,
        image_size,
        model=model,
        seed=seed,
        precision=precision,
        preprocessing=preprocessing,
        runtime=runtime,
        calibration=calibration,
    )
    if not extractor.simrec_info.pretrained:
        logger.warning(UNTRAINED_WARNING)
    return extractor


def _build_extractor(
    weights: str | os.PathLike | None,
    image_size: int | None,
    *,
    model: str | Backbone,
    seed: int,
    precision: str,
    preprocessing: str | None = None,
    runtime: str = "auto",
    calibration: np.ndarray | None = None,
) -> keras.Model:
    """:func:`build_extractor` without its untrained-weights warning, for an index's own extractor:
    whoever opened the index says its warning (:attr:`EmbeddedCatalog.warning`) once."""
    if isinstance(model, str) and (model in HUB_BACKBONES or is_model_file(model)):
        check_runtime(runtime)
        if precision == "int8":
            raise InvalidArgumentError(
                f"precision 'int8' is for the Keras applications; {model} runs in float32, bfloat16 or float16"
            )
        return _on_runtime(_build_other_extractor(weights, image_size, model, seed, precision, preprocessing), runtime)
    if preprocessing is not None:
        raise InvalidArgumentError(
            f"preprocessing is for a .keras model file; {model} brings its own", parameters=("preprocessing",)
        )
    spec = backbone(model)
    image_size = check_image_size(spec.image_size if image_size is None else image_size)
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"Expected precision in {PRECISIONS}, got {precision!r}")
    check_runtime(runtime)
    weights_spec = _resolve_weights(weights, spec)

    import keras

    backend = keras.config.backend()
    gpus = accelerators()
    device = "GPU" if gpus else "CPU"
    logger.info(
        "feature extraction runs on %s (Keras backend %s)",
        ", ".join(gpus) if gpus else "the CPU (no GPU visible)",
        backend,
    )
    chosen = choose_runtime(runtime, device=device, backend=backend, precision=precision)
    if precision == "auto":
        precision = "float16" if gpus and chosen == "keras" else "float32"
    # On OpenVINO the Keras network is float32 and OpenVINO computes in the precision asked for.
    policy = (
        "float32"
        if chosen == "openvino"
        else {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}.get(precision, "float32")
    )

    previous_policy = keras.config.dtype_policy()
    # Keras 3 seeds each unseeded initializer from Python's `random` when the layer is
    # made, so seeding that alone, and only while building, makes untrained weights
    # reproducible; keras.utils.set_random_seed would reseed NumPy and TensorFlow for the
    # whole process as well.
    try:
        keras.config.set_dtype_policy(policy)
        with python_random_seeded(seed):
            network = _application(spec, weights_spec == "imagenet", image_size)
            if isinstance(weights_spec, Path):
                _load_weights_file(network, weights_spec, spec)
            if spec.fold_batch_norm:
                network = _fold_batch_norm(network)
            pixels = keras.Input((image_size, image_size, 3), name="pixels")
            features = pixels
            if spec.preprocessing != "model":
                preprocess = keras.layers.Lambda(
                    preprocess_function(spec.preprocessing), dtype="float32", name=f"{spec.module}_preprocess"
                )
                features = preprocess(pixels)
            embedding = keras.layers.Activation("linear", dtype="float32", name="embedding")
            extractor = keras.Model(pixels, embedding(network(features)), name=f"simrec_{spec.name}")
    finally:
        keras.config.set_dtype_policy(previous_policy)

    named = weights_name(weights_spec, seed)
    extractor.simrec_info = ExtractorInfo(
        model=spec.name,
        weights=named,
        pretrained=weights_spec != "random",
        image_size=image_size,
        preprocessing=spec.preprocessing_description,
        precision=precision,
        device=device,
        weights_path=str(weights_spec.absolute()) if isinstance(weights_spec, Path) else "",
        backend=backend,
        runtime=chosen,
    )
    if chosen == "openvino":
        if precision == "int8" and calibration is None:
            extractor._simrec_forward = uncalibrated_forward
        else:
            strict = runtime == "openvino" or precision == "int8"
            chosen = use_openvino(extractor, calibration=calibration, strict=strict)
    logger.info(
        "extractor: %s, weights=%s, %s, input %dpx, runtime %s", spec.name, named, precision, image_size, chosen
    )
    return extractor


def _on_runtime(extractor: keras.Model, runtime: str) -> keras.Model:
    """Run a KerasHub or model-file extractor on the runtime asked for, as :func:`_build_extractor` does.

    OpenVINO runs it in float32 only (the network itself is then float32); other precisions stay on Keras.
    """
    info = extractor_info(extractor)
    chosen = choose_runtime(runtime, device=info.device, backend=info.backend, precision=info.precision)
    if chosen == "openvino" and info.precision != "float32":
        if runtime == "openvino":
            raise InvalidArgumentError(
                f"{info.model} runs on OpenVINO in float32 only, not {info.precision}: use precision=float32",
                parameters=("precision",),
            )
        chosen = "keras"
    if chosen == "openvino":
        use_openvino(extractor, strict=runtime == "openvino")
    logger.info("extractor: %s, runtime %s", info.model, extractor_info(extractor).runtime)
    return extractor


def _build_other_extractor(
    weights: str | os.PathLike | None,
    image_size: int | None,
    model: str,
    seed: int,
    precision: str,
    preprocessing: str | None,
) -> keras.Model:
    """The extractor of a KerasHub backbone or of a Keras model file."""
    if is_model_file(model):
        from simrec.pipeline.model_file import build_model_file_extractor

        # An index's model file is where it was last seen: weights_argument hands that path over.
        path = weights if isinstance(weights, Path) and is_model_file(weights) else Path(model)
        return build_model_file_extractor(
            path, image_size, preprocessing=preprocessing, precision=precision, preprocess_function=preprocess_function
        )
    if preprocessing is not None:
        raise InvalidArgumentError(
            f"preprocessing is for a .keras model file; {model} brings its own", parameters=("preprocessing",)
        )
    from simrec.pipeline.hub import build_hub_extractor

    with python_random_seeded(seed):
        return build_hub_extractor(HUB_BACKBONES[model], weights, image_size, seed=seed, precision=precision)


def _application(spec: Backbone, imagenet: bool, image_size: int) -> keras.Model:
    """The Keras application without its top, global average pooled; a size it refuses is a user error."""
    import keras

    try:
        return getattr(keras.applications, spec.application)(
            include_top=False,
            weights="imagenet" if imagenet else None,
            input_shape=(image_size, image_size, 3),
            pooling="avg",
            **spec.arguments,
        )
    except ValueError as error:  # Keras checks the input shape (Xception: "at least 71x71") before building
        if "input" not in str(error).lower():
            raise
        raise InvalidArgumentError(f"image_size {image_size} does not suit {spec.name}: {error}") from None


def preprocess_function(mode: str) -> Callable[[Any], Any]:
    """The pixel preprocessing of one mode of :data:`~simrec.core.backbones.PREPROCESSING_MODES`.

    ``"caffe"``, ``"tf"`` and ``"torch"`` are ``keras.applications.imagenet_utils.preprocess_input``
    in that mode (what each application's own ``preprocess_input`` calls); ``"model"``
    passes the pixels through, for networks that rescale them themselves.

    Raises:
        InvalidArgumentError: ``mode`` is not one of the modes.
    """
    from keras.applications import imagenet_utils

    if mode == "model":
        return lambda pixels: pixels
    if mode not in ("caffe", "tf", "torch"):
        raise InvalidArgumentError(f"Expected a preprocessing mode 'caffe', 'tf', 'torch' or 'model', got {mode!r}")
    return lambda pixels: imagenet_utils.preprocess_input(pixels, mode=mode)


@contextlib.contextmanager
def python_random_seeded(seed: int) -> Iterator[None]:
    """Seed Python's ``random`` for the block, then put its previous state back.

    Nothing else is touched: NumPy's and TensorFlow's global generators and Keras's
    global ``SeedGenerator`` are left as they were.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def imagenet_weights_cached(model: str | Backbone = DEFAULT_BACKBONE) -> bool:
    """Whether Keras already has the backbone's (no top) ImageNet weights on disk.

    Raises:
        InvalidArgumentError: ``model`` names no backbone.
    """
    return (keras_cache_dir() / "models" / backbone(model).weights_file).is_file()


def keras_cache_dir() -> Path:
    """The folder ``keras.utils.get_file`` caches downloads in, as Keras decides it.

    That is Keras's home (``$KERAS_HOME``, else ``~/.keras``, else ``/tmp/.keras`` when
    the home folder is not writable), unless that folder is not writable either, in which
    case ``get_file`` falls back to ``.keras`` in the temporary folder. Keras has no
    public accessor for this, so its own private one is asked and its fallback repeated.
    """
    from keras.src.backend.config import keras_home

    base = os.path.expanduser(keras_home())
    if not os.access(base, os.W_OK):  # the same test and fallback as keras.utils.get_file
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(base)


def imagenet_available(model: str | Backbone = DEFAULT_BACKBONE) -> bool:
    """Whether the backbone's ImageNet weights are cached or can be downloaded now.

    Raises:
        InvalidArgumentError: ``model`` names no backbone.
    """
    return imagenet_weights_cached(model) or _imagenet_reachable()


def _resolve_weights(weights: str | os.PathLike | None, spec: Backbone) -> str | Path:
    """Normalise the weights argument to "imagenet", "random" or a file Path."""
    if weights is None or weights == "random":
        return "random"
    if weights == "imagenet":
        return "imagenet"
    if weights == "auto":
        if imagenet_available(spec):
            return "imagenet"
        logger.warning("ImageNet weights are not cached and cannot be downloaded: using untrained weights")
        return "random"
    path = Path(weights)
    if not str(weights).endswith(".h5"):
        raise InvalidArgumentError(
            f"Expected weights to be 'imagenet', 'auto', None/'random' or a .h5/.weights.h5 file, got {weights!r}"
        )
    if not path.is_file():
        raise MissingFileError(f"weights file not found: {path}")
    return path


def _imagenet_reachable(timeout: float = 10.0) -> bool:
    request = urllib.request.Request(IMAGENET_URL, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except Exception as error:  # any network failure means "not reachable"
        logger.debug("ImageNet weights not reachable: %s", error)
        return False


def _load_weights_file(network: keras.Model, path: Path, spec: Backbone) -> None:
    try:
        # Keras 3 loads a .weights.h5 file of another network in part, warning, where every variable it
        # holds counts: a count that differs is refused before anything is loaded.
        if path.name.endswith(".weights.h5") and weights_file_parameters(path) != network.count_params():
            raise ValueError("the number of parameters differs")
        network.load_weights(str(path))
    except Exception as error:
        expected = f"{spec.name} ({spec.application} without its top, {spec.parameters:,} parameters)"
        found = weights_file_parameters(path)
        fits = [name for name in backbones_with_parameters(found) if name != spec.name] if found else []
        fits += [s.name for s in BACKBONES.values() if s.weights_file == path.name and s.name not in fits + [spec.name]]
        holds = f"it holds {found:,} parameters" if found else "it is not an HDF5 weights file"
        hint = f", like {' or '.join(fits)}: pass model={fits[0]}" if fits else ""
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidArgumentError(
            f"weights file {path} does not fit {expected} at {network.input_shape[1]}px: {holds}{hint} ({reason})",
            parameters=("model",) if fits else (),
        ) from None


def weights_file_parameters(path: str | os.PathLike) -> int:
    """How many numbers a weights file holds (Keras Applications' ``.h5`` or Keras 3 ``.weights.h5``); 0 if unreadable.

    Both formats keep every variable as one HDF5 dataset, so the count equals the
    ``count_params()`` of the network it was saved from.
    """
    import h5py

    total = 0

    def add(name: str, item: Any) -> None:
        nonlocal total
        if isinstance(item, h5py.Dataset) and not name.startswith("optimizer"):
            total += int(item.size)

    try:
        with h5py.File(path, "r") as file:
            file.visititems(add)
    except OSError:
        return 0
    return total


def _fold_batch_norm(backbone: keras.Model) -> keras.Model:
    """The same network with each BatchNormalization merged into the convolution before it.

    At inference a BatchNormalization is a fixed per-channel scale and shift, so it can be
    folded into the preceding convolution's kernel and bias: the outputs are the same (to
    float32 rounding) and the forward pass is about 20% faster on CPUs, as 53 elementwise
    passes over the activations disappear. ResNet50 names each pair ``X_conv`` / ``X_bn``.
    """
    import keras

    norms = {layer.name: layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)}

    def norm_after(conv_name: str):
        return norms.get(conv_name[: -len("conv")] + "bn") if conv_name.endswith("_conv") else None

    def clone(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return keras.layers.Identity(name=layer.name, dtype=layer.dtype_policy)
        config = layer.get_config()
        if isinstance(layer, keras.layers.Conv2D) and norm_after(layer.name) is not None:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.layers.Identity):  # a folded norm: its training and mask mean nothing now
            return layer(args[0])
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(backbone, clone_function=clone, call_function=call)
    used = set()
    for layer in folded.layers:
        if not layer.weights:  # inputs, padding, activations, pooling, folded norms
            continue
        source = backbone.get_layer(layer.name)
        norm = norm_after(layer.name) if isinstance(source, keras.layers.Conv2D) else None
        if norm is None:
            layer.set_weights(source.get_weights())
            continue
        kernel = np.asarray(source.kernel)
        bias = np.asarray(source.bias) if source.use_bias else np.zeros(kernel.shape[-1], np.float32)
        gamma = np.asarray(norm.gamma) if norm.scale else 1.0
        beta = np.asarray(norm.beta) if norm.center else 0.0
        scale = gamma / np.sqrt(np.asarray(norm.moving_variance) + norm.epsilon)
        layer.set_weights([kernel * scale, (bias - np.asarray(norm.moving_mean)) * scale + beta])
        used.add(norm.name)
    if used != set(norms):
        raise RuntimeError(f"could not fold BatchNormalization layers {sorted(set(norms) - used)}")
    return folded


def extractor_for(
    meta: IndexMeta, weights_path: str | os.PathLike | None = None, *, runtime: str = "auto"
) -> keras.Model:
    """Build the extractor an index was made with, from its ``meta.json``, to embed query photos.

    The runtime may be another than the index's (both give the same vectors to float32
    rounding). An int8 index's queries are embedded in float32, as its quantisation was
    calibrated on its catalog's photos.

    Raises:
        MissingFileError: The index used a weights file that is no longer there.
        IndexIntegrityError: The index holds vectors made outside simrec.
        InvalidArgumentError: ``weights_path`` is a file that does not fit the index's model, or a bad ``runtime``.
        MissingDependencyError: ``runtime="openvino"`` without OpenVINO.
    """
    if meta.made_outside:
        raise IndexIntegrityError(
            f"this index holds vectors from {meta.model!r}, made outside simrec: "
            "photo queries need that model; query it by product_id instead",
            parameters=("product_id",),
        )
    weights, seed = meta.weights_argument(weights_path)
    precision = "float32" if meta.precision == "int8" else meta.precision or "auto"
    return _build_extractor(
        weights,
        int(meta.image_size),
        model=meta.model,
        seed=seed,
        precision=precision,
        preprocessing=meta.preprocessing if is_model_file(meta.model) else None,
        runtime=runtime,
    )
