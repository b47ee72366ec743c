"""Evaluate a denoiser (learned or classical) on clean images with fixed, seeded degradations."""

import json
import time

from keras_resunet import data, degradations, metrics
from keras_resunet.denoisers import Denoiser, KerasDenoiser
from keras_resunet.inference import load_denoiser, restore_image
from keras_resunet.io import write_text_atomically
from keras_resunet.noise_level import estimate_sigma


def evaluate_model(
    model, images, degradation, seed=0, names=None, ensemble=False, sigma=None, indices=None
):
    """Restores every degraded image one at a time and scores it against the clean one.

    Args:
        model: a `Denoiser` or a Keras model (image in, image out).
        images: clean float32 (H, W, C) images in [0, 1].
        degradation: callable `(images, seed) -> degraded`.
        seed: evaluation seed; image i is degraded with seed (seed, i).
        indices: the images' places in their test set, when `images` is a part of it.
        names: optional image names for the per-image records.
        ensemble: use the 8-fold flip/rotation self-ensemble.
        sigma: the noise level given to a method that takes one: None for the degradation's
            own, a number, or "estimate" to estimate it on each degraded image.

    Returns:
        dict with per-image records (name, PSNR/SSIM of the degraded input and of the output),
        means, and seconds per megapixel of restoration (learned models after one warm-up image,
        so tracing is not counted as restoration time).
    """
    denoiser = model if isinstance(model, Denoiser) else KerasDenoiser(model)
    degraded, clean = data.evaluation_pairs(images, degradation, seed, indices)
    names = names or [f"image{index:03d}" for index in range(len(images))]
    if sigma is None:
        sigma = degradations.noise_level(degradation)
    levels = [None] * len(degraded)
    if denoiser.takes_sigma and sigma is not None:
        levels = [estimate_sigma(d) if sigma == "estimate" else float(sigma) for d in degraded]
    if isinstance(denoiser, KerasDenoiser):
        restore_image(denoiser, degraded[0], ensemble=ensemble)
    restored, seconds, compute_seconds = [], 0.0, 0.0
    for image, level in zip(degraded, levels):
        method = denoiser if level is None else denoiser.at_sigma(level)
        if hasattr(method, "compute_seconds"):
            method.compute_seconds = 0.0
        start = time.perf_counter()
        restored.append(restore_image(method, image, ensemble=ensemble))
        seconds += time.perf_counter() - start
        compute_seconds += getattr(method, "compute_seconds", 0.0)
    if hasattr(denoiser, "compute_seconds"):  # a cache: report the method's own time
        seconds = compute_seconds
    before = metrics.evaluate_pairs(degraded, clean)
    after = metrics.evaluate_pairs(restored, clean)
    megapixels = sum(image.shape[0] * image.shape[1] for image in clean) / 1e6
    records = [
        {
            "name": name,
            "psnr_degraded": before["psnr"][i],
            "ssim_degraded": before["ssim"][i],
            "psnr": after["psnr"][i],
            "ssim": after["ssim"][i],
        }
        for i, name in enumerate(names)
    ]
    return {
        "n_images": len(images),
        "sigma_given": [None if level is None else round(level, 6) for level in levels],
        "psnr": after["psnr_summary"]["mean"],
        "ssim": after["ssim_summary"]["mean"],
        "psnr_degraded": before["psnr_summary"]["mean"],
        "ssim_degraded": before["ssim_summary"]["mean"],
        "seconds_per_megapixel": seconds / megapixels,
        "images": records,
    }


def evaluate_folder(
    model,
    folder,
    task="denoise",
    sigma=0.1,
    kernel="gaussian",
    seed=0,
    channels=None,
    ensemble=False,
    cache=None,
    limit=None,
    clip=False,
):
    """`evaluate_model` on a denoiser spec and an image folder.

    Args:
        model: `.keras` path, shipped model name, or classical method ("nlm", "bm3d").
        folder: folder of clean images.
        task, sigma, kernel: the degradation (kernel name or file, for deblur_denoise).
        seed: evaluation seed.
        channels: 1 or 3; default the model's channels (3 for classical methods).
        ensemble: 8-fold self-ensemble.
        cache: folder caching classical outputs (e.g. BM3D).
        limit: evaluate only the first `limit` images (sorted by name).
        clip: clip the degraded inputs to [0, 1], as 8-bit photos are (the reference
            protocol does not).
    """
    degradations.check_sigma(sigma)
    degradation = degradations.make_degradation(task, sigma=sigma, kernel=kernel, clip=clip)
    denoiser = load_denoiser(model, degradation, cache=cache)
    images, paths = data.load_images(
        folder, channels=channels or denoiser.channels or 3, limit=limit
    )
    result = evaluate_model(
        denoiser, images, degradation, seed, names=[p.name for p in paths], ensemble=ensemble
    )
    return {
        "model": str(model),
        "method": denoiser.name,
        "data": str(folder),
        "task": task,
        "sigma": sigma,
        "seed": seed,
        "clip": clip,
        "ensemble": ensemble,
        **result,
    }


def write_json(path, result):
    """Writes `result` as JSON atomically."""
    write_text_atomically(path, json.dumps(result, indent=2))


def format_report(result):
    """The console report of one evaluation: PSNR / SSIM in and out per image, then the mean
    (result tables of experiments are `results.format_table`)."""
    lines = [f"{'image':<16} {'PSNR in':>8} {'PSNR out':>9} {'SSIM in':>8} {'SSIM out':>9}"]
    for record in result["images"]:
        lines.append(
            f"{record['name']:<16} {record['psnr_degraded']:>8.2f} {record['psnr']:>9.2f} "
            f"{record['ssim_degraded']:>8.3f} {record['ssim']:>9.3f}"
        )
    lines.append(
        f"{'mean':<16} {result['psnr_degraded']:>8.2f} {result['psnr']:>9.2f} "
        f"{result['ssim_degraded']:>8.3f} {result['ssim']:>9.3f}"
    )
    lines.append(f"{result['seconds_per_megapixel']:.3f} s per megapixel")
    return "\n".join(lines)
