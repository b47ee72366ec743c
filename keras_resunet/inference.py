"""Restoring images with any denoiser: learned Keras models and classical methods alike.

On top of the `Denoiser` interface (`keras_resunet.denoisers`) this module adds what every method
gets for free: channel adaptation (gray through an RGB model and back), overlapping tiles with
smooth blending (memory bounded whatever the image size), the 8-fold flip/rotation
self-ensemble, and `load_denoiser`, which resolves method names, shipped model names and paths.
"""

from pathlib import Path

import numpy as np

from keras_resunet import baselines, degradations, pretrained
from keras_resunet.denoisers import (
    Denoiser,
    KerasDenoiser,
    SelfEnsemble,
    load_model,
    self_ensemble,
)

# the Denoiser API is re-exported here for users (one import for loading and restoring); the
# library itself imports it from `denoisers`, where it is defined


def load_denoiser(spec, degradation=None, cache=None):
    """A denoiser from a method name ("nlm", "bm3d"), a shipped model name or a `.keras` path.

    Args:
        spec: see above.
        degradation: what it will restore (`degradations.make_degradation`): its noise level is
            the sigma of the methods that take one (classical methods, noise-level-map models;
            models trained for one level ignore it), its blur the kernel of the classical
            methods' deblurring variants. None: Gaussian noise of sigma 0.1.
        cache: folder caching the classical methods' outputs (None: no cache).

    Raises:
        ValueError: unknown method or model name (the message lists the valid ones), or a
            model that is not an image-to-image restoration model.
        FileNotFoundError: a model path or shipped model file that does not exist.
    """
    sigma, kernel = 0.1, None
    if degradation is not None:
        sigma = degradations.noise_level(degradation)
        kernel = degradations.blur_kernel(degradation)
        if sigma is None:
            raise ValueError("`degradation` must have a fixed noise level (not a range)")
    if spec in baselines.CLASSICAL:
        return baselines.make_classical(spec, sigma, kernel=kernel, cache=cache)
    path = pretrained.resolve(spec)
    return KerasDenoiser(load_model(path), name=Path(path).stem, sigma=sigma)


def _tile_starts(length, tile, overlap):
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return [*starts, length - tile]


def _blend_window(length, overlap):
    """1 inside, ramping linearly towards (but never reaching) 0 over `overlap` pixels at each
    end, so that overlapping tiles cross-fade instead of meeting at a seam."""
    if overlap == 0:
        return np.ones(length, np.float32)
    position = np.arange(length, dtype=np.float32) + 0.5
    return np.minimum(1.0, np.minimum(position, length - position) / overlap)


def restore_tiled(restore, image, tile, overlap, batch_size=4):
    """Restores an (H, W, C) image tile by tile and blends the tiles.

    Tiles are `tile` x `tile` (fewer where the image is smaller), overlap by at least
    `overlap` pixels, and are weighted by a window that fades out over the overlap. Only the
    output, a weight map and `batch_size` tiles are held, so memory grows with the image, not
    with the model's activations on it.

    Args:
        restore: callable batch (N, h, w, C) -> batch.
        image: float32 (H, W, C).
        tile: tile side, > 2 * overlap.
        overlap: pixels shared by neighbouring tiles (>= the model's receptive radius for
            seamless output; 32 suits the shipped models).
        batch_size: tiles restored together.
    """
    if tile <= 2 * overlap or overlap < 0:
        raise ValueError(
            f"`tile` must exceed twice `overlap` (>= 0). Received: tile={tile}, overlap={overlap}"
        )
    height, width, channels = image.shape
    tile_h, tile_w = min(tile, height), min(tile, width)
    window = np.outer(_blend_window(tile_h, overlap), _blend_window(tile_w, overlap))[..., None]
    output = np.zeros((height, width, channels), np.float32)
    weight = np.zeros((height, width, 1), np.float32)
    corners = [
        (top, left)
        for top in _tile_starts(height, tile, overlap)
        for left in _tile_starts(width, tile, overlap)
    ]
    for first in range(0, len(corners), batch_size):
        group = corners[first : first + batch_size]
        batch = np.stack([image[t : t + tile_h, l : l + tile_w] for t, l in group])
        for (top, left), restored in zip(group, restore(batch)):
            output[top : top + tile_h, left : left + tile_w] += restored * window
            weight[top : top + tile_h, left : left + tile_w] += window
    return output / weight


__all__ = [
    "Denoiser",
    "KerasDenoiser",
    "SelfEnsemble",
    "load_denoiser",
    "load_model",
    "restore_image",
    "restore_tiled",
    "self_ensemble",
]


def restore_image(denoiser, image, tile=None, overlap=32, ensemble=False, batch_size=4):
    """Restores one (H, W, C) float32 image in [0, 1]; returns float32 (H, W, C), clipped.

    Gray images go through an RGB model as three equal channels (averaged back); color images
    go through a gray model one channel at a time.

    Args:
        denoiser: a `Denoiser`.
        image: (H, W, 1) or (H, W, 3).
        tile: None or 0 for the whole image at once, else the tile side (see `restore_tiled`).
        overlap: tile overlap in pixels.
        ensemble: average the 8 flips/rotations (8x slower).
        batch_size: tiles per batch.

    Raises:
        ValueError: if the image is smaller than the denoiser accepts, or has 2 or 4+ channels.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"Expected an (H, W, 1) or (H, W, 3) image. Received shape {image.shape}")
    height, width, channels = image.shape
    if min(height, width) < denoiser.minimum_size:
        raise ValueError(
            f"image of {height}x{width} is smaller than the {denoiser.minimum_size}x"
            f"{denoiser.minimum_size} minimum of {denoiser.name}"
        )
    wanted = denoiser.channels or channels
    if wanted == channels:
        planes = [image]
    elif wanted == 3:
        planes = [np.repeat(image, 3, axis=-1)]
    else:
        planes = [image[..., c : c + 1] for c in range(channels)]

    def restore(batch):
        return self_ensemble(denoiser, batch) if ensemble else denoiser(batch)

    restored = []
    for plane in planes:
        if tile and max(height, width) > tile:
            restored.append(restore_tiled(restore, plane, tile, overlap, batch_size))
        else:
            restored.append(restore(plane[None])[0])
    if wanted == channels:
        result = restored[0]
    elif wanted == 3:
        result = restored[0].mean(axis=-1, keepdims=True)
    else:
        result = np.concatenate(restored, axis=-1)
    return np.clip(result, 0, 1).astype(np.float32)
