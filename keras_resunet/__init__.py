"""keras_resunet: ResUNet / UNet image restoration (denoising, deblurring) in Keras 3.

The builders are imported on first use, so that `resunet --help` and argument errors answer
without loading Keras and its backend.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    name: "keras_resunet.models"
    for name in ("MODELS", "build_model", "build_resunet", "build_unet")
}

__all__ = ["MODELS", "__version__", "build_model", "build_resunet", "build_unet"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_resunet' has no attribute {name!r}")
