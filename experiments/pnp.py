"""`python -m experiments.pnp`: plug-and-play deblurring and super-resolution, measured.

    python -m experiments.pnp [--parts deblur,home,sr,iterations] [--cbsd68-images 10]
        [--bm3d-images 3] [--home-images 20] [--quick]

Each run may measure some parts (and sets) only; the others keep their results in summary.json.

- deblur: DPIR's colour deblurring protocol. Each photo is blurred circularly by each kernel (the
  8 Levin et al. camera-shake kernels, the 12-kernel Gaussian / motion set) and Gaussian noise of
  sigma 2.55/255 or 7.65/255 is added (seed: photo, kernel, level); PSNR of the clipped output on
  the whole image. On the same inputs: plug-and-play with the noise-map ResUNet, BM3D deblurring
  (known kernel and sigma; on the first `--bm3d-images` photos of each set, it costs seconds a
  channel), Wiener deconvolution (noise-to-signal ratio 0.02 (sigma / 0.1)^2), and the dedicated
  deblur model (trained on one 7x7 Gaussian at sigma 0.1). Set3C and the first
  `--cbsd68-images` CBSD68 photos.
- home: the dedicated model's own protocol (7x7 Gaussian of std 1.6, sigma 0.1, the project's
  seeded evaluation) on the first `--home-images` photos of BSDS300 test and CBSD68.
- sr: x2 and x4 super-resolution of the bicubic degradation (`pnp.bicubic_kernel`, then every
  scale-th pixel), noise-free and at 2.55/255, against bicubic interpolation.
- iterations: PSNR and time against the iteration count, on validation photos (Photos1k/val
  crops; never a test set), Levin kernels, 2.55/255.

Writes results/pnp/{summary.json, README.md, deblur.png}.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments import common
from keras_resunet import (
    data,
    data_sources,
    datasets,
    degradations,
    evaluation,
    metrics,
    pnp,
    provenance,
    results,
)
from keras_resunet.baselines import BM3DDenoiser, wiener_deconvolve
from keras_resunet.inference import load_denoiser, restore_image
from keras_resunet.io import write_text_atomically
from keras_resunet.operators import BlurOperator

NOISES_255 = (2.55, 7.65)
DENOISER = "resunet-noise-map"
DEDICATED = "resunet-strong-deblur-denoise"
KERNEL_COUNTS = {"levin": 8, "kernels12": 12}


def kernel_sets(root):
    levin = np.load(root / "kernels" / "levin09.npz")
    twelve = np.load(root / "kernels" / "kernels_12.npy")
    return {
        "levin": [levin[f"kernel_{i}"] for i in range(len(levin))],
        "kernels12": list(twelve),
    }


def load_set(name, root, limit):
    if name == "Set3C":
        images, paths = data.load_images(root / "Set3C", limit=limit)
        return images, [p.name for p in paths]
    return datasets.load_test_set(name, root, limit=limit)


def wiener(observed, kernel, sigma):
    balance = 0.02 * (max(sigma, 1e-3) / 0.1) ** 2
    return np.clip(wiener_deconvolve(observed, kernel, balance)[0], 0, 1)


def deblur(args, root, denoiser, dedicated, log):
    """{set: {kernel set: {noise: {method: [PSNR per (photo, kernel)]}}}} and the seconds of
    plug-and-play per megapixel."""
    rows, seconds, pixels = {}, 0.0, 0
    kernels = kernel_sets(root)
    sets = {"Set3C": None, "CBSD68": args.cbsd68_images}
    for set_name, limit in sets.items():
        if set_name not in args.sets.split(","):
            continue
        images, _ = load_set(set_name, root, 1 if args.quick else limit)
        rows[set_name] = {}
        for kernel_set, kernel_list in kernels.items():
            kernel_list = kernel_list[:2] if args.quick else kernel_list
            rows[set_name][kernel_set] = {}
            for level_index, noise_255 in enumerate(NOISES_255):
                sigma = noise_255 / 255
                scores = {"degraded": [], "pnp": [], "bm3d": [], "wiener": [], "dedicated": []}
                for kernel_index, kernel in enumerate(kernel_list):
                    solver = pnp.PlugAndPlay(
                        denoiser,
                        BlurOperator(kernel),
                        sigma,
                        pnp.Schedule(iterations=args.iterations),
                        boundary="circular",
                    )
                    for image_index, clean in enumerate(images):
                        seed = [image_index, kernel_index, level_index]
                        observed = solver.degrade(clean, seed)
                        start = time.perf_counter()
                        restored = solver.restore_one(observed)
                        seconds += time.perf_counter() - start
                        pixels += clean.shape[0] * clean.shape[1]
                        outputs = {
                            "degraded": observed,
                            "pnp": restored,
                            "wiener": wiener(observed, kernel, sigma),
                            "dedicated": restore_image(dedicated, observed),
                            "bm3d": BM3DDenoiser(sigma, kernel=kernel).restore_one(observed)
                            if image_index < args.bm3d_images
                            else None,
                        }
                        for method, output in outputs.items():
                            scores[method].append(
                                None
                                if output is None
                                else float(metrics.psnr(np.clip(output, 0, 1), clean))
                            )
                scores["kernels"] = len(kernel_list)  # the lists run kernel by kernel
                rows[set_name][kernel_set][f"{noise_255}"] = scores
                log(
                    f"{set_name} {kernel_set} {noise_255}/255: pnp "
                    f"{np.mean(scores['pnp']):.2f} dB over {len(scores['pnp'])} inputs"
                )
    return rows, seconds / (pixels / 1e6)


def home(args, root, denoiser, dedicated, log):
    """The dedicated model's protocol: {set: {method: mean PSNR}}."""
    degradation = degradations.make_degradation("deblur_denoise", sigma=0.1)
    kernel = degradations.blur_kernel(degradation)
    solver = pnp.PlugAndPlay(
        denoiser, BlurOperator(kernel), 0.1, pnp.Schedule(args.iterations), boundary="circular"
    )
    found = {}
    for name in ("BSDS300", "CBSD68"):
        images, names = datasets.load_test_set(
            name, root, limit=2 if args.quick else args.home_images
        )
        found[name] = {"images": len(images)}
        for method, restorer in (("pnp", solver), ("dedicated", dedicated)):
            result = evaluation.evaluate_model(restorer, images, degradation, seed=0, names=names)
            found[name][method] = round(result["psnr"], 3)
            found[name]["degraded"] = round(result["psnr_degraded"], 3)
        log(f"home protocol {name}: {found[name]}")
    return found


def super_resolution(args, root, denoiser, log):
    """{set: {"x2@0": {"bicubic": mean, "pnp": mean}, ...}}."""
    found = {}
    for set_name, limit in (("Set3C", None), ("CBSD68", args.cbsd68_images)):
        images, _ = load_set(set_name, root, 1 if args.quick else limit)
        found[set_name] = {}
        for scale in (2, 4):
            for level_index, noise_255 in enumerate((0.0, 2.55)):
                solver = pnp.PlugAndPlay(
                    denoiser,
                    pnp.make_operator(None, scale),
                    noise_255 / 255,
                    pnp.Schedule(iterations=args.sr_iterations),
                    boundary="circular",
                )
                bicubic, ours = [], []
                for image_index, image in enumerate(images):
                    height, width = (side - side % scale for side in image.shape[:2])
                    clean = image[:height, :width]
                    low = solver.degrade(clean, [image_index, scale, level_index])
                    upscaled = np.clip(pnp.bicubic_upscale(low, scale), 0, 1)
                    bicubic.append(float(metrics.psnr(upscaled, clean)))
                    ours.append(float(metrics.psnr(solver.restore_one(low), clean)))
                key = f"x{scale}@{noise_255}"
                found[set_name][key] = {
                    "bicubic": float(np.mean(bicubic)),
                    "pnp": float(np.mean(ours)),
                }
                log(f"SR {set_name} {key}: {found[set_name][key]}")
    return found


SWEEP_PHOTOS, SWEEP_CROP = 6, 256


def sweep_images(root, quick):
    """The photos the iteration count is chosen on: validation photos, never a test set
    (every 14th of Photos1k/val, 256x256 centre crops, as large as Set3C's)."""
    images, names = datasets.load_test_set("Photos1k/val", root)
    step = max(1, len(images) // SWEEP_PHOTOS)
    picked = list(range(0, len(images), step))[: 1 if quick else SWEEP_PHOTOS]
    crops = []
    for index in picked:
        image = images[index]
        top = (image.shape[0] - SWEEP_CROP) // 2
        left = (image.shape[1] - SWEEP_CROP) // 2
        crops.append(image[max(top, 0) : top + SWEEP_CROP, max(left, 0) : left + SWEEP_CROP])
    return crops, [names[i] for i in picked]


def iteration_sweep(args, root, denoiser, log):
    """{"data", "rows": [{"iterations", "psnr", "seconds_per_image"}], "sr_rows": [{"scale",
    "iterations", "psnr", "bicubic", "seconds_per_image"}]} on validation crops: deblurring
    with the Levin kernels at 2.55/255; x2 and x4 super-resolution, noise-free and at 2.55/255."""
    images, names = sweep_images(root, args.quick)
    kernels = kernel_sets(root)["levin"][: 2 if args.quick else None]
    sigma = NOISES_255[0] / 255
    found = []
    for count in (2, 4) if args.quick else (4, 8, 12, 16, 24):
        scores, start = [], time.perf_counter()
        for kernel_index, kernel in enumerate(kernels):
            solver = pnp.PlugAndPlay(
                denoiser, BlurOperator(kernel), sigma, pnp.Schedule(count), boundary="circular"
            )
            for image_index, clean in enumerate(images):
                observed = solver.degrade(clean, [image_index, kernel_index, 0])
                scores.append(float(metrics.psnr(solver.restore_one(observed), clean)))
        seconds = (time.perf_counter() - start) / len(scores)
        found.append(
            {"iterations": count, "psnr": float(np.mean(scores)), "seconds_per_image": seconds}
        )
        log(f"{count} iterations: {found[-1]}")
    sr_rows = []
    for scale in (2, 4):
        for count in (2, 4) if args.quick else (8, 16, 24):
            scores, bicubic, start = [], [], time.perf_counter()
            for level_index, noise_255 in enumerate((0.0, 2.55)):
                solver = pnp.PlugAndPlay(
                    denoiser,
                    pnp.make_operator(None, scale),
                    noise_255 / 255,
                    pnp.Schedule(count),
                    boundary="circular",
                )
                for image_index, clean in enumerate(images):
                    low = solver.degrade(clean, [image_index, scale, level_index])
                    scores.append(float(metrics.psnr(solver.restore_one(low), clean)))
                    upscaled = np.clip(pnp.bicubic_upscale(low, scale), 0, 1)
                    bicubic.append(float(metrics.psnr(upscaled, clean)))
            seconds = (time.perf_counter() - start) / len(scores)
            sr_rows.append(
                {"scale": scale, "iterations": count, "psnr": float(np.mean(scores)),
                 "bicubic": float(np.mean(bicubic)), "seconds_per_image": seconds}
            )  # fmt: skip
            log(f"x{scale}, {count} iterations: {sr_rows[-1]}")
    data = f"Photos1k/val ({', '.join(names)}), {SWEEP_CROP}x{SWEEP_CROP} centre crops"
    return {"data": data, "rows": found, "sr_rows": sr_rows}


def figure(root, denoiser, dedicated, path):
    """Deblurred crops of Set3C's butterfly (Levin kernel 3, 2.55/255) by each method."""
    images, _ = load_set("Set3C", root, None)
    clean = images[0]
    kernel = kernel_sets(root)["levin"][3]
    solver = pnp.PlugAndPlay(denoiser, BlurOperator(kernel), 2.55 / 255, boundary="circular")
    observed = solver.degrade(clean, [0, 3, 0])
    outputs = {
        "plug-and-play": solver.restore_one(observed),
        "BM3D deblurring": np.clip(BM3DDenoiser(2.55 / 255, kernel).restore_one(observed), 0, 1),
        "Wiener": wiener(observed, kernel, 2.55 / 255),
        "dedicated model": restore_image(dedicated, observed),
    }
    panels = [
        ("ground truth", clean),
        (f"blurred {metrics.psnr(np.clip(observed, 0, 1), clean):.2f} dB", np.clip(observed, 0, 1)),
    ]
    panels += [
        (f"{name} {metrics.psnr(image, clean):.2f} dB", image) for name, image in outputs.items()
    ]
    results.make_figure(path, panels, crop=(64, 64, 128, 128))


def run(args, log=print):
    root = data_sources.resolve_data_root(args.data_root)
    out = Path(args.out)
    denoiser = load_denoiser(args.model)
    dedicated = load_denoiser(DEDICATED)
    parts = set(args.parts.split(","))
    unknown = parts - {"deblur", "home", "sr", "iterations"}
    if unknown:
        raise ValueError(f"Unknown --parts {sorted(unknown)}: deblur, home, sr, iterations")
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    # a run may measure some parts (or sets) only: the others keep their results, and each
    # part keeps the command, model and machine that measured it
    made = {
        **provenance.record_fields(args.command),
        "model": args.model,
        "iterations": args.iterations,
        "sr_iterations": args.sr_iterations,
    }
    made_by = summary.setdefault("made", {})
    if "deblur" in parts:
        rows, seconds = deblur(args, root, denoiser, dedicated, log)
        found = summary.setdefault("deblur", {})
        found.setdefault("rows", {}).update(rows)
        found["pnp_seconds_per_megapixel"] = seconds
        made_by.update({f"deblur/{name}": made for name in rows})
    if "home" in parts:
        summary["home"] = home(args, root, denoiser, dedicated, log)
        made_by["home"] = made
    if "sr" in parts:
        summary["sr"] = super_resolution(args, root, denoiser, log)
        made_by["sr"] = made
    if "iterations" in parts:
        summary["iteration_sweep"] = iteration_sweep(args, root, denoiser, log)
        made_by["iterations"] = made
    summary.update(made)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(summary_path, json.dumps(summary, indent=1) + "\n")
    if not args.quick:
        figure(root, denoiser, dedicated, out / "deblur.png")
    write_text_atomically(out / "README.md", readme(summary))
    log(f"wrote {out}/summary.json, README.md")
    return summary


def kernel_margins(scores, kernels):
    """Per kernel, plug-and-play's mean PSNR minus BM3D's over the photos BM3D ran on (the
    score lists run kernel by kernel, photo by photo); kernels without BM3D are left out."""
    per = len(scores["pnp"]) // kernels
    margins = []
    for kernel in range(kernels):
        pairs = [
            (p, b)
            for p, b in zip(
                scores["pnp"][kernel * per : (kernel + 1) * per],
                scores["bm3d"][kernel * per : (kernel + 1) * per],
            )
            if b is not None
        ]
        if pairs:
            margins.append(float(np.mean([p - b for p, b in pairs])))
    return margins


def _made(summary, prefix):
    """{part: how it was measured} for the parts whose key starts with `prefix` (summaries
    written before parts kept their own: the summary's own command)."""
    found = {k: v for k, v in summary.get("made", {}).items() if k.startswith(prefix)}
    return found or {prefix: {"command": summary["command"]}}


def _measured_by(summary, part):
    commands = sorted({made["command"] for made in _made(summary, part).values()})
    return "Measured by " + ", ".join(f"`{command}`" for command in commands) + "."


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _sr_iterations(summary):
    made = summary.get("made", {}).get("sr", summary)
    return made.get("sr_iterations", made.get("iterations"))


def _cell(value):
    return "" if value is None else f"{value:.2f}"


def readme(summary):
    parts = []
    if "deblur" in summary:
        table = results.table_header(
            ["set", "kernels", "noise (/255)", "inputs", "blurred", "plug-and-play",
             "BM3D deblurring (first photos)", "plug-and-play, same photos",
             "kernels won against BM3D (smallest margin, dB)", "Wiener", "dedicated model"],
            left=2,
        )  # fmt: skip
        for set_name, by_kernels in summary["deblur"]["rows"].items():
            for kernel_set, by_noise in by_kernels.items():
                for noise, scores in by_noise.items():
                    paired = [p for p, b in zip(scores["pnp"], scores["bm3d"]) if b is not None]
                    margins = kernel_margins(
                        scores, scores.get("kernels", KERNEL_COUNTS[kernel_set])
                    )
                    won = (
                        f"{sum(m > 0 for m in margins)} / {len(margins)} ({min(margins):.2f})"
                        if margins
                        else ""
                    )
                    table.append(
                        f"| {set_name} | {kernel_set} | {noise} | {len(scores['pnp'])} "
                        f"| {_cell(_mean(scores['degraded']))} | {_cell(_mean(scores['pnp']))} "
                        f"| {_cell(_mean(scores['bm3d']))} | {_cell(_mean(paired))} | {won} "
                        f"| {_cell(_mean(scores['wiener']))} | {_cell(_mean(scores['dedicated']))} |"
                    )

        parts.append(
            "## Deblurring\n\nCircular blur, Gaussian noise, PSNR (dB) on the whole clipped "
            "output, mean over photos and kernels. BM3D deblurring ran on the first photos of "
            "each set only (its column and the plug-and-play column beside it are the same "
            "inputs); a kernel is won when plug-and-play's mean over those photos is higher. "
            f"{_measured_by(summary, 'deblur/')}\n\n"
            + "\n".join(table)
            + "\n\nPlug-and-play time: "
            f"{summary['deblur']['pnp_seconds_per_megapixel']:.1f} s per megapixel.\n\n"
            "![Deblurred crops](deblur.png)\n"
        )
    if "home" in summary:
        rows = results.table_header(
            ["test set", "images", "blurred", "plug-and-play", "dedicated model"]
        )
        for name, found in summary["home"].items():
            rows.append(
                f"| {name} | {found['images']} | {found['degraded']:.2f} | {found['pnp']:.2f} | {found['dedicated']:.2f} |"
            )
        parts.append(
            "## The dedicated model's protocol\n\n7x7 Gaussian blur (std 1.6), noise sigma 0.1, "
            "the project's seeded evaluation (first images of each set). "
            f"{_measured_by(summary, 'home')}\n\n" + "\n".join(rows) + "\n"
        )
    if "sr" in summary:
        rows = results.table_header(
            ["set", "scale @ noise (/255)", "bicubic interpolation", "plug-and-play"], left=2
        )
        for set_name, found in summary["sr"].items():
            for key, scores in found.items():
                rows.append(
                    f"| {set_name} | {key} | {scores['bicubic']:.2f} | {scores['pnp']:.2f} |"
                )
        parts.append(
            "## Super-resolution\n\nBicubic degradation (the bicubic kernel, then every scale-th "
            f"pixel), noise-free or with noise; {_sr_iterations(summary)} iterations. "
            f"{_measured_by(summary, 'sr')}\n\n" + "\n".join(rows) + "\n"
        )
    if "iteration_sweep" in summary:
        rows = results.table_header(["iterations", "PSNR (dB)", "s per image"], left=0)
        sweep = summary["iteration_sweep"]
        if isinstance(sweep, list):  # written before the sweep moved to validation photos
            sweep = {"data": "Set3C", "rows": sweep}
        rows += [
            f"| {r['iterations']} | {r['psnr']:.2f} | {r['seconds_per_image']:.2f} |"
            for r in sweep["rows"]
        ]
        text = (
            f"## Iterations\n\n{sweep['data']}. Deblurring: the 8 Levin kernels, noise "
            f"2.55/255. {_measured_by(summary, 'iterations')}\n\n" + "\n".join(rows) + "\n"
        )
        if sweep.get("sr_rows"):
            sr_table = results.table_header(
                ["scale", "iterations", "PSNR (dB)", "bicubic (dB)", "s per image"], left=0
            )
            sr_table += [
                f"| x{r['scale']} | {r['iterations']} | {r['psnr']:.2f} | {r['bicubic']:.2f} "
                f"| {r['seconds_per_image']:.2f} |"
                for r in sweep["sr_rows"]
            ]
            text += (
                "\nSuper-resolution (bicubic degradation, noise-free and 2.55/255, mean of "
                "both):\n\n" + "\n".join(sr_table) + "\n"
            )
        parts.append(text)
    return f"""# Plug-and-play restoration: deblurring and super-resolution

`{summary["model"]}` as the prior of half-quadratic splitting (`keras_resunet.pnp`,
{summary["iterations"]} iterations for deblurring unless said), on {summary["machine"]}. Each part names the
command that measured it; `summary.json` keeps the records.

""" + "\n".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DENOISER)
    parser.add_argument("--parts", default="deblur,home,sr,iterations")
    parser.add_argument("--iterations", type=int, default=pnp.DEBLUR_ITERATIONS)
    parser.add_argument("--sr-iterations", type=int, default=pnp.SR_ITERATIONS)
    parser.add_argument("--sets", default="Set3C,CBSD68", help="deblurring test sets")
    parser.add_argument("--cbsd68-images", type=int, default=10)
    parser.add_argument("--bm3d-images", type=int, default=3)
    parser.add_argument("--home-images", type=int, default=20)
    parser.add_argument("--data-root")
    parser.add_argument("--out", default="results/pnp")
    parser.add_argument("--quick", action="store_true", help="one photo, two kernels")
    args = parser.parse_args(argv)
    args.command = provenance.command_line("experiments.pnp", argv)
    return common.run_timed("pnp", run, args)


if __name__ == "__main__":
    sys.exit(main())
