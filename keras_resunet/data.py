"""Data: dataset roots, the BSDS300 downloader, training patch pipelines and evaluation sets.

Images are float32 NHWC in [0, 1]. Training degrades on the fly inside `tf.data`, or, without
TensorFlow (the JAX and PyTorch backends can train without it), in a NumPy `keras.utils.PyDataset`
(`PatchBatches`); `training_batches` picks. Evaluation sets degrade each whole image once with a
seed derived from its index, so every run and every method sees the same noisy images.
"""

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import keras
import numpy as np

from keras_resunet import degradations
from keras_resunet.io import list_images, read_image

DATA_ROOT_ENV = "KERAS_RESUNET_DATA"
BSDS300_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/BSDS300-images.tgz"
# SHA-256 over the sorted "relative/path sha256" lines of the 300 extracted images, computed on
# the copy in ../shared/datasets/BSDS300 (see `tree_digest`); it checks what was extracted.
BSDS300_IMAGES_DIGEST = "777515b52731e92d655edee528e2c50a93ba825bd886ec817de84fe13877e5a3"


def default_data_root():
    """`../shared/datasets` beside the project checkout, or None when absent."""
    candidate = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return candidate if candidate.is_dir() else None


def resolve_data_root(data_root=None):
    """The dataset root: the explicit argument, else $KERAS_RESUNET_DATA, else ../shared/datasets.

    Raises:
        FileNotFoundError: if the chosen root does not exist, or no root is found.
    """
    for source, value in (("argument", data_root), (DATA_ROOT_ENV, os.environ.get(DATA_ROOT_ENV))):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"Data root from {source} does not exist: {path}")
            return path
    fallback = default_data_root()
    if fallback is None:
        raise FileNotFoundError(
            f"No dataset root: pass --data-root, set ${DATA_ROOT_ENV}, or place the data in "
            "../shared/datasets (BSDS300 can be fetched with `resunet download-bsds300`)."
        )
    return fallback


def tree_digest(folder, suffixes=(".jpg",)):
    """SHA-256 of the sorted 'relative/path file-sha256' lines of files under `folder`."""
    folder = Path(folder)
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes):
        lines.append(f"{path.relative_to(folder).as_posix()} {_file_sha256(path)}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def download_bsds300(destination, url=BSDS300_URL, expected_digest=BSDS300_IMAGES_DIGEST):
    """Downloads and extracts BSDS300 to `destination/BSDS300`, verifying the image digest.

    Extraction happens in a temporary folder that is renamed into place only after the check,
    so an interrupted or corrupt download leaves nothing behind.

    Returns:
        Path of the extracted `BSDS300` folder.

    Raises:
        FileExistsError: if `destination/BSDS300` already exists.
        ValueError: if the images' digest does not match.
    """
    destination = Path(destination)
    target = destination / "BSDS300"
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination) as scratch:
        archive = Path(scratch) / "BSDS300-images.tgz"
        with urllib.request.urlopen(url) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        extracted = Path(scratch) / "BSDS300"
        digest = tree_digest(extracted / "images")
        if digest != expected_digest:
            raise ValueError(f"BSDS300 digest mismatch: got {digest}, expected {expected_digest}")
        extracted.rename(target)
    return target


def _file_sha256(path):
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def load_images(folder, channels=3, skip_unreadable=False, limit=None):
    """Reads every image in `folder` as float32 (H, W, channels) arrays in [0, 1].

    Raises:
        FileNotFoundError, ImageReadError, ValueError: see `keras_resunet.io.list_images`.
    """
    paths = list_images(folder, skip_unreadable=skip_unreadable)[:limit]
    return [read_image(path, channels) for path in paths], paths


def _pack(images):
    """Packs images of different sizes into one flat uint8 buffer plus offsets and shapes, so a
    `tf.data` map can slice any image out by index without Python in the loop."""
    import tensorflow as tf

    arrays = [np.round(np.clip(image, 0, 1) * 255).astype(np.uint8) for image in images]
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
):
    """An infinite `tf.data.Dataset` of (degraded, clean) patch batches for training.

    Each element picks an image uniformly, crops a random `patch_size` square, applies a random
    flip / 90-degree rotation when `augment`, and degrades it on the fly. Every random choice
    comes from stateless seeds derived from `seed`, so the stream is reproducible.

    Args:
        images: list of float32 (H, W, C) arrays in [0, 1], all with the same C.
        degradation: callable `(images, seed) -> degraded` (see `keras_resunet.degradations`).
        patch_size: int, square patch side; every image must be at least this large.
        batch_size: int.
        seed: int.
        augment: bool, random flips and rotations.
        shuffle_buffer: int, patches shuffled across images.
        noise_map: bool, append each patch's noise level as a constant channel to the degraded
            input (for models built with `noise_level_map=True`); `degradation` must then be a
            `GaussianNoise`, whose `sample` returns the level it drew.

    Returns:
        `tf.data.Dataset` of `(degraded, clean)` float32 tensors (batch, patch, patch, C).
    """
    import tensorflow as tf

    channels = _check_patch_source(images, patch_size)
    flat, offsets, shapes = _pack(images)
    count = len(images)

    def make_patch(element_seed):
        seeds = tf.random.experimental.stateless_split(element_seed, 4)
        index = tf.random.stateless_uniform([], seeds[0], 0, count, dtype=tf.int64)
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


def _check_patch_source(images, patch_size):
    """The common channel count of `images`, after checking every image can give a patch."""
    if not images:
        raise ValueError("`images` is empty")
    channels = {image.shape[-1] for image in images}
    if len(channels) != 1:
        raise ValueError(f"All images must have the same channel count. Received: {channels}")
    small = [i for i, image in enumerate(images) if min(image.shape[:2]) < patch_size]
    if small:
        raise ValueError(
            f"Images {small[:5]} are smaller than patch_size={patch_size}; crop or drop them."
        )
    return channels.pop()


def training_batches(images, degradation, patch_size, batch_size, seed, steps_per_epoch, **kwargs):
    """The training stream for `fit`: `patch_dataset` (tf.data) when TensorFlow is installed,
    else `PatchBatches` (NumPy) of `steps_per_epoch` batches an epoch."""
    if degradations.tensorflow_available():
        return patch_dataset(images, degradation, patch_size, batch_size, seed=seed, **kwargs)
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = _check_patch_source(images, patch_size)
        if noise_map and not hasattr(degradation, "numpy_sample"):
            raise ValueError("`noise_map` needs a degradation with a noise level (GaussianNoise)")
        self.images = [np.round(np.clip(image, 0, 1) * 255).astype(np.uint8) for image in images]
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
            image = self.images[rng.integers(len(self.images))]
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
