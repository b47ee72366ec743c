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


def estimate_sigma(image):
    """The Gaussian noise level of an (H, W, C) image in [0, 1]: scikit-image's wavelet estimate
    (median absolute deviation of the finest diagonal wavelet coefficients / 0.6745, Donoho &
    Johnstone 1994), averaged over channels. Texture raises it slightly; a flat image gives 0.

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
    sigma = wavelet_estimate(image, channel_axis=-1, average_sigmas=True)
    return float(np.clip(sigma, 0.0, 1.0))
