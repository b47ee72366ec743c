"""Data: training sets and patch pipelines, evaluation sets (the data root and the BSDS300
downloader are in `data_sources`).

Images are float32 NHWC in [0, 1]. Training degrades on the fly inside `tf.data`, or, without
TensorFlow (the JAX and PyTorch backends can train without it), in a NumPy `keras.utils.PyDataset`
(`PatchBatches`); `training_batches` picks. Evaluation sets degrade each whole image once with a
seed derived from its index, so every run and every method sees the same noisy images.
"""

import math
import time
from dataclasses import dataclass

import keras
import numpy as np

from keras_resunet import degradations
from keras_resunet.data_sources import resolve_folder
from keras_resunet.io import list_images, read_image, to_uint8
from keras_resunet.precision import tensorflow_available


@dataclass(frozen=True)
class ImageSource:
    """A folder of training photos, read recursively, and its sampling weight.

    Attributes:
        folder: path, absolute or relative to the data root.
        weight: float > 0, the folder's share of the patches relative to the other sources'
            weights; None (every source) draws every image equally often.
    """

    folder: str
    weight: float | None = None


def parse_sources(train_data):
    """`ImageSource`s from a config's `train_data`: a folder, or a list whose entries are
    folders or mappings `{folder: ..., weight: ...}`.

    Raises:
        ValueError: an empty list, an entry of another shape, a weight that is not a positive
            number, weights on some folders only, or a folder listed twice.
    """
    entries = [train_data] if isinstance(train_data, str) else train_data
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ValueError(
            f"`train_data` must be a folder or a non-empty list of folders. Received: {train_data!r}"
        )
    sources = []
    for entry in entries:
        if isinstance(entry, str) and entry:
            sources.append(ImageSource(entry))
            continue
        if (
            not isinstance(entry, dict)
            or set(entry) - {"folder", "weight"}
            or "folder" not in entry
        ):
            raise ValueError(
                "A `train_data` entry is a folder or {folder: PATH, weight: W}. "
                f"Received: {entry!r}"
            )
        weight = entry.get("weight")
        if weight is not None and (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise ValueError(f"A `train_data` weight must be a number > 0. Received: {entry!r}")
        sources.append(ImageSource(str(entry["folder"]), None if weight is None else float(weight)))
    weighted = [source.weight is not None for source in sources]
    if any(weighted) and not all(weighted):
        raise ValueError("Give every `train_data` folder a weight, or none (images drawn equally)")
    folders = [source.folder for source in sources]
    if len(set(folders)) != len(folders):
        raise ValueError(f"A `train_data` folder is listed twice: {folders}")
    return tuple(sources)


@dataclass
class TrainingSet:
    """Training photos held in memory as uint8 (H, W, C) arrays (a quarter of float32's size).

    Attributes:
        images: list of uint8 arrays.
        probabilities: float64 array, each image's chance of giving a patch; None when every
            image is drawn equally often.
        report: one line on what was read (images, folders, memory, time, images dropped).
    """

    images: list
    probabilities: np.ndarray | None
    report: str


def load_training_set(sources, data_root=None, channels=3, patch_size=1):
    """Reads every image under each source folder (recursively) as uint8.

    Images smaller than `patch_size` on either side cannot give a patch: they are dropped and
    counted in the report. Every folder is checked to exist before any image is read.

    Args:
        sources: `ImageSource`s (see `parse_sources`); relative folders are under the data root.
        data_root: see `data_sources.resolve_data_root` (only needed for relative folders).
        channels: 1 or 3.
        patch_size: int, the training patch side.

    Returns:
        `TrainingSet`.

    Raises:
        FileNotFoundError: a folder that does not exist (all of them named).
        ValueError: a folder without images, or no image at least `patch_size` on each side.
        ImageReadError: an unreadable file.
    """
    start = time.time()
    folders = []
    for source in sources:
        folders.append(resolve_folder(source.folder, data_root))
    missing = [str(folder) for folder in folders if not folder.is_dir()]
    if missing:
        raise FileNotFoundError(f"Training image folders not found: {', '.join(missing)}")
    images, shares, dropped = [], [], {}
    for source, folder in zip(sources, folders, strict=True):
        kept = []
        for path in list_images(folder, recursive=True):
            image = to_uint8(read_image(path, channels))
            if min(image.shape[:2]) < patch_size:
                dropped[source.folder] = dropped.get(source.folder, 0) + 1
            else:
                kept.append(image)
        images += kept
        if kept and source.weight is not None:
            shares += [source.weight / len(kept)] * len(kept)
    if not images:
        raise ValueError(f"No training image is at least {patch_size} pixels on each side")
    probabilities = None
    if shares:
        probabilities = np.asarray(shares, dtype=np.float64) / np.sum(shares)
    megabytes = sum(image.nbytes for image in images) / 1e6
    report = (
        f"training data: {len(images)} images from {len(folders)} folder(s), "
        f"{megabytes:.0f} MB as uint8, read in {time.time() - start:.1f} s"
    )
    if dropped:
        counts = ", ".join(f"{count} in {folder}" for folder, count in dropped.items())
        report += f"; dropped {sum(dropped.values())} smaller than the {patch_size}-pixel patch ({counts})"
    return TrainingSet(images, probabilities, report)


def load_images(folder, channels=3, skip_unreadable=False, limit=None, recursive=False):
    """Reads every image in `folder` (and its sub-folders when `recursive`) as float32
    (H, W, channels) arrays in [0, 1].

    Raises:
        FileNotFoundError, ImageReadError, ValueError: see `keras_resunet.io.list_images`.
    """
    paths = list_images(folder, skip_unreadable=skip_unreadable, recursive=recursive)[:limit]
    return [read_image(path, channels) for path in paths], paths


def as_uint8(image):
    """A training image as uint8: uint8 arrays as they are, [0, 1] floats rounded."""
    image = np.asarray(image)
    return image if image.dtype == np.uint8 else to_uint8(image)


def _pack(images):
    """Packs images of different sizes into one flat uint8 buffer plus offsets and shapes, so a
    `tf.data` map can slice any image out by index without Python in the loop."""
    import tensorflow as tf

    arrays = [as_uint8(image) for image in images]
    shapes = np.array([a.shape for a in arrays], dtype=np.int64)
    sizes = np.prod(shapes, axis=1)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    return tf.constant(flat), tf.constant(offsets), tf.constant(shapes)


def patch_dataset(
    images,
    degradation,
    patch_size=32,
    batch_size=64,
    seed=0,
    augment=True,
    shuffle_buffer=1024,
    noise_map=False,
    probabilities=None,
):
    """An infinite `tf.data.Dataset` of (degraded, clean) patch batches for training.

    Each element picks an image (uniformly, or by `probabilities`), crops a random `patch_size` square, applies a random
    flip / 90-degree rotation when `augment`, and degrades it on the fly. Every random choice
    comes from stateless seeds derived from `seed`, so the stream is reproducible.

    Args:
        images: list of (H, W, C) arrays, float32 in [0, 1] or uint8, all with the same C.
        degradation: callable `(images, seed) -> degraded` (see `keras_resunet.degradations`).
        patch_size: int, square patch side; every image must be at least this large.
        batch_size: int.
        seed: int.
        augment: bool, random flips and rotations.
        shuffle_buffer: int, patches shuffled across images.
        noise_map: bool, append each patch's noise level as a constant channel to the degraded
            input (for models built with `noise_level_map=True`); `degradation` must then be a
            `GaussianNoise`, whose `sample` returns the level it drew.
        probabilities: optional per-image chance of being picked (`TrainingSet.probabilities`).

    Returns:
        `tf.data.Dataset` of `(degraded, clean)` float32 tensors (batch, patch, patch, C).
    """
    import tensorflow as tf

    channels = check_patch_source(images, patch_size, probabilities)
    flat, offsets, shapes = _pack(images)
    count = len(images)
    if probabilities is not None:
        cumulative = tf.constant(np.cumsum(probabilities), tf.float64)

    def pick(seed):
        if probabilities is None:
            return tf.random.stateless_uniform([], seed, 0, count, dtype=tf.int64)
        draw = tf.random.stateless_uniform([1], seed, 0, 1, dtype=tf.float64)
        index = tf.searchsorted(cumulative, draw, side="right", out_type=tf.int64)[0]
        return tf.minimum(index, count - 1)  # a draw above a cumsum rounded below 1

    def make_patch(element_seed):
        seeds = tf.random.experimental.stateless_split(element_seed, 4)
        index = pick(seeds[0])
        shape = shapes[index]
        image = tf.reshape(flat[offsets[index] : offsets[index] + tf.reduce_prod(shape)], shape)
        patch = tf.image.stateless_random_crop(image, [patch_size, patch_size, channels], seeds[1])
        patch = tf.cast(patch, tf.float32) / 255.0
        if augment:
            patch = tf.image.stateless_random_flip_left_right(patch, seeds[2])
            turns = tf.random.stateless_uniform([], seeds[3], 0, 4, dtype=tf.int32)
            patch = tf.image.rot90(patch, turns)
        return patch

    if noise_map and not hasattr(degradation, "sample"):
        raise ValueError("`noise_map` needs a degradation with a noise level (GaussianNoise)")

    def degrade(clean, batch_seed):
        if noise_map:
            degraded, sigma = degradation.sample(clean, batch_seed)
            degraded = degradations.with_noise_map(degraded, sigma)
            return tf.ensure_shape(degraded, (*clean.shape[:-1], channels + 1)), clean
        degraded = degradation(clean, batch_seed)
        return tf.ensure_shape(degraded, clean.shape), clean

    patch_seeds = tf.data.Dataset.random(seed=seed).map(_to_seed)
    batch_seeds = tf.data.Dataset.random(seed=seed + 1).map(_to_seed)
    patches = patch_seeds.map(make_patch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    patches = patches.shuffle(shuffle_buffer, seed=seed).batch(batch_size, drop_remainder=True)
    batches = tf.data.Dataset.zip(patches, batch_seeds).map(
        degrade, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return batches.prefetch(tf.data.AUTOTUNE)


def _to_seed(value):
    import tensorflow as tf

    return tf.stack([value, value // 7 + 1])


def check_patch_source(images, patch_size, probabilities=None):
    """The common channel count of `images`, after checking every image can give a patch."""
    if not images:
        raise ValueError("`images` is empty")
    if probabilities is not None:
        probabilities = np.asarray(probabilities)
        if probabilities.shape != (len(images),) or not np.isclose(probabilities.sum(), 1):
            raise ValueError(
                f"`probabilities` needs one entry per image ({len(images)}), summing to 1. "
                f"Received shape {probabilities.shape}, sum {probabilities.sum():.6g}"
            )
    channels = {image.shape[-1] for image in images}
    if len(channels) != 1:
        raise ValueError(f"All images must have the same channel count. Received: {channels}")
    small = [i for i, image in enumerate(images) if min(image.shape[:2]) < patch_size]
    if small:
        raise ValueError(
            f"Images {small[:5]} are smaller than patch_size={patch_size}; crop or drop them."
        )
    return channels.pop()


def training_batches(
    images, degradation, patch_size, batch_size, seed, steps_per_epoch, workers=0, **kwargs
):
    """The training stream for `fit`: `patch_dataset` (tf.data) when TensorFlow is installed,
    else `PatchBatches` (NumPy) of `steps_per_epoch` batches an epoch, drawn by `workers`
    processes when there are any."""
    if tensorflow_available():
        return patch_dataset(images, degradation, patch_size, batch_size, seed=seed, **kwargs)
    if workers:
        kwargs.update(workers=workers, use_multiprocessing=True)
    return PatchBatches(
        images, degradation, patch_size, batch_size, seed, steps_per_epoch, **kwargs
    )


class PatchBatches(keras.utils.PyDataset):
    """`patch_dataset` without TensorFlow: a `keras.utils.PyDataset` of (degraded, clean) NumPy
    batches, `steps_per_epoch` an epoch. Batch i of epoch e draws from a generator seeded with
    (seed, e, i): the stream is reproducible, and a resumed run (a new `seed`) draws new
    patches, as with `patch_dataset`.
    """

    def __init__(
        self,
        images,
        degradation,
        patch_size=32,
        batch_size=64,
        seed=0,
        steps_per_epoch=100,
        augment=True,
        noise_map=False,
        shuffle_buffer=None,
        probabilities=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = check_patch_source(images, patch_size, probabilities)
        if noise_map and not hasattr(degradation, "numpy_sample"):
            raise ValueError("`noise_map` needs a degradation with a noise level (GaussianNoise)")
        self.images = [as_uint8(image) for image in images]
        self.probabilities = probabilities
        self.degradation = degradation
        self.patch_size, self.batch_size, self.seed = patch_size, batch_size, seed
        self.steps_per_epoch, self.augment, self.noise_map = steps_per_epoch, augment, noise_map
        self.epoch = 0

    def __len__(self):
        return self.steps_per_epoch

    def on_epoch_end(self):
        self.epoch += 1

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        size = self.patch_size
        clean = np.empty((self.batch_size, size, size, self.channels), np.float32)
        for slot in range(self.batch_size):
            if self.probabilities is None:
                image = self.images[rng.integers(len(self.images))]
            else:
                image = self.images[rng.choice(len(self.images), p=self.probabilities)]
            top = rng.integers(image.shape[0] - size + 1)
            left = rng.integers(image.shape[1] - size + 1)
            patch = image[top : top + size, left : left + size]
            if self.augment:
                if rng.integers(2):
                    patch = patch[:, ::-1]
                patch = np.rot90(patch, k=rng.integers(4))
            clean[slot] = patch / np.float32(255.0)
        if self.noise_map:
            degraded, sigma = self.degradation.numpy_sample(clean, rng)
            level = np.broadcast_to(sigma[:, None, None, None], (*degraded.shape[:-1], 1))
            degraded = np.concatenate([degraded, level], axis=-1)
        else:
            degraded = self.degradation.numpy(clean, rng)
        return degraded.astype(np.float32), clean


def evaluation_pairs(images, degradation, seed=0, indices=None):
    """Degrades each whole image once with the seed (seed, index); returns (degraded, clean) lists.

    The same `seed` gives the same degraded images, so tables compare methods on equal inputs.
    `indices`: the images' places in their test set when `images` is a part of it (default
    0, 1, ...), so a part gets the noise the whole set would.
    """
    indices = range(len(images)) if indices is None else indices
    degraded = [
        degradations.apply(degradation, image, [seed, int(index)])
        for index, image in zip(indices, images, strict=True)
    ]
    return degraded, list(images)


def evaluation_dataset(images, degradation, seed=0):
    """`evaluation_pairs` as a `tf.data.Dataset` of single-image batches (degraded, clean)."""
    import tensorflow as tf

    degraded, clean = evaluation_pairs(images, degradation, seed)

    def generate():
        yield from zip(degraded, clean)

    channels = images[0].shape[-1]
    spec = tf.TensorSpec((None, None, channels), tf.float32)
    return tf.data.Dataset.from_generator(generate, output_signature=(spec, spec)).batch(1)
