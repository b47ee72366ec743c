"""Evaluate a restoration model on a folder of clean images with fixed, seeded degradations."""

import json
import time

from keras_resunet import data, degradations, metrics
from keras_resunet.io import write_text_atomically


def evaluate_model(model, images, degradation, seed=0, names=None):
    """Restores every degraded image one at a time and scores it against the clean one.

    Args:
        model: a Keras model (image in, image out).
        images: clean float32 (H, W, C) images in [0, 1].
        degradation: callable `(images, seed) -> degraded`.
        seed: evaluation seed; image i is degraded with seed (seed, i).
        names: optional image names for the per-image records.

    Returns:
        dict with per-image records (name, PSNR/SSIM of the degraded input and of the output),
        means, and seconds per megapixel of restoration (after one warm-up image).
    """
    degraded, clean = data.evaluation_pairs(images, degradation, seed)
    names = names or [f"image{index:03d}" for index in range(len(images))]
    model.predict(degraded[0][None], verbose=0)  # warm-up: tracing is not restoration time
    restored, seconds = [], 0.0
    for image in degraded:
        start = time.perf_counter()
        restored.append(model.predict(image[None], verbose=0)[0])
        seconds += time.perf_counter() - start
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
        "psnr": after["psnr_summary"]["mean"],
        "ssim": after["ssim_summary"]["mean"],
        "psnr_degraded": before["psnr_summary"]["mean"],
        "ssim_degraded": before["ssim_summary"]["mean"],
        "seconds_per_megapixel": seconds / megapixels,
        "images": records,
    }


def evaluate_folder(model_path, folder, task="denoise", sigma=0.1, kernel="gaussian", seed=0):
    """`evaluate_model` on a `.keras` file and an image folder (read in the model's channels)."""
    from keras_resunet.inference import load_model

    model = load_model(model_path)
    images, paths = data.load_images(folder, channels=model.input_shape[-1])
    degradation = degradations.make_degradation(
        task,
        sigma=sigma,
        kernel=None if task == "denoise" else degradations.make_kernel(kernel),
    )
    result = evaluate_model(model, images, degradation, seed, names=[p.name for p in paths])
    return {
        "model": str(model_path),
        "data": str(folder),
        "task": task,
        "sigma": sigma,
        "seed": seed,
        **result,
    }


def write_json(path, result):
    """Writes `result` as JSON atomically."""
    write_text_atomically(path, json.dumps(result, indent=2))


def format_table(result):
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
