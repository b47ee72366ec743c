"""Classical restoration baselines behind the same denoiser interface as the learned models.

- NLM: scikit-image's non-local means, set up for a known noise sigma as its documentation
  recommends (fast mode, h = 0.8 * sigma, 5x5 patches searched within 13x13 windows). For
  deblur-denoise it runs after a Wiener deconvolution with the known kernel.
- BM3D / CBM3D: the `bm3d` package (Makinen, Azzari, Foi 2020) with the known sigma; for
  deblur-denoise its `bm3d_deblurring` with the known kernel.

Every denoiser takes a batch (N, H, W, C) of float32 images in [0, 1] and returns the restored
batch. BM3D is slow (seconds per photo), so `CachedDenoiser` stores its outputs on disk keyed by
the exact input and the method's settings: tables rebuild without running it again.
"""

import hashlib
import time
from pathlib import Path

import numpy as np

from keras_resunet.denoisers import Denoiser
from keras_resunet.io import atomic_write


def wiener_deconvolve(image, kernel, balance):
    """Wiener deconvolution under the circular blur model of `degradations.Blur`.

    Args:
        image: float (H, W, C) blurred and noisy image.
        kernel: 2-D kernel (sum 1) that blurred it circularly, centred as `Blur` centres it.
        balance: > 0, the regularization (noise-to-signal power ratio); larger is smoother.

    Returns:
        (restored, noise_gain): float32 (H, W, C) deconvolved image, and the factor by which
        the filter scales the standard deviation of white noise (its RMS gain), so a known
        input sigma becomes `sigma * noise_gain` after deconvolution.
    """
    if not balance > 0:
        raise ValueError(f"`balance` must be > 0. Received: balance={balance!r}")
    height, width = image.shape[:2]
    transfer = np.fft.fft2(_centred_kernel(kernel, height, width))
    spectrum = np.fft.fft2(np.moveaxis(image, -1, 0))
    gain = np.conj(transfer) / (np.abs(transfer) ** 2 + balance)
    restored = np.real(np.fft.ifft2(spectrum * gain))
    noise_gain = float(np.sqrt(np.mean(np.abs(gain) ** 2)))
    return np.moveaxis(restored, 0, -1).astype(np.float32), noise_gain


def _centred_kernel(kernel, height, width):
    kernel = np.asarray(kernel, dtype=np.float64)
    kh, kw = kernel.shape
    padded = np.zeros((height, width))
    padded[:kh, :kw] = kernel
    return np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1))


# A noise level estimated on a clean or flat image can be 0, where both methods divide by it:
# they then restore for this small level instead.
MIN_SIGMA = 0.5 / 255


class NLMDenoiser(Denoiser):
    """Non-local means for a known sigma (after Wiener deconvolution when `kernel` is given).

    Args:
        sigma: noise standard deviation on the [0, 1] scale.
        kernel: optional 2-D blur kernel (deblur-denoise).
        wiener_balance: regularization of the deconvolution; the default was chosen on
            scikit-image's sample photos at sigma 0.1 with the default 7x7 Gaussian kernel.
        patch_size, patch_distance, h_factor: scikit-image's recommended settings for a known
            sigma (`h = 0.8 * sigma`, fast mode).
    """

    def __init__(
        self, sigma, kernel=None, wiener_balance=0.02, patch_size=5, patch_distance=6, h_factor=0.8
    ):
        if not sigma > 0:
            raise ValueError(f"NLM needs the noise sigma (> 0). Received: sigma={sigma!r}")
        super().__init__(name="nlm", channels=None, minimum_size=8)
        self.takes_sigma = True
        self.sigma = float(sigma)
        self.kernel = None if kernel is None else np.asarray(kernel, dtype=np.float32)
        self.wiener_balance = wiener_balance
        self.patch_size = patch_size
        self.patch_distance = patch_distance
        self.h_factor = h_factor

    def settings(self):
        # Everything that changes the output: the cache key is built from it.
        return {
            "sigma": self.sigma,
            "kernel": None if self.kernel is None else self.kernel.tolist(),
            "wiener_balance": self.wiener_balance,
            "patch_size": self.patch_size,
            "patch_distance": self.patch_distance,
            "h_factor": self.h_factor,
        }

    def restore_one(self, image):
        from skimage.restoration import denoise_nl_means

        sigma = max(self.sigma, MIN_SIGMA)
        if np.ptp(image) == 0:
            return image.copy()  # bm3d's colour transform divides by the range: NaN for flat
        if self.kernel is not None:
            # Deconvolution amplifies the noise by a known factor: NLM gets the amplified sigma.
            image, noise_gain = wiener_deconvolve(image, self.kernel, self.wiener_balance)
            sigma *= noise_gain
        restored = denoise_nl_means(
            image,
            patch_size=self.patch_size,
            patch_distance=self.patch_distance,
            h=self.h_factor * sigma,
            sigma=sigma,
            fast_mode=True,
            channel_axis=-1,
        )
        return restored.astype(np.float32).reshape(image.shape)


# The `bm3d` package's parameter profiles; "np" (its default) is the one its authors recommend.
# Its "refilter" profile is left out: in bm3d 4.0.3 it fails on every image (its second pass
# is given an array twice the image's size), so it is refused with the reason.
BM3D_PROFILES = ("np", "vn", "vn_old", "high", "deb")
BM3D_BROKEN_PROFILES = {"refilter": "fails on every image in bm3d 4.0.3 (a shape error)"}
# Regularization of the two inverse filters in BM3D deblurring, from the reference
# implementation: the regularized inverse (pilot stage) and the regularized Wiener inverse.
BM3D_DEBLUR_REGULARIZATION = (4e-4, 5e-3)


class BM3DDenoiser(Denoiser):
    """BM3D (gray), CBM3D (RGB) or BM3D deblurring (`kernel` given) with a known sigma."""

    def __init__(self, sigma, kernel=None, profile="np"):
        if not sigma > 0:
            raise ValueError(f"BM3D needs the noise sigma (> 0). Received: sigma={sigma!r}")
        if profile in BM3D_BROKEN_PROFILES:
            raise ValueError(
                f"BM3D profile {profile!r} is not supported: {BM3D_BROKEN_PROFILES[profile]}. "
                f"Valid: {list(BM3D_PROFILES)}"
            )
        if profile not in BM3D_PROFILES:
            raise ValueError(f"Unknown BM3D profile {profile!r}. Valid: {list(BM3D_PROFILES)}")
        super().__init__(name="bm3d", channels=None, minimum_size=16)
        self.takes_sigma = True
        self.sigma = float(sigma)
        self.kernel = None if kernel is None else np.asarray(kernel, dtype=np.float32)
        self.profile = profile

    def settings(self):
        # Everything that changes the output: the cache key is built from it.
        found = {
            "sigma": self.sigma,
            "kernel": None if self.kernel is None else self.kernel.tolist(),
            "profile": self.profile,
        }
        if self.kernel is not None:
            found["regularization"] = list(BM3D_DEBLUR_REGULARIZATION)
        return found

    def restore_one(self, image):
        import bm3d

        if not hasattr(np, "trapz"):
            # bm4d 4.2.5 (the newest, used by bm3d's deblurring) still calls np.trapz, which
            # numpy 2.4 removed; np.trapezoid is the same function under its new name.
            np.trapz = np.trapezoid
        sigma = max(self.sigma, MIN_SIGMA)
        if np.ptp(image) == 0:
            return image.copy()  # bm3d's colour transform divides by the range: NaN for flat
        if self.kernel is not None:
            restored = np.stack(
                [
                    _bm3d_deblur_channel(image[..., c], sigma, self.kernel, self.profile)
                    for c in range(image.shape[-1])
                ],
                axis=-1,
            )
        elif image.shape[-1] == 3:
            restored = bm3d.bm3d_rgb(image, sigma, profile=self.profile)
        else:
            restored = bm3d.bm3d(image[..., 0], sigma, profile=self.profile)[..., None]
        return np.asarray(restored, dtype=np.float32).reshape(image.shape)


def _bm3d_deblur_channel(channel, sigma, kernel, profile):
    """BM3D deblurring of one channel (Dabov et al. 2008, as in `bm3d.bm3d_deblurring`):
    a regularized inverse filtered by BM3D hard thresholding gives a pilot, which steers a
    regularized Wiener inverse filtered by BM3D's Wiener stage.

    `bm3d.bm3d_deblurring` (bm3d 4.0.3) cannot be called directly here: its second stage passes
    a pilot without the channel axis and fails its own shape check. The two stages are the
    package's primitives, with the regularization constants of the reference implementation.
    """
    import bm3d

    height, width = channel.shape
    transfer = np.fft.fft2(_centred_kernel(kernel, height, width))
    # bm3d's noise PSD convention: sigma^2 * number of pixels, flat for white noise.
    psd = np.full((height, width), sigma**2 * height * width)
    observed = np.fft.fft2(channel)

    pilot_regularization, wiener_regularization = BM3D_DEBLUR_REGULARIZATION
    inverse = np.conj(transfer) / (np.abs(transfer) ** 2 + pilot_regularization * psd)
    pilot = bm3d.bm3d(
        np.real(np.fft.ifft2(observed * inverse)),
        psd * np.abs(inverse) ** 2,
        profile=profile,
        stage_arg=bm3d.BM3DStages.HARD_THRESHOLDING,
    )
    pilot = np.asarray(pilot).reshape(height, width)

    pilot_power = np.abs(np.fft.fft2(pilot)) ** 2
    wiener = (
        np.conj(transfer)
        * pilot_power
        / (pilot_power * np.abs(transfer) ** 2 + wiener_regularization * psd)
    )
    restored = bm3d.bm3d(
        np.real(np.fft.ifft2(observed * wiener)),
        psd * np.abs(wiener) ** 2,
        profile=profile,
        stage_arg=pilot[..., None],
    )
    return np.asarray(restored).reshape(height, width)


class CachedDenoiser(Denoiser):
    """Wraps a slow denoiser: each restored image is stored as `.npz` in `folder`, keyed by the
    SHA-256 of the input pixels and the method's name and settings, and reused when asked again.

    Each entry keeps the seconds the method took, and `compute_seconds` sums them over the
    images returned, so timings in tables are the method's, not the cache's. Files are written
    atomically: an interrupted run leaves no truncated entry.
    """

    def __init__(self, denoiser, folder):
        super().__init__(denoiser.name, denoiser.channels, denoiser.minimum_size)
        self.denoiser = denoiser
        self.sigma = denoiser.sigma
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0
        self.compute_seconds = 0.0

    def settings(self):
        return self.denoiser.settings()

    @property
    def takes_sigma(self):
        return self.denoiser.takes_sigma

    def at_sigma(self, sigma):
        return CachedDenoiser(self.denoiser.at_sigma(sigma), self.folder)

    def _key(self, image):
        digest = hashlib.sha256()
        digest.update(repr((self.denoiser.name, self.denoiser.settings(), image.shape)).encode())
        digest.update(np.ascontiguousarray(image, dtype=np.float32).tobytes())
        return digest.hexdigest()[:32]

    def restore_one(self, image):
        path = self.folder / f"{self.name}-{self._key(image)}.npz"
        if path.is_file():
            self.hits += 1
            with np.load(path) as entry:
                self.compute_seconds += float(entry["seconds"])
                return entry["restored"]
        self.misses += 1
        start = time.perf_counter()
        restored = self.denoiser.restore_one(image)
        seconds = time.perf_counter() - start
        self.compute_seconds += seconds
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, suffix=".npz") as temporary:
            np.savez(temporary, restored=restored, seconds=seconds)
        return restored


CLASSICAL = {"nlm": NLMDenoiser, "bm3d": BM3DDenoiser}


def make_classical(name, sigma, kernel=None, cache=None):
    """A classical denoiser by name ("nlm" or "bm3d"), optionally cached in folder `cache`.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    if name not in CLASSICAL:
        raise ValueError(f"Unknown method {name!r}. Valid methods: {sorted(CLASSICAL)}")
    denoiser = CLASSICAL[name](sigma, kernel=kernel)
    return denoiser if cache is None else CachedDenoiser(denoiser, cache)
