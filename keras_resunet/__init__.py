"""keras_resunet: ResUNet / UNet image restoration (denoising, deblurring) in Keras 3."""

from keras_resunet.models import MODELS, build_model, build_resunet, build_unet

__version__ = "0.1.0"

__all__ = ["MODELS", "__version__", "build_model", "build_resunet", "build_unet"]
