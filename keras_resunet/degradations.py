"""Seeded image degradations: additive Gaussian noise, blur kernels, blur + noise.

Images are float32 in [0, 1], shaped (H, W, C) or (N, H, W, C). Every random degradation takes an
explicit stateless seed (a shape-[2] int tensor), so the same seed gives the same noise inside
`tf.data`, on batches and in evaluation sets; there is no global RNG state.

Calling a degradation runs TensorFlow ops (for `tf.data`). Without TensorFlow (the JAX and
PyTorch backends can train without it), `degradation.numpy(images, rng)` does the same with a
NumPy generator, and `apply` picks whichever is available: the same kind of noise, not the
same draws.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_resunet.kernels import (  # noqa: F401  part of this module's interface
    KERNELS,
    box_kernel,
    digit_kernel,
    gaussian_kernel,
    load_kernel,
    make_kernel,
    motion_kernel,
    normalize_kernel,
)
from keras_resunet.noise_level import check_sigma
from keras_resunet.precision import tensorflow_available

# ---------------------------------------------------------------------------------------------
# Degradations: callables `(images, seed) -> degraded`.


def _tensorflow():
    import tensorflow as tf  # only where TensorFlow ops run: the NumPy paths need none

    return tf


def apply(degradation, images, seed):
    """Degrades `images` with the 2-int `seed` and returns a float32 NumPy array: through
    TensorFlow's stateless ops when TensorFlow is installed (the seeded evaluation sets of
    every table), else through `degradation.numpy`."""
    images = np.asarray(images, dtype=np.float32)
    if tensorflow_available():
        tf = _tensorflow()
        return np.asarray(degradation(tf.constant(images), tf.constant(seed, tf.int64)))
    rng = np.random.default_rng([int(value) for value in seed])
    return np.asarray(degradation.numpy(images, rng), dtype=np.float32)


def _numpy_batch(images):
    images = np.asarray(images, dtype=np.float32)
    if images.ndim not in (3, 4):
        raise ValueError(f"Images must be (H, W, C) or (N, H, W, C). Received shape {images.shape}")
    return (images[None], True) if images.ndim == 3 else (images, False)


def _as_batch(images):
    tf = _tensorflow()
    images = tf.convert_to_tensor(images, dtype=tf.float32)
    if images.shape.rank == 3:
        return images[None], True
    if images.shape.rank == 4:
        return images, False
    raise ValueError(f"Images must be (H, W, C) or (N, H, W, C). Received shape {images.shape}")


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise, not clipped by default (the reference protocol).

    Args:
        sigma: float >= 0, the noise standard deviation on the [0, 1] scale (0.1 = 25.5/255).
        sigma_range: optional (low, high); if given, each image draws its sigma from it (blind
            denoising, or training a noise-level-map model) and `sigma` is ignored.
        sigma_power: how the sigma is drawn from `sigma_range`: low + (high - low) * u ** power
            with u uniform in [0, 1). 1 draws uniformly; 2 draws half the images from the
            lowest quarter of the range (a training recipe that weighs low noise more).
        clip: clip every noisy image to [0, 1], as saving it as an 8-bit photo would. The noise
            is then no longer zero-mean near black and white.
        clip_fraction: share of images (drawn per image) clipped to [0, 1] and rounded to 8-bit
            levels, as noisy photos saved in 8 bits are; the others keep unclipped noise.
    """

    sigma: float = 0.1
    sigma_range: tuple | None = None
    clip: bool = False
    clip_fraction: float = 0.0
    sigma_power: float = 1.0

    def __post_init__(self):
        if self.sigma_range is None:
            check_sigma(self.sigma)
        else:
            low, high = self.sigma_range
            if not 0 <= low <= high:
                raise ValueError(
                    f"`sigma_range` must be (low, high) with 0 <= low <= high. "
                    f"Received: sigma_range={self.sigma_range}"
                )
        if not 0 <= self.clip_fraction <= 1:
            raise ValueError(
                f"`clip_fraction` must be in [0, 1]. Received: clip_fraction={self.clip_fraction}"
            )
        if not (isinstance(self.sigma_power, int | float) and 0 < self.sigma_power < math.inf):
            raise ValueError(
                f"`sigma_power` must be a number > 0. Received: sigma_power={self.sigma_power!r}"
            )

    def __call__(self, images, seed):
        return self.sample(images, seed)[0]

    def sample(self, images, seed):
        """Returns (noisy images, the sigma of each image as an (N,) or () tensor)."""
        tf = _tensorflow()
        batch, single = _as_batch(images)
        # The same two seeds as plain noise always drew, so seeded evaluation sets stay as
        # they were; the clip choice gets a third derived from them.
        noise_seed, sigma_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        clip_seed = tf.random.experimental.stateless_fold_in(sigma_seed, 1)
        count = tf.shape(batch)[0]
        if self.sigma_range is None:
            sigma = tf.fill([count], tf.constant(self.sigma, tf.float32))
        else:
            low, high = self.sigma_range
            if self.sigma_power == 1:  # the draw uniform noise always made
                sigma = tf.random.stateless_uniform([count], sigma_seed, low, high)
            else:
                drawn = tf.random.stateless_uniform([count], sigma_seed)
                sigma = low + (high - low) * drawn**self.sigma_power
        noisy = batch + sigma[:, None, None, None] * tf.random.stateless_normal(
            tf.shape(batch), noise_seed
        )
        if self.clip:
            noisy = tf.clip_by_value(noisy, 0.0, 1.0)
        elif self.clip_fraction > 0:
            saved = tf.round(tf.clip_by_value(noisy, 0.0, 1.0) * 255.0) / 255.0
            chosen = tf.random.stateless_uniform([count], clip_seed) < self.clip_fraction
            noisy = tf.where(chosen[:, None, None, None], saved, noisy)
        return (noisy[0], sigma[0]) if single else (noisy, sigma)

    def numpy(self, images, rng):
        return self.numpy_sample(images, rng)[0]

    def numpy_sample(self, images, rng):
        """`sample` with a NumPy generator: (noisy images, sigma per image)."""
        batch, single = _numpy_batch(images)
        count = batch.shape[0]
        if self.sigma_range is None:
            sigma = np.full(count, self.sigma, np.float32)
        else:
            low, high = self.sigma_range
            sigma = low + (high - low) * rng.uniform(size=count) ** self.sigma_power
            sigma = sigma.astype(np.float32)
        noise = rng.standard_normal(batch.shape, dtype=np.float32)
        noisy = batch + sigma[:, None, None, None] * noise
        if self.clip:
            noisy = np.clip(noisy, 0.0, 1.0)
        elif self.clip_fraction > 0:
            saved = np.round(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0
            chosen = rng.uniform(size=count) < self.clip_fraction
            noisy = np.where(chosen[:, None, None, None], saved, noisy)
        noisy = noisy.astype(np.float32)
        return (noisy[0], sigma[0]) if single else (noisy, sigma)


def with_noise_map(images, sigma):
    """Appends a constant noise-level channel (`sigma`, scalar or one per image) to NHWC or HWC
    images: the input of a model built with `noise_level_map=True`."""
    tf = _tensorflow()
    images = tf.convert_to_tensor(images, tf.float32)
    sigma = tf.cast(tf.convert_to_tensor(sigma), tf.float32)
    shape = tf.concat([tf.shape(images)[:-1], [1]], axis=0)
    if images.shape.rank == 4 and sigma.shape.rank == 1:
        sigma = sigma[:, None, None, None]
    return tf.concat([images, tf.broadcast_to(sigma, shape)], axis=-1)


@dataclass(frozen=True)
class Blur:
    """Convolution with a fixed kernel (normalized to sum 1).

    Args:
        kernel: 2-D array.
        mode: "circular" (FFT, periodic boundary: the poster's code) or "same" (spatial
            convolution with reflected borders, so a constant image stays constant).
    """

    kernel: np.ndarray
    mode: str = "circular"

    def __post_init__(self):
        object.__setattr__(self, "kernel", normalize_kernel(self.kernel))
        if self.mode not in ("circular", "same"):
            raise ValueError(f"`mode` must be 'circular' or 'same'. Received: mode={self.mode!r}")

    def __call__(self, images, seed=None):
        batch, single = _as_batch(images)
        if self.mode == "circular":
            blurred = _circular_convolve(batch, self.kernel)
        else:
            blurred = _same_convolve(batch, self.kernel)
        return blurred[0] if single else blurred

    def numpy(self, images, rng=None):
        batch, single = _numpy_batch(images)
        kh, kw = self.kernel.shape
        if self.mode == "circular":
            height, width = batch.shape[1:3]
            padded = np.zeros((height, width), np.float32)
            padded[:kh, :kw] = self.kernel
            centred = np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1))
            spectrum = np.fft.rfft2(batch, axes=(1, 2)) * np.fft.rfft2(centred)[None, :, :, None]
            blurred = np.fft.irfft2(spectrum, s=(height, width), axes=(1, 2))
        else:
            pads = ((0, 0), (kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2), (0, 0))
            padded = np.pad(batch, pads, mode="reflect")
            flipped = self.kernel[::-1, ::-1]
            windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))
            blurred = np.einsum("nhwcij,ij->nhwc", windows, flipped)
        blurred = blurred.astype(np.float32)
        return blurred[0] if single else blurred


@dataclass(frozen=True)
class Compose:
    """Applies degradations in order, each with its own seed split from the given one."""

    steps: tuple

    def __call__(self, images, seed):
        tf = _tensorflow()
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, len(self.steps)))
        for step, step_seed in zip(self.steps, seeds):
            images = step(images, step_seed)
        return images

    def numpy(self, images, rng):
        for step in self.steps:
            images = step.numpy(images, rng)
        return images


def blur_kernel(degradation):
    """The kernel of a degradation's `Blur` step, or None (what classical deblurring needs)."""
    steps = degradation.steps if isinstance(degradation, Compose) else (degradation,)
    return next((step.kernel for step in steps if isinstance(step, Blur)), None)


def noise_level(degradation):
    """The fixed noise sigma of a degradation (its `GaussianNoise` step), or None when it has
    none or draws it from a range."""
    steps = degradation.steps if isinstance(degradation, Compose) else (degradation,)
    for step in steps:
        if isinstance(step, GaussianNoise) and step.sigma_range is None:
            return step.sigma
    return None


TASKS = ("denoise", "deblur_denoise")


def task_of(degradation):
    """The task a degradation belongs to: "deblur_denoise" if it blurs, else "denoise"."""
    return "denoise" if blur_kernel(degradation) is None else "deblur_denoise"


def make_degradation(
    task,
    sigma=0.1,
    sigma_range=None,
    kernel="gaussian",
    blur_mode="circular",
    clip=False,
    clip_fraction=0.0,
    sigma_power=1.0,
):
    """The degradation for a task name.

    Args:
        task: "denoise" (noise only) or "deblur_denoise" (blur, then noise).
        sigma, sigma_range, sigma_power: noise level, see `GaussianNoise`.
        kernel: the blur of "deblur_denoise": a kernel name (`make_kernel`; "gaussian" is the
            protocol's 7x7 Gaussian of sigma 1.6), a kernel file, or a 2-D array. "denoise"
            has none (its `kernel` is ignored).
        blur_mode: "circular" or "same".
        clip, clip_fraction: clip (and for `clip_fraction`, round to 8 bits) the degraded
            image to [0, 1] (see `GaussianNoise`).
    """
    noise = GaussianNoise(
        sigma=sigma,
        sigma_range=None if sigma_range is None else tuple(sigma_range),
        clip=clip,
        clip_fraction=clip_fraction,
        sigma_power=sigma_power,
    )
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}. Valid tasks: {sorted(TASKS)}")
    if task == "denoise":
        return noise
    if kernel is None or isinstance(kernel, (str, Path)):
        kernel = make_kernel(str(kernel or "gaussian"))
    return Compose((Blur(kernel, mode=blur_mode), noise))


def _circular_convolve(batch, kernel):
    tf = _tensorflow()
    kh, kw = kernel.shape
    height, width = tf.shape(batch)[1], tf.shape(batch)[2]
    padded = tf.pad(tf.constant(kernel), [[0, height - kh], [0, width - kw]])
    # Move the kernel centre to (0, 0) so the blur does not shift the image.
    centred = tf.roll(padded, shift=[-(kh // 2), -(kw // 2)], axis=[0, 1])
    channels_first = tf.transpose(batch, [0, 3, 1, 2])
    spectrum = tf.signal.rfft2d(channels_first) * tf.signal.rfft2d(centred)
    blurred = tf.signal.irfft2d(spectrum, fft_length=[height, width])
    return tf.transpose(blurred, [0, 2, 3, 1])


def _same_convolve(batch, kernel):
    tf = _tensorflow()
    kh, kw = kernel.shape
    channels = batch.shape[-1]
    padded = tf.pad(
        batch, [[0, 0], [kh // 2, (kh - 1) // 2], [kw // 2, (kw - 1) // 2], [0, 0]], mode="REFLECT"
    )
    # Convolution, not correlation: flip the kernel.
    filters = np.tile(kernel[::-1, ::-1, None, None], (1, 1, channels, 1))
    return tf.nn.depthwise_conv2d(padded, filters, strides=[1, 1, 1, 1], padding="VALID")
