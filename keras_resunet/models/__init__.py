"""Model builders and the registry that maps names to them."""

from keras_resunet.models.autoencoder import build_autoencoder
from keras_resunet.models.dncnn import build_dncnn
from keras_resunet.models.layers import CropToMatch, PadToMultiple, Upsample2x, minimum_size
from keras_resunet.models.rdunet import build_rdunet
from keras_resunet.models.resunet import build_resunet
from keras_resunet.models.unet import build_unet

MODELS = {
    "unet": build_unet,
    "resunet": build_resunet,
    "dncnn": build_dncnn,
    "autoencoder": build_autoencoder,
    "rdunet": build_rdunet,
}


def build_model(name, **kwargs):
    """Builds the registered model `name` with builder keyword arguments `kwargs`.

    Raises:
        ValueError: if `name` is not registered (the message lists the valid names).
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}. Valid names: {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def model_minimum_size(model):
    """Smallest image side `model` accepts, read from its PadToMultiple layer (1 if none)."""
    multiples = [layer.multiple for layer in model.layers if isinstance(layer, PadToMultiple)]
    return max((minimum_size(m) for m in multiples), default=1)


__all__ = [
    "MODELS",
    "CropToMatch",
    "PadToMultiple",
    "Upsample2x",
    "build_autoencoder",
    "build_dncnn",
    "build_model",
    "build_rdunet",
    "build_resunet",
    "build_unet",
    "model_minimum_size",
]
