"""The Keras backend simrec runs on (TensorFlow, JAX or PyTorch), and its accelerators.

simrec never picks the backend itself: it is chosen the Keras way, with the
``KERAS_BACKEND`` environment variable or ``~/.keras/keras.json``, before Keras is first
imported. On JAX and PyTorch, TensorFlow is never imported.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def backend_name() -> str:
    """The Keras backend that is (or will be) in use, without importing Keras if it is not yet."""
    import sys

    if "keras" in sys.modules:
        import keras

        return keras.config.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        return json.loads(config.read_text()).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def accelerators() -> list[str]:
    """Names of the GPUs the current backend can use (empty on a CPU-only machine)."""
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        return [device.name for device in tf.config.list_physical_devices("GPU")]
    if name == "jax":
        import jax

        return [str(device) for device in jax.devices() if device.platform != "cpu"]
    if name == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def framework_version() -> str:
    """``"tensorflow 2.21.0"``, ``"jax 0.10.2"`` or ``"torch 2.11.0"``: the backend and its version."""
    name = backend_name()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(name)
    if module is None:
        return name
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name} {version(module)}"
    except PackageNotFoundError:
        return name


def import_backend_quietly(verbosity: int) -> None:
    """Import Keras and its backend, with TensorFlow's start-up chatter kept off the terminal.

    TensorFlow's C++ layer prints oneDNN/CUDA notices straight to file descriptor 2
    before any setting can silence it; they are replayed with -vv or if the import fails.
    Other backends are imported as they are.
    """
    import tempfile

    if verbosity >= 2 or backend_name() != "tensorflow":
        import keras  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


NATIVE_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU flags (as Linux names them in ``/proc/cpuinfo``) of instructions that compute bfloat16 natively."""


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags, from the first ``flags`` line of ``/proc/cpuinfo`` (empty elsewhere)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def native_bfloat16(flags: set[str] | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AMX or AVX-512 BF16: Intel Sapphire Rapids and
    later, AMD Zen 4 and later); elsewhere (AVX2 only) bfloat16 is emulated and slower than float32.

    Args:
        flags: The CPU's flags (default: :func:`cpu_flags`).
    """
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in NATIVE_BFLOAT16_FLAGS)
