"""Noise levels: checking a given sigma, and estimating it from a photo for methods that need it
and were not told. Light to import (no Keras or TensorFlow), so arguments are checked at once."""

import numpy as np


def check_sigma(sigma):
    """Raises ValueError unless `sigma` is a finite number in [0, 1] (the [0, 1] image scale)."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"`sigma` must be a number. Received: sigma={sigma!r}") from None
    if not 0 <= value <= 1:  # also false for NaN
        raise ValueError(
            f"`sigma` must be in [0, 1] (the noise standard deviation on [0, 1] images; "
            f"25/255 = 0.098). Received: sigma={sigma!r}"
        )
    return value


# Sides below this leave too few wavelet coefficients for a stable median.
MIN_SIDE = 16
# Rec. 601 luma weights. Noise of level sigma drawn independently in R, G and B has level
# sigma * |LUMA| (0.6686 sigma) in luma.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
LUMA_GAIN = float(np.linalg.norm(LUMA))


def estimate_sigma(image):
    """The Gaussian noise level of an (H, W, C) image in [0, 1], per channel: scikit-image's
    wavelet estimate (median absolute deviation of the finest diagonal wavelet coefficients /
    0.6745, Donoho & Johnstone 1994). Colour images are measured in luma, then scaled back
    (/ 0.6686): JPEG and video codecs keep luma at full resolution but average chroma over
    2x2 blocks, which removes most of the chroma noise from the finest scale, so an estimate
    on each RGB channel reads such photos about a third low. Other channel counts: the mean
    over channels. Texture raises the estimate slightly; a flat image gives 0.

    Raises:
        ValueError: for an image under 16 pixels on a side, too small to estimate from (give
            the level with --sigma).
    """
    from skimage.restoration import estimate_sigma as wavelet_estimate

    image = np.asarray(image, dtype=np.float32)
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"image of {image.shape[0]}x{image.shape[1]} is too small to estimate its noise "
            "level: give it with --sigma"
        )
    if image.ndim == 3 and image.shape[-1] == 3:
        sigma = wavelet_estimate(image @ LUMA) / LUMA_GAIN
    else:
        sigma = wavelet_estimate(
            image, channel_axis=-1 if image.ndim == 3 else None, average_sigmas=True
        )
    return float(np.clip(sigma, 0.0, 1.0))
