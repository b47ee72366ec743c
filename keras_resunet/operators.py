"""Linear degradations with a known kernel, as operators for model-based restoration.

`BlurOperator(kernel, scale)` is y = (x conv k) followed by keeping every `scale`-th pixel
(`scale` 1: blur only), with circular boundaries, on (H, W, C) float images. Each operator has its
forward map, its adjoint, and the closed-form proximal step

    prox(y, z, alpha) = argmin_x ||A x - y||^2 + alpha ||x - z||^2,

solved in the Fourier domain: a division for blur (A^T A is diagonal there), and for blur +
decimation the aliasing identity of Zhao et al., "Fast single image super-resolution using a new
analytical solution for l2-l2 problems" (IEEE TIP 2016), used by USRNet and DPIR. NumPy / SciPy
FFTs in float32 / complex64: it runs beside any Keras backend.
"""

import numpy as np
import scipy.fft

# Real photos restored whole: the FFTs of the proximal step hold a few complex64 copies of the
# high-resolution image, about 0.5 GB at this size.
MAX_MEGAPIXELS = 24.0


def check_kernel(kernel, image_shape=None, name="kernel", nonnegative=True):
    """A blur kernel as float32, normalised to sum 1 (`nonnegative=False` admits the negative
    lobes of an interpolation kernel such as bicubic's).

    Returns:
        (kernel, note): `note` says when the kernel was rescaled to sum 1, else None.

    Raises:
        ValueError: not 2-D, not finite, negative values, all zero, an even side, or larger than
            the image (`image_shape`: its (H, W, ...)).
    """
    array = np.asarray(kernel, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array. Received shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    if nonnegative and np.any(array < 0):
        raise ValueError(f"{name} has negative values (min {array.min():.3g}); a blur has none")
    total = array.sum()
    if total <= 0:
        raise ValueError(f"{name} is all zeros")
    if array.shape[0] % 2 == 0 or array.shape[1] % 2 == 0:
        raise ValueError(
            f"{name} has an even side ({array.shape[0]}x{array.shape[1]}): a kernel has a "
            "centre pixel, so its sides are odd (pad it with a row or column of zeros)"
        )
    if image_shape is not None and (
        array.shape[0] > image_shape[0] or array.shape[1] > image_shape[1]
    ):
        raise ValueError(
            f"{name} ({array.shape[0]}x{array.shape[1]}) is larger than the image "
            f"({image_shape[0]}x{image_shape[1]})"
        )
    note = None
    if not np.isclose(total, 1.0, rtol=1e-4):
        note = f"{name} sums to {total:.4g}: normalised to 1"
    return (array / total).astype(np.float32), note


def kernel_spectrum(kernel, shape):
    """The 2-D FFT of `kernel` zero-padded to `shape` (H, W) with its centre moved to (0, 0), so
    that multiplying spectra is circular convolution centred on each pixel."""
    padded = np.zeros(shape, np.float32)
    height, width = kernel.shape
    padded[:height, :width] = kernel
    padded = np.roll(padded, (-(height // 2), -(width // 2)), axis=(0, 1))
    return scipy.fft.fft2(padded).astype(np.complex64)


def _fft(image):
    return scipy.fft.fft2(image, axes=(0, 1), workers=-1)


def _ifft(spectrum):
    return np.real(scipy.fft.ifft2(spectrum, axes=(0, 1), workers=-1)).astype(np.float32)


def _block_mean(spectrum, scale):
    """The mean of the scale x scale blocks an (s*h, s*w, ...) spectrum splits into: the
    spectrum of a decimated image, from the spectrum before decimation (aliasing)."""
    height, width = spectrum.shape[0] // scale, spectrum.shape[1] // scale
    blocks = spectrum.reshape(scale, height, scale, width, *spectrum.shape[2:])
    return blocks.mean(axis=(0, 2))


class BlurOperator:
    """y = A x: circular convolution with `kernel`, then every `scale`-th pixel from (0, 0).

    Args:
        kernel: 2-D non-negative array (see `check_kernel`; normalised to sum 1).
        scale: int >= 1, the downsampling factor (1: blur only).
        nonnegative: refuse kernels with negative values (False for bicubic's).
    """

    def __init__(self, kernel, scale=1, nonnegative=True):
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"`scale` must be an int >= 1. Received: scale={scale!r}")
        self.kernel, self.note = check_kernel(kernel, nonnegative=nonnegative)
        self.scale = scale
        self._spectra = {}

    def _spectrum(self, shape):
        if shape not in self._spectra:
            self._spectra[shape] = kernel_spectrum(self.kernel, shape)[..., None]
        return self._spectra[shape]

    def output_shape(self, shape):
        """The (H, W, C) of A x for an x of `shape` (H and W multiples of `scale`)."""
        return (shape[0] // self.scale, shape[1] // self.scale, *shape[2:])

    def forward(self, image):
        """A x for an (H, W, C) image whose sides are multiples of `scale`."""
        image = self._check(image, self.scale)
        blurred = _ifft(_fft(image) * self._spectrum(image.shape[:2]))
        return blurred[:: self.scale, :: self.scale]

    def adjoint(self, observed):
        """A^T y: zeros between the samples, then correlation with the kernel."""
        observed = self._check(observed, 1)
        upsampled = self._upsample(observed)
        return _ifft(_fft(upsampled) * np.conj(self._spectrum(upsampled.shape[:2])))

    def prox(self, observed, estimate, alpha):
        """argmin_x ||A x - y||^2 + alpha ||x - z||^2 for y = `observed`, z = `estimate`
        (the high-resolution shape), alpha > 0: the solution of (A^T A + alpha I) x = A^T y +
        alpha z."""
        if not alpha > 0:
            raise ValueError(f"`alpha` must be > 0. Received: {alpha!r}")
        observed, estimate = self._check(observed, 1), self._check(estimate, self.scale)
        if self.output_shape(estimate.shape) != observed.shape:
            raise ValueError(
                f"estimate {estimate.shape} does not map to the observed {observed.shape} "
                f"at scale {self.scale}"
            )
        spectrum = self._spectrum(estimate.shape[:2])
        conjugate = np.conj(spectrum)
        right = conjugate * _fft(self._upsample(observed)) + alpha * _fft(estimate)
        if self.scale == 1:
            return _ifft(right / (np.abs(spectrum) ** 2 + alpha))
        # Woodbury through the aliasing identity: A A^T is diagonal on the decimated grid
        aliased = _block_mean(spectrum * right, self.scale)
        power = _block_mean(np.abs(spectrum) ** 2, self.scale)
        correction = np.tile(aliased / (power + alpha), (self.scale, self.scale, 1))
        return _ifft((right - conjugate * correction) / alpha)

    def _upsample(self, observed):
        height, width = observed.shape[:2]
        upsampled = np.zeros((height * self.scale, width * self.scale, *observed.shape[2:]))
        upsampled[:: self.scale, :: self.scale] = observed
        return upsampled.astype(np.float32)

    @staticmethod
    def _check(image, multiple):
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3:
            raise ValueError(f"Expected an (H, W, C) image. Received shape {image.shape}")
        if image.shape[0] % multiple or image.shape[1] % multiple:
            raise ValueError(
                f"image sides {image.shape[:2]} must be multiples of the scale {multiple}"
            )
        return image
