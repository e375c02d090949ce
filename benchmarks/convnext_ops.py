"""Where ConvNeXt-Tiny's time goes on TensorFlow's CPU path, in one run (docs/runtime.md).

    python benchmarks/convnext_ops.py

Times Keras's own ConvNeXtTiny against simrec's extractor of it (the same network), then the
operations of one stage-1 block on its tensors: Keras's Dense on a 4-D tensor against the same
product as one 2-D MatMul, exact against tanh GELU, LayerNormalization, the depthwise 7x7
convolution; then ConvNeXt-Tiny and ResNet50 on Keras and on OpenVINO.
"""

import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def best(f, *a, n=5):
    f(*a)
    b = 1e9
    for _ in range(n):
        t = time.perf_counter()
        np.asarray(f(*a))
        b = min(b, time.perf_counter() - t)
    return b * 1000


def main() -> None:
    import keras
    import tensorflow as tf

    from simrec.pipeline.embedding import keras_forward
    from simrec.pipeline.model import build_extractor
    from simrec.pipeline.runtime import openvino_forward

    x = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
    plain = keras.applications.ConvNeXtTiny(include_top=False, weights=None, pooling="avg")
    g = tf.function(lambda p: plain(tf.cast(p, tf.float32), training=False))
    ours = keras_forward(build_extractor(None, model="convnext-tiny", runtime="keras"))
    print(f"8 photos: Keras's ConvNeXtTiny {best(g, x):.0f} ms, simrec's extractor {best(ours, x):.0f} ms")
    batch = 8
    t = tf.random.normal((batch, 56, 56, 96))
    wide = tf.random.normal((batch, 56, 56, 384))
    k96 = tf.random.normal((96, 384))
    ops = {
        "Dense 96->384 on the 4-D tensor (Keras)": (tf.function(keras.layers.Dense(384)), t),
        "the same product as one 2-D MatMul": (
            tf.function(lambda a: tf.reshape(tf.reshape(a, (-1, 96)) @ k96, (batch, 56, 56, 384))),
            t,
        ),
        "Dense 384->96 on the 4-D tensor": (tf.function(keras.layers.Dense(96)), wide),
        "GELU, exact (Keras's default)": (tf.function(lambda a: tf.nn.gelu(a, approximate=False)), wide),
        "GELU, tanh approximation": (tf.function(lambda a: tf.nn.gelu(a, approximate=True)), wide),
        "LayerNormalization": (tf.function(keras.layers.LayerNormalization(epsilon=1e-6)), t),
        "depthwise 7x7 convolution": (tf.function(keras.layers.DepthwiseConv2D(7, padding="same")), t),
    }
    for name, (f, a) in ops.items():
        print(f"{name}: {best(f, a):.1f} ms")
    for name in ("convnext-tiny", "resnet50"):
        extractor = build_extractor(None, model=name, runtime="keras")
        on_keras, on_openvino = keras_forward(extractor), openvino_forward(extractor)
        print(
            f"{name}: img/s Keras {8000 / best(on_keras, x, n=3):.2f}, OpenVINO {8000 / best(on_openvino, x, n=3):.2f}"
        )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
