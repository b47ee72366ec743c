"""PSNR and SSIM, one value per image, on outputs clipped to [0, 1] (peak 1).

NumPy and SciPy only, so evaluation runs without TensorFlow; the numbers are those of
`tf.image.psnr` / `tf.image.ssim` (11x11 Gaussian window, sigma 1.5, valid positions only,
channels averaged), which the tests check.
"""

import math

import keras
import numpy as np

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _prepare(restored, reference):
    restored = np.asarray(restored, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if restored.shape != reference.shape:
        raise ValueError(f"Shapes differ: restored {restored.shape} vs reference {reference.shape}")
    if restored.ndim not in (3, 4):
        raise ValueError(f"Expected (H, W, C) or (N, H, W, C) images. Received {restored.shape}")
    return np.clip(restored, 0.0, 1.0), np.clip(reference, 0.0, 1.0)


def psnr(restored, reference):
    """PSNR in dB per image (max value 1) of (H, W, C) or (N, H, W, C) float images in [0, 1].

    The restored image is clipped to [0, 1] first. Returns a float for one image, an (N,) array
    for a batch. Identical images give +inf.
    """
    restored, reference = _prepare(restored, reference)
    error = np.mean(np.square(restored - reference), axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        value = -10.0 * np.log10(error)
    return float(value) if np.ndim(value) == 0 else value


def ssim(restored, reference):
    """SSIM per image (Gaussian window 11, sigma 1.5, max value 1), on clipped images.

    Color images are scored per channel and averaged, as `tf.image.ssim` does.
    """
    restored, reference = _prepare(restored, reference)
    if restored.ndim == 3:
        return float(_ssim_one(restored, reference))
    return np.array([_ssim_one(r, c) for r, c in zip(restored, reference)])


def _ssim_one(x, y):
    from scipy.ndimage import correlate1d

    radius = SSIM_WINDOW // 2
    position = np.arange(SSIM_WINDOW) - radius
    window = np.exp(-(position**2) / (2 * SSIM_SIGMA**2))
    window /= window.sum()

    def local_mean(image):
        blurred = correlate1d(correlate1d(image, window, axis=0), window, axis=1)
        return blurred[radius:-radius, radius:-radius]  # valid positions only

    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov = local_mean(x * y) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast = (2 * cov + c2) / (var_x + var_y + c2)
    return float(np.mean(luminance * contrast, axis=(0, 1)).mean())


def summarize(values):
    """Mean and standard deviation of per-image values, as plain floats."""
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std()), "n": int(values.size)}


def evaluate_pairs(restored_images, reference_images):
    """Per-image PSNR and SSIM over two lists of (H, W, C) images, plus their summaries."""
    if len(restored_images) != len(reference_images):
        raise ValueError(
            f"Got {len(restored_images)} restored and {len(reference_images)} reference images"
        )
    psnrs = [float(psnr(r, c)) for r, c in zip(restored_images, reference_images)]
    ssims = [float(ssim(r, c)) for r, c in zip(restored_images, reference_images)]
    return {
        "psnr": psnrs,
        "ssim": ssims,
        "psnr_summary": summarize(psnrs),
        "ssim_summary": summarize(ssims),
    }


@keras.saving.register_keras_serializable(package="keras_resunet")
def psnr_metric(y_true, y_pred):
    """Per-patch PSNR (dB, peak 1) of the clipped prediction: the training progress bar's
    `psnr`, in `keras.ops` so that it runs on every backend."""
    y_true, y_pred = keras.ops.cast(y_true, "float32"), keras.ops.cast(y_pred, "float32")
    error = keras.ops.mean(keras.ops.square(keras.ops.clip(y_pred, 0, 1) - y_true), axis=(1, 2, 3))
    return 10.0 * keras.ops.log(1.0 / keras.ops.maximum(error, 1e-10)) / math.log(10.0)
