"""PSNR and SSIM, one value per image, on outputs clipped to [0, 1] (peak 1).

Built on `tf.image.psnr` / `tf.image.ssim`, which already return one value per image of a batch.
"""

import math

import keras
import numpy as np
import tensorflow as tf


def _prepare(restored, reference):
    restored = tf.convert_to_tensor(restored, tf.float32)
    reference = tf.convert_to_tensor(reference, tf.float32)
    if restored.shape != reference.shape:
        raise ValueError(f"Shapes differ: restored {restored.shape} vs reference {reference.shape}")
    return tf.clip_by_value(restored, 0.0, 1.0), tf.clip_by_value(reference, 0.0, 1.0)


def psnr(restored, reference):
    """PSNR in dB per image (max value 1) of (H, W, C) or (N, H, W, C) float images in [0, 1].

    The restored image is clipped to [0, 1] first. Returns a scalar for one image, a (N,) tensor
    for a batch. Identical images give +inf.
    """
    restored, reference = _prepare(restored, reference)
    return tf.image.psnr(restored, reference, max_val=1.0)


def ssim(restored, reference):
    """SSIM per image (Gaussian window 11, sigma 1.5, max value 1), on clipped images.

    Color images are scored per channel and averaged, as `tf.image.ssim` does.
    """
    restored, reference = _prepare(restored, reference)
    return tf.image.ssim(restored, reference, max_val=1.0)


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
