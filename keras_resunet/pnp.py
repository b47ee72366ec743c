"""Plug-and-play restoration: any known blur, and blur + downsampling (super-resolution), solved
with a noise-level-map denoiser as the image prior.

Half-quadratic splitting (Zhang et al., "Plug-and-Play Image Restoration with Deep Denoiser
Prior", IEEE TPAMI 2021, DPIR) alternates the closed-form data step of the operator
(`keras_resunet.operators.BlurOperator.prox`) with one denoiser pass at a decreasing noise level:

    x_k = argmin_x ||y - A x||^2 + alpha_k ||x - z_{k-1}||^2,    z_k = denoise(x_k, sigma_k)

with sigma_k log-spaced from `start_sigma` down to the image's noise level and
alpha_k = lam * sigma_n^2 / sigma_k^2. No training: a better denoiser improves every task.

Boundaries: benchmark inputs are blurred circularly and restored as they are
(`boundary="circular"`). A real photo was not: its edges are mirrored outward by a margin of
about two kernel widths first and the margin is cropped afterwards (`boundary="symmetric"`, the
default), so the circular model does not ring at the image border.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from keras_resunet.denoisers import Denoiser
from keras_resunet.operators import MAX_MEGAPIXELS, BlurOperator

# The noise level a noise-free observation is treated as (DPIR's floor): the data step keeps
# a finite weight.
MIN_NOISE = 0.255 / 255
# Default iteration counts, chosen on validation photos (results/pnp/: the iterations part):
# deblurring peaks early, super-resolution keeps gaining up to 24 (DPIR's counts too).
DEBLUR_ITERATIONS = 8
SR_ITERATIONS = 24


def default_iterations(operator):
    """The iteration count for `operator`: more for upscaling than for deblurring."""
    return SR_ITERATIONS if getattr(operator, "scale", 1) > 1 else DEBLUR_ITERATIONS


@dataclass(frozen=True)
class Schedule:
    """The HQS schedule.

    Attributes:
        iterations: int >= 1, data steps and denoiser passes.
        start_sigma: float, the first denoiser level (on [0, 1]).
        lam: float > 0, the prior's weight in alpha_k = lam * sigma_n^2 / sigma_k^2.
    """

    iterations: int = 8
    start_sigma: float = 49 / 255
    lam: float = 0.23

    def __post_init__(self):
        if not isinstance(self.iterations, int) or self.iterations < 1:
            raise ValueError(f"`iterations` must be an int >= 1. Received: {self.iterations!r}")
        if not 0 < self.start_sigma <= 1 or not self.lam > 0:
            raise ValueError(
                f"Need 0 < start_sigma <= 1 and lam > 0. Received: start_sigma="
                f"{self.start_sigma!r}, lam={self.lam!r}"
            )

    def levels(self, noise_sigma, end_sigma=None):
        """[(sigma_k, alpha_k)] for an observation of noise level `noise_sigma`; the last
        denoiser level is `end_sigma` (default: the noise level itself)."""
        noise = max(float(noise_sigma), MIN_NOISE)
        end = max(noise if end_sigma is None else float(end_sigma), MIN_NOISE)
        start = max(self.start_sigma, end)
        sigmas = np.geomspace(start, end, self.iterations)
        return [(float(s), float(self.lam * noise**2 / s**2)) for s in sigmas]


class PlugAndPlay(Denoiser):
    """Restores an observation y = A x + noise with a denoiser as the prior. A `Denoiser` itself
    (image in, restored image out; `at_sigma` sets the observation's noise level), so the
    evaluation harness and `resunet` restore through it like any method.

    Args:
        denoiser: a `keras_resunet.denoisers.Denoiser` that takes a noise level (a noise-map
            model; a model trained for one level cannot follow the schedule and is refused).
        operator: a `BlurOperator` (blur, or blur + downsampling by its `scale`).
        noise_sigma: float in [0, 1], the observation's noise level.
        schedule: `Schedule`.
        ensemble: average the 8 flips/rotations in every denoiser pass (8x the time).
        boundary: "symmetric" (photos) or "circular" (observations blurred circularly).
        tile: denoiser tile side (None: whole image), as in `inference.restore_image`.
        progress: optional callable(iteration, iterations, seconds) after each iteration.

    Raises:
        ValueError: a denoiser without a noise-level input, an unknown boundary.
    """

    def __init__(
        self,
        denoiser,
        operator,
        noise_sigma,
        schedule=Schedule(),
        ensemble=False,
        boundary="symmetric",
        tile=None,
        progress=None,
    ):
        if not denoiser.takes_sigma:
            raise ValueError(
                f"{denoiser.name} restores one noise level; plug-and-play runs the denoiser at "
                "a decreasing level each iteration, so it needs a noise-level-map model "
                "(such as resunet-noise-map)"
            )
        if boundary not in ("symmetric", "circular"):
            raise ValueError(
                f"`boundary` must be 'symmetric' or 'circular'. Received: {boundary!r}"
            )
        super().__init__(name=f"pnp-{denoiser.name}", channels=denoiser.channels, minimum_size=1)
        self.takes_sigma = True
        self.denoiser, self.operator = denoiser, operator
        self.sigma = float(noise_sigma)
        self.schedule, self.ensemble, self.boundary = schedule, ensemble, boundary
        self.tile, self.progress = tile, progress

    @property
    def scale(self):
        return self.operator.scale

    def end_sigma(self):
        # super-resolution ends above the noise level (DPIR: scale / 255): the last passes
        # still clean up the aliasing the data step leaves
        return max(self.sigma, self.scale / 255) if self.scale > 1 else self.sigma

    def margin(self):
        """Pixels mirrored on each side of the observation (symmetric boundary)."""
        return (
            0
            if self.boundary == "circular"
            else math.ceil(max(self.operator.kernel.shape) / self.scale) * 2
        )

    def settings(self):
        return {
            "denoiser": self.denoiser.name,
            "scale": self.scale,
            "iterations": self.schedule.iterations,
            "start_sigma": self.schedule.start_sigma,
            "lam": self.schedule.lam,
            "boundary": self.boundary,
            "ensemble": self.ensemble,
        }

    def restore_one(self, observed):
        """The restored (H * scale, W * scale, C) float32 image in [0, 1] for an (H, W, C)
        observation."""
        from keras_resunet.inference import restore_image

        observed = np.asarray(observed, dtype=np.float32)
        if observed.ndim != 3:
            raise ValueError(f"Expected an (H, W, C) image. Received shape {observed.shape}")
        height, width = observed.shape[:2]
        megapixels = height * width * self.scale**2 / 1e6
        if megapixels > MAX_MEGAPIXELS:
            raise ValueError(
                f"the restored image would be {megapixels:.1f} MP; whole-image FFTs are limited "
                f"to {MAX_MEGAPIXELS:g} MP (about 0.5 GB each): crop or downscale it first"
            )
        margin = self.margin()
        if margin:
            pad = ((margin, margin), (margin, margin), (0, 0))
            observed = np.pad(observed, pad, mode="symmetric")
        estimate = initial_estimate(observed, self.scale)
        start = time.perf_counter()
        levels = self.schedule.levels(self.sigma, self.end_sigma())
        for iteration, (sigma, alpha) in enumerate(levels, 1):
            estimate = self.operator.prox(observed, estimate, alpha)
            estimate = restore_image(
                self.denoiser.at_sigma(sigma), estimate, tile=self.tile, ensemble=self.ensemble
            )
            if self.progress is not None:
                self.progress(iteration, len(levels), time.perf_counter() - start)
        if margin:
            crop = margin * self.scale
            estimate = estimate[crop : crop + height * self.scale, crop : crop + width * self.scale]
        return np.clip(estimate, 0, 1)

    def degrade(self, clean, seed):
        """A x + noise for a clean (H, W, C) image (sides multiples of the scale), circular: the
        benchmark protocol. `seed`: two ints (NumPy's generator)."""
        blurred = self.operator.forward(clean)
        rng = np.random.default_rng([int(value) for value in seed])
        noise = rng.standard_normal(blurred.shape).astype(np.float32) * self.sigma
        return blurred + noise


def initial_estimate(observed, scale):
    """The start of the iterations: the observation itself, or its bicubic upscaling."""
    return observed if scale == 1 else bicubic_upscale(observed, scale)


def keys_cubic(distance):
    """Keys' cubic convolution weight (a = -0.5), the bicubic of image editors, at `distance`
    (in input pixels)."""
    d = np.abs(np.asarray(distance, dtype=np.float64))
    near = 1.5 * d**3 - 2.5 * d**2 + 1
    far = -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def bicubic_kernel(scale):
    """The 1-D bicubic downscaling kernel of `scale` as a 2-D (4 scale + 1) square kernel,
    centred, normalised to sum 1: the "bicubic degradation" of super-resolution benchmarks on
    this project's sampling grid (`BlurOperator` keeps pixels 0, scale, 2 scale, ...)."""
    weights = keys_cubic(np.arange(-2 * scale, 2 * scale + 1) / scale)
    kernel = np.outer(weights, weights)
    return kernel / kernel.sum()


def bicubic_upscale(image, scale):
    """Bicubic interpolation of an (H, W, C) image to (H * scale, W * scale, C) on the grid of
    `BlurOperator` (input pixel j sits at output pixel j * scale), edge pixels repeated."""
    result = np.asarray(image, dtype=np.float32)
    for axis in (0, 1):
        count = result.shape[axis]
        position = np.arange(count * scale) / scale
        base = np.floor(position).astype(int)
        upscaled = 0
        for offset in (-1, 0, 1, 2):
            weight = keys_cubic(position - (base + offset)).astype(np.float32)
            shape = [1] * result.ndim
            shape[axis] = -1
            taken = np.take(result, np.clip(base + offset, 0, count - 1), axis=axis)
            upscaled = upscaled + weight.reshape(shape) * taken
        result = upscaled
    return result


def make_operator(kernel=None, scale=1):
    """A `BlurOperator`; for super-resolution without a kernel, the bicubic kernel of `scale`."""
    if kernel is None:
        if scale == 1:
            raise ValueError("deblurring needs a kernel")
        return BlurOperator(bicubic_kernel(scale), scale, nonnegative=False)
    return BlurOperator(kernel, scale)
