"""The backbones simrec embeds with: the Keras applications that ship ImageNet weights.

Pure data, no Keras import. Each :class:`Backbone` names the ``keras.applications``
constructor that builds the network (and its arguments), the input side its ImageNet
weights were trained at, its feature dimension, its parameter count without the top, the
preprocessing those weights expect, and the file name Keras downloads them under.
``resnet50`` is the default; :func:`backbone` looks a name up and suggests close ones.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from simrec.core.errors import InvalidArgumentError

DEFAULT_BACKBONE = "resnet50"
"""The backbone of ``simrec index`` without ``--model``, and of every index made before the choice."""

DECODING = "exif-transpose; RGB (alpha composited on white); pad to square on white; bilinear resize"
"""What happens to every photo before the network's own preprocessing."""

PREPROCESSING_MODES = {
    "caffe": "caffe: RGB->BGR, ImageNet mean subtracted",
    "tf": "tf: scaled to [-1, 1]",
    "torch": "torch: scaled to [0, 1], ImageNet mean and std normalised",
    "model": "none: 0-255 pixels, rescaled by the network's own first layers",
}
"""The preprocessing modes of ``keras.applications.imagenet_utils.preprocess_input``, and ``"model"``
for networks that rescale inside (EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3)."""


@dataclass(frozen=True)
class Backbone:
    """One network simrec can embed with.

    Attributes:
        name: What ``--model`` calls it (``"mobilenet-0.25"``).
        application: The ``keras.applications`` constructor (``"MobileNet"``).
        module: The ``keras.applications`` module whose ``preprocess_input`` its weights expect.
        image_size: The input side its ImageNet weights were trained at: the default.
        dim: Length of its global-average-pooled feature vector.
        parameters: Parameters without the top (the same at every input size).
        preprocessing: A key of :data:`PREPROCESSING_MODES`, applied once, as the model's
            first layer.
        weights_file: The file name Keras downloads its no-top ImageNet weights under.
        arguments: Further keyword arguments of the constructor (``{"alpha": 0.25}``).
        fold_batch_norm: Whether each BatchNormalization follows a convolution named
            ``X_conv`` / ``X_bn`` and is folded into it (ResNet v1).
    """

    name: str
    application: str
    module: str
    image_size: int
    dim: int
    parameters: int
    preprocessing: str
    weights_file: str
    arguments: dict[str, Any] = field(default_factory=dict)
    fold_batch_norm: bool = False

    @property
    def preprocessing_description(self) -> str:
        """The pixel pipeline in words, stored in every index (``meta.json``'s ``preprocessing``)."""
        return f"{DECODING}; {self.module}.preprocess_input ({PREPROCESSING_MODES[self.preprocessing]})"


BACKBONES: dict[str, Backbone] = {
    spec.name: spec
    for spec in [
        Backbone(
            "resnet50",
            "ResNet50",
            "resnet50",
            224,
            2048,
            23_587_712,
            "caffe",
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            fold_batch_norm=True,
        ),
        Backbone(
            "resnet101",
            "ResNet101",
            "resnet",
            224,
            2048,
            42_658_176,
            "caffe",
            "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
            fold_batch_norm=True,
        ),
        Backbone(
            "resnet152",
            "ResNet152",
            "resnet",
            224,
            2048,
            58_370_944,
            "caffe",
            "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
            fold_batch_norm=True,
        ),
        Backbone(
            "resnet50-v2",
            "ResNet50V2",
            "resnet_v2",
            224,
            2048,
            23_564_800,
            "tf",
            "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            "resnet101-v2",
            "ResNet101V2",
            "resnet_v2",
            224,
            2048,
            42_626_560,
            "tf",
            "resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            "resnet152-v2",
            "ResNet152V2",
            "resnet_v2",
            224,
            2048,
            58_331_648,
            "tf",
            "resnet152v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            "mobilenet-0.25",
            "MobileNet",
            "mobilenet",
            224,
            256,
            218_544,
            "tf",
            "mobilenet_2_5_224_tf_no_top.h5",
            arguments={"alpha": 0.25},
        ),
        Backbone(
            "mobilenet-0.5",
            "MobileNet",
            "mobilenet",
            224,
            512,
            829_536,
            "tf",
            "mobilenet_5_0_224_tf_no_top.h5",
            arguments={"alpha": 0.5},
        ),
        Backbone(
            "mobilenet-0.75",
            "MobileNet",
            "mobilenet",
            224,
            768,
            1_832_976,
            "tf",
            "mobilenet_7_5_224_tf_no_top.h5",
            arguments={"alpha": 0.75},
        ),
        Backbone("mobilenet", "MobileNet", "mobilenet", 224, 1024, 3_228_864, "tf", "mobilenet_1_0_224_tf_no_top.h5"),
        Backbone(
            "mobilenet-v2-0.35",
            "MobileNetV2",
            "mobilenet_v2",
            224,
            1280,
            410_208,
            "tf",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
            arguments={"alpha": 0.35},
        ),
        Backbone(
            "mobilenet-v2-0.5",
            "MobileNetV2",
            "mobilenet_v2",
            224,
            1280,
            706_224,
            "tf",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5",
            arguments={"alpha": 0.5},
        ),
        Backbone(
            "mobilenet-v2-0.75",
            "MobileNetV2",
            "mobilenet_v2",
            224,
            1280,
            1_382_064,
            "tf",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_224_no_top.h5",
            arguments={"alpha": 0.75},
        ),
        Backbone(
            "mobilenet-v2",
            "MobileNetV2",
            "mobilenet_v2",
            224,
            1280,
            2_257_984,
            "tf",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        ),
        Backbone(
            "mobilenet-v2-1.3",
            "MobileNetV2",
            "mobilenet_v2",
            224,
            1664,
            3_766_048,
            "tf",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.3_224_no_top.h5",
            arguments={"alpha": 1.3},
        ),
        Backbone(
            "mobilenet-v2-1.4",
            "MobileNetV2",
            "mobilenet_v2",
            224,
            1792,
            4_363_712,
            "tf",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_224_no_top.h5",
            arguments={"alpha": 1.4},
        ),
        Backbone(
            "mobilenet-v3-small",
            "MobileNetV3Small",
            "mobilenet_v3",
            224,
            576,
            939_120,
            "model",
            "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        ),
        Backbone(
            "mobilenet-v3-large",
            "MobileNetV3Large",
            "mobilenet_v3",
            224,
            960,
            2_996_352,
            "model",
            "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        ),
        Backbone(
            "efficientnet-b0",
            "EfficientNetB0",
            "efficientnet",
            224,
            1280,
            4_049_571,
            "model",
            "efficientnetb0_notop.h5",
        ),
        Backbone(
            "efficientnet-b1",
            "EfficientNetB1",
            "efficientnet",
            240,
            1280,
            6_575_239,
            "model",
            "efficientnetb1_notop.h5",
        ),
        Backbone(
            "efficientnet-b2",
            "EfficientNetB2",
            "efficientnet",
            260,
            1408,
            7_768_569,
            "model",
            "efficientnetb2_notop.h5",
        ),
        Backbone(
            "efficientnet-b3",
            "EfficientNetB3",
            "efficientnet",
            300,
            1536,
            10_783_535,
            "model",
            "efficientnetb3_notop.h5",
        ),
        Backbone(
            "efficientnet-b4",
            "EfficientNetB4",
            "efficientnet",
            380,
            1792,
            17_673_823,
            "model",
            "efficientnetb4_notop.h5",
        ),
        Backbone(
            "efficientnet-b5",
            "EfficientNetB5",
            "efficientnet",
            456,
            2048,
            28_513_527,
            "model",
            "efficientnetb5_notop.h5",
        ),
        Backbone(
            "efficientnet-b6",
            "EfficientNetB6",
            "efficientnet",
            528,
            2304,
            40_960_143,
            "model",
            "efficientnetb6_notop.h5",
        ),
        Backbone(
            "efficientnet-b7",
            "EfficientNetB7",
            "efficientnet",
            600,
            2560,
            64_097_687,
            "model",
            "efficientnetb7_notop.h5",
        ),
        Backbone(
            "efficientnet-v2-b0",
            "EfficientNetV2B0",
            "efficientnet_v2",
            224,
            1280,
            5_919_312,
            "model",
            "efficientnetv2-b0_notop.h5",
        ),
        Backbone(
            "efficientnet-v2-b1",
            "EfficientNetV2B1",
            "efficientnet_v2",
            240,
            1280,
            6_931_124,
            "model",
            "efficientnetv2-b1_notop.h5",
        ),
        Backbone(
            "efficientnet-v2-b2",
            "EfficientNetV2B2",
            "efficientnet_v2",
            260,
            1408,
            8_769_374,
            "model",
            "efficientnetv2-b2_notop.h5",
        ),
        Backbone(
            "efficientnet-v2-b3",
            "EfficientNetV2B3",
            "efficientnet_v2",
            300,
            1536,
            12_930_622,
            "model",
            "efficientnetv2-b3_notop.h5",
        ),
        Backbone(
            "efficientnet-v2-s",
            "EfficientNetV2S",
            "efficientnet_v2",
            384,
            1280,
            20_331_360,
            "model",
            "efficientnetv2-s_notop.h5",
        ),
        Backbone(
            "efficientnet-v2-m",
            "EfficientNetV2M",
            "efficientnet_v2",
            480,
            1280,
            53_150_388,
            "model",
            "efficientnetv2-m_notop.h5",
        ),
        Backbone(
            "efficientnet-v2-l",
            "EfficientNetV2L",
            "efficientnet_v2",
            480,
            1280,
            117_746_848,
            "model",
            "efficientnetv2-l_notop.h5",
        ),
        Backbone("convnext-tiny", "ConvNeXtTiny", "convnext", 224, 768, 27_820_128, "model", "convnext_tiny_notop.h5"),
        Backbone(
            "convnext-small", "ConvNeXtSmall", "convnext", 224, 768, 49_454_688, "model", "convnext_small_notop.h5"
        ),
        Backbone("convnext-base", "ConvNeXtBase", "convnext", 224, 1024, 87_566_464, "model", "convnext_base_notop.h5"),
        Backbone(
            "convnext-large", "ConvNeXtLarge", "convnext", 224, 1536, 196_230_336, "model", "convnext_large_notop.h5"
        ),
        Backbone(
            "convnext-xlarge", "ConvNeXtXLarge", "convnext", 224, 2048, 348_147_968, "model", "convnext_xlarge_notop.h5"
        ),
        Backbone(
            "densenet121",
            "DenseNet121",
            "densenet",
            224,
            1024,
            7_037_504,
            "torch",
            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            "densenet169",
            "DenseNet169",
            "densenet",
            224,
            1664,
            12_642_880,
            "torch",
            "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            "densenet201",
            "DenseNet201",
            "densenet",
            224,
            1920,
            18_321_984,
            "torch",
            "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            "vgg16",
            "VGG16",
            "vgg16",
            224,
            512,
            14_714_688,
            "caffe",
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            "vgg19",
            "VGG19",
            "vgg19",
            224,
            512,
            20_024_384,
            "caffe",
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            "xception",
            "Xception",
            "xception",
            299,
            2048,
            20_861_480,
            "tf",
            "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            "inception-v3",
            "InceptionV3",
            "inception_v3",
            299,
            2048,
            21_802_784,
            "tf",
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            "inception-resnet-v2",
            "InceptionResNetV2",
            "inception_resnet_v2",
            299,
            1536,
            54_336_736,
            "tf",
            "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone("nasnet-mobile", "NASNetMobile", "nasnet", 224, 1056, 4_269_716, "tf", "nasnet_mobile_no_top.h5"),
        Backbone("nasnet-large", "NASNetLarge", "nasnet", 331, 4032, 84_916_818, "tf", "nasnet_large_no_top.h5"),
    ]
}
"""Every backbone by name, in the order of the table in docs/backbones.md."""


def backbone(name: str | Backbone) -> Backbone:
    """The backbone called ``name`` (a :class:`Backbone` is returned as it is).

    Raises:
        InvalidArgumentError: No backbone has that name; the message suggests close ones.

    Example:
        >>> backbone("mobilenet-0.25").dim
        256
    """
    if isinstance(name, Backbone):
        return name
    if name in BACKBONES:
        return BACKBONES[name]
    close = difflib.get_close_matches(str(name), BACKBONES, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise InvalidArgumentError(
        f"Expected model to be one of {', '.join(BACKBONES)}, got {name!r}{hint}", parameters=("model",)
    )


def backbones_with_parameters(parameters: int) -> list[str]:
    """The names of the backbones with exactly this many parameters (what a weights file fits)."""
    return [spec.name for spec in BACKBONES.values() if spec.parameters == parameters]
