"""Restoring images with any denoiser: learned Keras models and classical methods alike.

A denoiser maps a batch of degraded float32 images (N, H, W, C) in [0, 1] to restored images of
the same shape, and has a `name`. On top of that interface this module adds what every method
gets for free: channel adaptation (gray through an RGB model and back), overlapping tiles with
smooth blending (memory bounded whatever the image size), and the 8-fold flip/rotation
self-ensemble.
"""

from pathlib import Path

import numpy as np


class Denoiser:
    """Base of every denoiser. Subclasses override `__call__` (batched) or `restore_one`.

    Attributes:
        name: short method name used in tables ("resunet", "nlm", ...).
        channels: the channel count the method needs (1 or 3), or None for any.
        minimum_size: smallest image side the method accepts.
    """

    def __init__(self, name, channels=None, minimum_size=1):
        self.name = name
        self.channels = channels
        self.minimum_size = minimum_size

    def __call__(self, images):
        images = np.asarray(images, dtype=np.float32)
        return np.stack([self.restore_one(image) for image in images])

    def restore_one(self, image):
        return self(image[None])[0]

    def settings(self):
        """The method's parameters (recorded in results, and keys for caches)."""
        return {}


class KerasDenoiser(Denoiser):
    """A Keras image-to-image model as a denoiser (batched `predict_on_batch`)."""

    def __init__(self, model, name=None):
        from keras_resunet.models import model_minimum_size

        super().__init__(
            name=name or model.name,
            channels=model.input_shape[-1],
            minimum_size=model_minimum_size(model),
        )
        self.model = model

    def __call__(self, images):
        images = np.asarray(images, dtype=np.float32)
        return np.asarray(self.model.predict_on_batch(images), dtype=np.float32)

    def settings(self):
        return {"params": int(self.model.count_params())}


def load_model(path):
    """Loads a `.keras` model for inference: uncompiled training state, XLA off.

    Models trained with `jit_compile=True` store it in their compile config, and `predict`
    would then run through XLA, which on CPU is about 3x slower than plain TensorFlow for
    these convolutional models at photo sizes (measured: 1071 ms vs 322 ms per 481x321 image,
    poster ResUNet, 2 threads).

    Raises:
        FileNotFoundError: if `path` does not exist.
    """
    import keras

    import keras_resunet.models  # noqa: F401  registers the custom layers

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    model = keras.models.load_model(path, compile=False)
    model.compile(jit_compile=False)
    return model


def load_denoiser(spec, sigma=0.1, kernel=None, cache=None):
    """A denoiser from a method name ("nlm", "bm3d"), a shipped model name or a `.keras` path.

    Args:
        spec: see above.
        sigma: noise sigma for the classical methods (learned models ignore it).
        kernel: blur kernel for the classical methods' deblurring variants.
        cache: folder caching the classical methods' outputs (None: no cache).

    Raises:
        ValueError: unknown method or model name (the message lists the valid ones).
        FileNotFoundError: a model path or shipped model file that does not exist.
    """
    from keras_resunet import baselines, pretrained

    if spec in baselines.CLASSICAL:
        return baselines.make_classical(spec, sigma, kernel=kernel, cache=cache)
    path = pretrained.resolve(spec)
    return KerasDenoiser(load_model(path), name=Path(path).stem)


# ---------------------------------------------------------------------------------------------
# Self-ensemble and tiles


def _dihedral(images, index):
    """The `index`-th (0..7) flip/rotation of a batch (N, H, W, C)."""
    flipped = images[:, :, ::-1] if index >= 4 else images
    return np.rot90(flipped, k=index % 4, axes=(1, 2))


def _undo_dihedral(images, index):
    unrotated = np.rot90(images, k=-(index % 4), axes=(1, 2))
    return unrotated[:, :, ::-1] if index >= 4 else unrotated


def self_ensemble(denoiser, images):
    """Mean of the restorations of the 8 flips/rotations of `images`, each transformed back."""
    images = np.asarray(images, dtype=np.float32)
    total = np.zeros_like(images)
    for index in range(8):
        restored = denoiser(np.ascontiguousarray(_dihedral(images, index)))
        total += _undo_dihedral(restored, index)
    return total / 8


class SelfEnsemble(Denoiser):
    """`denoiser` averaged over the 8 flips/rotations of its input (8x its time), as a denoiser
    of its own: for tables that report a model with and without the ensemble."""

    def __init__(self, denoiser):
        super().__init__(f"{denoiser.name}_x8", denoiser.channels, denoiser.minimum_size)
        self.denoiser = denoiser

    def __call__(self, images):
        return self_ensemble(self.denoiser, images)

    def settings(self):
        return {**self.denoiser.settings(), "self_ensemble": 8}


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
