"""`python -m experiments.noise_estimate`: how well `resunet denoise` finds the noise level of a
photo as cameras and editors save it, and what that costs the restoration.

    python -m experiments.noise_estimate [--model resunet-noise-map] [--restore-images 20]
        [--data-root DIR] [--out results/noise_estimate] [--quick]

On the validation photos (Photos1k/val; never a test set): each photo gets seeded Gaussian noise
(image i: seed (0, i)), is rounded to 8 bits and saved as PNG or as JPEG (quality 95 / 90 / 85 /
75, chroma subsampled 4:2:0 as cameras and most editors write it), then decoded. Two estimators read each decoded photo, both in luma and corrected for clipping
(`keras_resunet.noise_level.estimate_sigma`): over the whole image, and over its flattest blocks;
`resunet denoise` without `--sigma` uses the first for JPEGs under quality FINE_QUALITY and the
second for the rest. On the centre 256x256 crops of the first
`--restore-images` photos the noise-map model restores each input given the true sigma and each
estimate. Writes results/noise_estimate/{summary.json, README.md}.
"""

import argparse
import io
import json
from importlib import metadata
from pathlib import Path

import numpy as np

from experiments import common
from keras_resunet import data, datasets, degradations, metrics, provenance
from keras_resunet.io import write_text_atomically
from keras_resunet.noise_level import FINE_QUALITY, estimate_sigma, measured_whole

VALIDATION = "Photos1k/val"
SIGMAS_255 = (0, 5, 15, 25, 50, 75)
# name: Pillow's JPEG save options; None is lossless PNG
FORMATS = {
    "PNG": None,
    "JPEG q95 4:2:0": {"quality": 95, "subsampling": 2},
    "JPEG q90 4:2:0": {"quality": 90, "subsampling": 2},
    "JPEG q85 4:2:0": {"quality": 85, "subsampling": 2},
    "JPEG q75 4:2:0": {"quality": 75, "subsampling": 2},
}
CROP = 256


def whole_image_estimate(image):
    """The estimate measured over the whole image (as for a file of unknown lossy quality)."""
    return estimate_sigma(image, stored_quality=0)


# name: (estimator, its column heading)
ESTIMATORS = {
    "whole": (whole_image_estimate, "whole image"),
    "blocks": (estimate_sigma, "flattest blocks"),
}


def used_estimator(options):
    """The estimator `resunet denoise` uses for a file saved with these options."""
    return "whole" if measured_whole(None if options is None else options["quality"]) else "blocks"


def saved_as(image, options):
    """`image` rounded to 8 bits, written in memory as PNG (options None) or JPEG, read back."""
    from PIL import Image

    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    if options is None:
        return pixels.astype(np.float32) / 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), np.float32) / 255


def centre_crop(image, size=CROP):
    height, width = image.shape[:2]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return image[top : top + size, left : left + size]


def run(args, log=print):
    from keras_resunet.inference import load_denoiser, restore_image

    limit = 4 if args.quick else None
    images, _ = datasets.load_test_set(VALIDATION, args.data_root, limit=limit)
    restore_count = min(2 if args.quick else args.restore_images, len(images))
    sigmas = (0, 25) if args.quick else SIGMAS_255
    denoiser = load_denoiser(args.model)
    if not denoiser.takes_sigma:
        raise ValueError(f"{args.model} has no noise-level input: not a noise-level-map model")
    rows = {}
    for sigma_255 in sigmas:
        noise = degradations.GaussianNoise(sigma=sigma_255 / 255)
        noisy, clean = data.evaluation_pairs(images, noise, seed=0)
        for label, options in FORMATS.items():
            log(f"sigma {sigma_255}/255, {label}")
            inputs = [saved_as(image, options) for image in noisy]
            row = {
                "images": len(inputs),
                "restored_crops": restore_count,
                "used": used_estimator(options),
            }
            estimates = {}
            for name, (estimator, _) in ESTIMATORS.items():
                values = np.array([estimator(image) for image in inputs]) * 255
                estimates[name] = values
                row[f"{name}_mean_255"] = round(float(values.mean()), 2)
                if sigma_255:
                    error = np.abs(values - sigma_255) / sigma_255
                    row[f"{name}_median_error"] = round(float(np.median(error)), 4)
                else:
                    row[f"{name}_median_error"] = None
            crops = [centre_crop(image) for image in inputs[:restore_count]]
            targets = [centre_crop(image) for image in clean[:restore_count]]
            row["input_psnr"] = round(
                float(np.mean([metrics.psnr(c, t) for c, t in zip(crops, targets)])), 3
            )
            given = {"true": [sigma_255 / 255] * restore_count}
            given.update({name: values[:restore_count] / 255 for name, values in estimates.items()})
            for name, levels in given.items():
                restored = [
                    restore_image(denoiser.at_sigma(float(level)), crop)
                    for crop, level in zip(crops, levels)
                ]
                scores = [metrics.psnr(r, t) for r, t in zip(restored, targets)]
                row[f"psnr_{name}_sigma"] = round(float(np.mean(scores)), 3)
            rows[f"{sigma_255}/{label}"] = row
    summary = {
        "model": str(args.model),
        "data": VALIDATION,
        "sigmas_255": list(sigmas),
        "fine_quality": FINE_QUALITY,
        "formats": FORMATS,
        "crop": CROP,
        "scikit_image": metadata.version("scikit-image"),
        "rows": rows,
        **provenance.record_fields(),
    }
    out = Path(args.out)
    write_text_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomically(out / "README.md", readme(summary))
    log(f"wrote {out}/summary.json, README.md")
    return summary


def readme(summary):
    names = list(ESTIMATORS)
    headings = " | ".join(ESTIMATORS[name][1] for name in names)
    estimates = [
        f"| sigma | saved as | {headings} | resunet denoise uses |",
        "|---|---|" + "---|" * (len(names) + 1),
    ]
    restored = [
        f"| sigma | saved as | input | true sigma | {headings} | resunet denoise uses |",
        "|---|---|---|---|" + "---|" * (len(names) + 1),
    ]
    for key, row in summary["rows"].items():
        sigma, label = key.split("/", 1)
        cells = []
        for name in names:
            error = row[f"{name}_median_error"]
            cells.append(
                f"{row[f'{name}_mean_255']:.1f}" + ("" if error is None else f" ({error:.2f})")
            )
        used = ESTIMATORS[row["used"]][1]
        estimates.append(f"| {sigma} | {label} | {' | '.join(cells)} | {used} |")
        scores = " | ".join(f"{row[f'psnr_{name}_sigma']:.2f}" for name in names)
        restored.append(
            f"| {sigma} | {label} | {row['input_psnr']:.2f} | {row['psnr_true_sigma']:.2f} "
            f"| {scores} | {used} |"
        )
    first = next(iter(summary["rows"].values()))
    return f"""# Estimating the noise level of saved photos

Written by `{summary["command"]}` on {summary["machine"]}, scikit-image
{summary["scikit_image"]}.

{first["images"]} validation photos ({summary["data"]}, not a test set), each with seeded
Gaussian noise of the sigma shown (/255), clipped and rounded to 8 bits and saved as shown (JPEG
by Pillow; 4:2:0 is what cameras and most editors write), then decoded. Two estimators
(`keras_resunet.noise_level.estimate_sigma`), both the wavelet estimate on luma scaled back to
RGB and corrected for clipping: over the whole image, and over its flattest blocks (a low
percentile of the estimates of 32x32-pixel blocks). `resunet denoise` without `--sigma` uses the
whole-image one for JPEGs under quality {summary["fine_quality"]} (and lossy files of unknown
quality: HEIC, AVIF, lossy WebP, JPEG XL), the flattest blocks for the rest. Sigma 0: clean
photos, only rounded and saved.

## Estimates

Mean estimate (/255) over the photos, and in brackets the median of |estimate - sigma| / sigma.

{chr(10).join(estimates)}

## Restoration

PSNR (dB, against the clean photo) of the centre {summary["crop"]}x{summary["crop"]} crops of
the first {first["restored_crops"]} photos: as input, and restored by `{summary["model"]}` given
the true sigma or each estimate.

{chr(10).join(restored)}
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resunet-noise-map")
    parser.add_argument("--restore-images", type=int, default=20)
    parser.add_argument("--data-root")
    parser.add_argument("--out", default="results/noise_estimate")
    parser.add_argument("--quick", action="store_true", help="4 photos, 2 levels")
    args = parser.parse_args(argv)
    return common.run_timed("noise_estimate", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
