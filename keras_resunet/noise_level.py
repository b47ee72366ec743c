"""Noise levels: checking a given sigma, and estimating it from a photo for methods that need it
and were not told. Light to import (no Keras or TensorFlow), so arguments are checked at once."""

import functools

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
_MAD = 0.6744897501960817  # the median of |N(0, 1)|


# A lossy codec under this quality quantises the noise of flat areas away (chosen on
# Photos1k/val, results/noise_estimate): such photos are measured over the whole image.
FINE_QUALITY = 90


def measured_whole(stored_quality):
    """Whether `estimate_sigma` measures an image of this `stored_quality` over the whole image
    (a lossy codec under FINE_QUALITY, or of unknown quality) rather than its flattest blocks."""
    return stored_quality is not None and stored_quality < FINE_QUALITY


def estimate_sigma(image, stored_quality=None):
    """The Gaussian noise level (per channel) of an (H, W, C) image in [0, 1]: the wavelet
    estimate (median absolute deviation of the finest diagonal wavelet coefficients / 0.6745,
    Donoho & Johnstone 1994) of the image's flattest blocks, corrected for clipping.

    Texture raises a median over the whole image (a clean photo reads about 5/255, one with
    noise of 5/255 about 9), so the image is cut into blocks and the estimate is a low
    percentile of the blocks' own estimates, scaled to read sigma on pure noise, or the whole
    image's where that is lower (`flat_block_sigma`). A photo a lossy codec stored at a quality
    that quantises fine detail away (`stored_quality` under FINE_QUALITY: JPEG under quality 90;
    0, the quality unknown: HEIC, AVIF, lossy WebP, JPEG XL) has lost its noise in exactly those
    flat blocks; it is measured over the whole image (`wavelet_sigma`), where the texture left
    makes up for part of what the codec removed.

    Colour images are measured in luma, then scaled back (/ 0.6686): JPEG and video codecs keep
    luma at full resolution but average chroma over 2x2 blocks, which removes most of the chroma
    noise from the finest scale. Other channel counts: the mean over channels. An image within
    [0, 1] may have had its noise clipped (a saved photo: dark and bright parts lose part of
    theirs), which lowers the measure; `clipping_corrected` finds the level whose simulated
    clipping gives what was measured. A flat image gives 0.

    Args:
        image: (H, W, C) or (H, W) pixels in [0, 1] (values outside: noise never clipped).
        stored_quality: the quality of the lossy codec the image was decoded from
            (`io.ImageFile.stored_quality`); None for lossless files and unsaved images.

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
    measure = wavelet_sigma if measured_whole(stored_quality) else flat_block_sigma
    sigma = measure(image)
    if 0 < sigma and image.min() >= 0 and image.max() <= 1:  # values outside: never clipped
        sigma = clipping_corrected(image, sigma, measure)
    return float(np.clip(sigma, 0.0, 1.0))


def _channels(image):
    """The 2-D planes an estimate measures, and the gain of noise into them: luma for colour,
    else each channel."""
    if image.ndim == 2:
        return [image], 1.0
    if image.shape[-1] == 3:
        return [image @ LUMA], LUMA_GAIN
    return [image[..., c] for c in range(image.shape[-1])], 1.0


def _detail(plane):
    """|The finest diagonal wavelet coefficients| of a plane (db2, as scikit-image's estimate)."""
    import pywt

    return np.abs(pywt.dwt2(plane, "db2")[1][2])


def _median_level(detail):
    """The MAD estimate of coefficients, exact zeros left out (as scikit-image's)."""
    nonzero = detail[detail > 0]
    return float(np.median(nonzero) / _MAD) if nonzero.size else 0.0


def wavelet_sigma(image):
    """The wavelet estimate of an image's noise level over the whole image: colour in luma,
    scaled back; other channel counts averaged over channels. No clipping correction."""
    planes, gain = _channels(image)
    return float(np.mean([_median_level(_detail(plane)) for plane in planes]) / gain)


# The flattest blocks: the finest diagonal wavelet coefficients cut into BLOCK x BLOCK blocks
# (2 * BLOCK pixels a side), the FLAT_PERCENTILE-th percentile of the blocks' estimates (chosen
# on Photos1k/val). Left out: blocks mostly of exact zeros (constant areas hold no noise) and
# blocks with over MAX_CLIPPED of their pixels at 0 or 1, whose clipped noise reads low (a low
# percentile would pick them). With fewer than MIN_BLOCKS blocks left, the whole-image estimate.
BLOCK = 16
FLAT_PERCENTILE = 10
MAX_CLIPPED = 0.02
MIN_BLOCKS = 16


def _blocks(array, side):
    """`array`'s whole side x side blocks, one per row."""
    rows, columns = array.shape[0] // side, array.shape[1] // side
    array = array[: rows * side, : columns * side]
    blocks = array.reshape(rows, side, columns, side).swapaxes(1, 2)
    return blocks.reshape(rows * columns, side * side)  # explicit: there may be none


def _block_percentile(detail, clipped_share):
    """The FLAT_PERCENTILE-th percentile of the MAD estimates of a plane's blocks of finest
    diagonal wavelet coefficients (`detail`), or None with fewer than MIN_BLOCKS usable blocks.
    `clipped_share`: the share of each block's pixels at 0 or 1 in any channel."""
    detail = _blocks(detail, BLOCK)
    count = min(len(detail), len(clipped_share))
    detail, clipped_share = detail[:count], clipped_share[:count]
    usable = (np.count_nonzero(detail, axis=1) > detail.shape[1] // 2) & (
        clipped_share <= MAX_CLIPPED
    )
    if usable.sum() < MIN_BLOCKS:
        return None
    detail = np.where(detail[usable] > 0, detail[usable], np.nan)  # zeros left out, as skimage
    return float(np.percentile(np.nanmedian(detail, axis=1), FLAT_PERCENTILE) / _MAD)


@functools.cache
def _block_gain():
    """What the block percentile reads on seeded unit Gaussian noise (below 1: the lowest
    blocks of pure noise read low by chance)."""
    unit = np.random.default_rng(0).standard_normal((64 * BLOCK, 64 * BLOCK), dtype=np.float32)
    return _block_percentile(_detail(unit), np.zeros(64 * 64))


def _levels(image):
    """(whole-image level, flattest blocks' level or None) from one transform per plane."""
    planes, gain = _channels(image)
    clipped = (image <= 0) | (image >= 1)
    if image.ndim == 3:
        clipped = clipped.any(axis=-1)
    clipped_share = _blocks(clipped, 2 * BLOCK).mean(axis=1)
    details = [_detail(plane) for plane in planes]
    whole = float(np.mean([_median_level(detail) for detail in details]) / gain)
    blocks = [_block_percentile(detail, clipped_share) for detail in details]
    if any(level is None for level in blocks):
        return whole, None
    return whole, float(np.mean(blocks) / _block_gain() / gain)


def block_sigma(image):
    """The noise level of an image's flattest blocks (colour in luma, scaled back; other channel
    counts averaged over channels), or None where too few blocks are usable. No clipping
    correction."""
    return _levels(image)[1]


def flat_block_sigma(image):
    """The measure of `estimate_sigma` for most photos: the flattest blocks' level or the whole
    image's, whichever is lower (leaving clipped blocks out may leave only textured ones).
    No clipping correction."""
    whole, blocks = _levels(image)
    return whole if blocks is None else min(blocks, whole)


# The clipping correction: the image's local means (a Gaussian of this width, pixels) give the
# clean image, each unclipped for the level tried (`unclipped_mean`); fixed-point steps until the
# level moves less than TOLERANCE (/255: 0.026).
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


# The clean levels `unclipped_mean` interpolates between.
_CLEAN_LEVELS = np.linspace(0.0, 1.0, 257)


def clipped_mean(clean, sigma):
    """The mean of clip(clean + sigma * Z, 0, 1), Z standard normal: noise clipped at black and
    white lifts dark areas and darkens bright ones."""
    from scipy.special import ndtr

    below, above = -clean / sigma, (1 - clean) / sigma
    density = np.exp(-0.5 * below**2) - np.exp(-0.5 * above**2)
    return (
        clean * (ndtr(above) - ndtr(below))
        + sigma * density / np.sqrt(2 * np.pi)
        + (1 - ndtr(above))
    )


def unclipped_mean(mean, sigma):
    """The clean level in [0, 1] whose noise of level sigma, clipped to [0, 1], averages `mean`
    (the inverse of `clipped_mean`, which rises with the clean level)."""
    levels = clipped_mean(_CLEAN_LEVELS, sigma)
    return np.interp(mean, levels, _CLEAN_LEVELS).astype(np.float32)


def clipping_corrected(image, measured, measure=wavelet_sigma):
    """The noise level sigma whose clipped simulation measures `measured`: seeded noise of level
    sigma is added to the clean image as the noisy one gives it and clipped to [0, 1] as saving
    clips it, and the same estimator (`measure`) reads the result. The clean image: the noisy
    one's local means, each taken back to the clean level whose clipped noise of level sigma
    averages it (a smoothed noisy image alone keeps black areas lifted off 0 and under-simulates
    their clipping). Where nothing is near black or white the simulation measures sigma itself
    and the estimate is unchanged; near them it measures less, and sigma grows to match. The
    seed is fixed, so an image always gives the same estimate. Images over CLIP_PIXELS are
    simulated on a mosaic of evenly spaced tiles of theirs."""
    from scipy.ndimage import gaussian_filter

    image = _mosaic(image)
    smoothing = (CLIP_SMOOTHING, CLIP_SMOOTHING) + (0,) * (image.ndim - 2)
    local_mean = gaussian_filter(image, sigma=smoothing)
    unit = np.random.default_rng(0).standard_normal(image.shape, dtype=np.float32)
    sigma = measured
    for _ in range(CLIP_STEPS):
        clean = unclipped_mean(local_mean, sigma)
        kept = measure(np.clip(clean + sigma * unit, 0, 1)) / sigma  # at most about 1
        # a fifth kept at the least: beyond that, the image holds too little to go on
        updated = measured / min(max(kept, 0.2), 1.0)
        if abs(updated - sigma) < CLIP_TOLERANCE:
            return updated
        sigma = updated
    return sigma
