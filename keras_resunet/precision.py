"""The training precision: Keras dtype policies, and `auto`, which picks one for the hardware;
whether TensorFlow is there at all (the JAX and PyTorch backends can do without it).

bfloat16 arithmetic pays only where the hardware has it: a CPU with AVX512-BF16 or AMX, or a GPU
of compute capability 8.0 or newer. Without it, bfloat16 is emulated and trains about 10x slower
than float32 on CPU (results/training/README.md), so `auto` picks float32 there.
"""

import os
from pathlib import Path

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def tensorflow_available():
    """Whether TensorFlow can be imported (the JAX and PyTorch backends can do without it)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {list(PRECISIONS)}. Received: {precision!r}")


def resolve_precision(precision):
    """`precision` itself, or for "auto" the Keras policy that is fast on this machine."""
    check_precision(precision)
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if native_bfloat16() else "float32"


def native_bfloat16():
    """Whether the device Keras trains on computes bfloat16 natively."""
    gpu = _gpu_compute_capability()
    if gpu is not None:
        return gpu >= (8, 0)
    return bool(set(_CPU_BF16_FLAGS) & cpu_flags())


def cpu_flags():
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _gpu_compute_capability():
    """(major, minor) of the first GPU the Keras backend sees, or None without one."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        capability = getattr(gpus[0], "compute_capability", None) if gpus else None
        return tuple(int(p) for p in str(capability).split(".")[:2]) if capability else None
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    return tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
