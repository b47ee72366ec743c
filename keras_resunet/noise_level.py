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
    """The Gaussian noise level (per channel) of an (H, W, C) image in [0, 1]: scikit-image's
    wavelet estimate (median absolute deviation of the finest diagonal wavelet coefficients /
    0.6745, Donoho & Johnstone 1994), corrected for clipping.

    Colour images are measured in luma, then scaled back (/ 0.6686): JPEG and video codecs keep
    luma at full resolution but average chroma over 2x2 blocks, which removes most of the chroma
    noise from the finest scale, so an estimate on each RGB channel reads such photos about a
    third low. Other channel counts: the mean over channels. An image within [0, 1] may have had
    its noise clipped (a saved photo: dark and bright parts lose part of theirs), which lowers
    the measure; `clipping_corrected` finds the level whose simulated clipping gives what was
    measured. Texture raises the estimate slightly; a flat image gives 0.

    Raises:
        ValueError: for an image under 16 pixels on a side, too small to estimate from (give
            the level with --sigma).
    """
    image = np.asarray(image, dtype=np.float32)
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"image of {image.shape[0]}x{image.shape[1]} is too small to estimate its noise "
            "level: give it with --sigma"
        )
    sigma = wavelet_sigma(image)
    if 0 < sigma and image.min() >= 0 and image.max() <= 1:  # values outside: never clipped
        sigma = clipping_corrected(image, sigma)
    return float(np.clip(sigma, 0.0, 1.0))


def wavelet_sigma(image):
    """The wavelet estimate of an image's noise level: colour in luma, scaled back; other
    channel counts averaged over channels. No clipping correction."""
    from skimage.restoration import estimate_sigma as wavelet_estimate

    if image.ndim == 3 and image.shape[-1] == 3:
        return float(wavelet_estimate(image @ LUMA) / LUMA_GAIN)
    channel_axis = -1 if image.ndim == 3 else None
    return float(wavelet_estimate(image, channel_axis=channel_axis, average_sigmas=True))


# The clipping correction: the image smoothed by a Gaussian of this width (pixels) stands for
# the clean one; fixed-point steps until the level moves less than TOLERANCE (/255: 0.026).
CLIP_SMOOTHING = 1.0
CLIP_STEPS = 8
CLIP_TOLERANCE = 1e-4
# Larger images are simulated on a mosaic of TILE x TILE tiles spread evenly over them, this
# many pixels in all: the share of pixels near black or white is what matters, and memory stays
# bounded.
CLIP_PIXELS = 4_000_000
TILE = 128


def _mosaic(image):
    """`image`, or for one over CLIP_PIXELS a grid of evenly spaced tiles of it, side by side."""
    height, width = image.shape[:2]
    count = CLIP_PIXELS // (TILE * TILE)
    if height * width <= CLIP_PIXELS or min(height, width) < TILE:
        return image
    rows = int(np.clip(round(np.sqrt(count * height / width)), 1, height // TILE))
    columns = int(np.clip(count // rows, 1, width // TILE))
    tops = np.linspace(0, height - TILE, rows).astype(int)
    lefts = np.linspace(0, width - TILE, columns).astype(int)
    return np.concatenate(
        [
            np.concatenate([image[top : top + TILE, left : left + TILE] for left in lefts], 1)
            for top in tops
        ]
    )


def clipping_corrected(image, measured):
    """The noise level sigma whose clipped simulation measures `measured`: seeded noise of level
    sigma is added to the smoothed image and clipped to [0, 1] as saving clips it, and the same
    estimator reads the result. Where nothing is near black or white the simulation measures
    sigma itself and the estimate is unchanged; near them it measures less, and sigma grows to
    match. The seed is fixed, so an image always gives the same estimate. Images over
    CLIP_PIXELS are simulated on a mosaic of evenly spaced tiles of theirs."""
    from scipy.ndimage import gaussian_filter

    image = _mosaic(image)
    smoothing = (CLIP_SMOOTHING, CLIP_SMOOTHING) + (0,) * (image.ndim - 2)
    base = gaussian_filter(image, sigma=smoothing)
    unit = np.random.default_rng(0).standard_normal(image.shape, dtype=np.float32)
    sigma = measured
    for _ in range(CLIP_STEPS):
        kept = wavelet_sigma(np.clip(base + sigma * unit, 0, 1)) / sigma  # at most about 1
        # a fifth kept at the least: beyond that, the image holds too little to go on
        updated = measured / min(max(kept, 0.2), 1.0)
        if abs(updated - sigma) < CLIP_TOLERANCE:
            return updated
        sigma = updated
    return sigma
