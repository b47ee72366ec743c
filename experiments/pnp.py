"""`python -m experiments.pnp`: plug-and-play deblurring and super-resolution, measured.

    python -m experiments.pnp [--parts deblur,home,sr,iterations] [--cbsd68-images 10]
        [--bm3d-images 3] [--home-images 20] [--quick]

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
- iterations: PSNR and time against the iteration count (Set3C, Levin kernels, 2.55/255).

Writes results/pnp/{summary.json, README.md, deblur.png}.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments import common
from keras_resunet import data, degradations, evaluation, experiment, metrics, pnp, results
from keras_resunet.baselines import BM3DDenoiser, wiener_deconvolve
from keras_resunet.inference import load_denoiser, restore_image
from keras_resunet.io import write_text_atomically
from keras_resunet.operators import BlurOperator

NOISES_255 = (2.55, 7.65)
DENOISER = "resunet-noise-map"
DEDICATED = "resunet-strong-deblur-denoise"


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
    return experiment.load_test_set(name, root, limit=limit)


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
                rows[set_name][kernel_set][f"{noise_255}"] = scores
                log(
                    f"{set_name} {kernel_set} {noise_255}/255: pnp "
                    f"{np.mean(scores['pnp']):.2f} dB over {len(scores['pnp'])} inputs"
                )
    return rows, seconds / (pixels / 1e6)


def home(args, root, denoiser, dedicated, log):
    """The dedicated model's protocol: {set: {method: mean PSNR}}."""
    kernel = degradations.task_kernel("deblur_denoise")
    degradation = degradations.make_degradation("deblur_denoise", sigma=0.1, kernel=kernel)
    solver = pnp.PlugAndPlay(
        denoiser, BlurOperator(kernel), 0.1, pnp.Schedule(args.iterations), boundary="circular"
    )
    found = {}
    for name in ("BSDS300", "CBSD68"):
        images, names = experiment.load_test_set(
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
                    pnp.Schedule(iterations=args.iterations),
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


def iteration_sweep(args, root, denoiser, log):
    """[{"iterations", "psnr", "seconds_per_image"}] on Set3C with the Levin kernels."""
    images, _ = load_set("Set3C", root, 1 if args.quick else None)
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
    return found


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
    root = data.resolve_data_root(args.data_root)
    out = Path(args.out)
    denoiser = load_denoiser(args.model)
    dedicated = load_denoiser(DEDICATED)
    parts = set(args.parts.split(","))
    unknown = parts - {"deblur", "home", "sr", "iterations"}
    if unknown:
        raise ValueError(f"Unknown --parts {sorted(unknown)}: deblur, home, sr, iterations")
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if "deblur" in parts:
        rows, seconds = deblur(args, root, denoiser, dedicated, log)
        summary["deblur"] = {"rows": rows, "pnp_seconds_per_megapixel": seconds}
    if "home" in parts:
        summary["home"] = home(args, root, denoiser, dedicated, log)
    if "sr" in parts:
        summary["sr"] = super_resolution(args, root, denoiser, log)
    if "iterations" in parts:
        summary["iteration_sweep"] = iteration_sweep(args, root, denoiser, log)
    summary.update(
        {
            "model": args.model,
            "iterations": args.iterations,
            "settings": {
                "sets": args.sets,
                "cbsd68_images": args.cbsd68_images,
                "bm3d_images": args.bm3d_images,
                "home_images": args.home_images,
            },
            **experiment.provenance(),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(summary_path, json.dumps(summary, indent=1) + "\n")
    if not args.quick:
        figure(root, denoiser, dedicated, out / "deblur.png")
    write_text_atomically(out / "README.md", readme(summary))
    log(f"wrote {out}/summary.json, README.md")
    return summary


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _cell(value):
    return "" if value is None else f"{value:.2f}"


def readme(summary):
    parts = []
    if "deblur" in summary:
        table = [
            "| set | kernels | noise (/255) | inputs | blurred | plug-and-play | BM3D deblurring (first photos) | plug-and-play, same photos | Wiener | dedicated model |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for set_name, by_kernels in summary["deblur"]["rows"].items():
            for kernel_set, by_noise in by_kernels.items():
                for noise, scores in by_noise.items():
                    paired = [p for p, b in zip(scores["pnp"], scores["bm3d"]) if b is not None]
                    table.append(
                        f"| {set_name} | {kernel_set} | {noise} | {len(scores['pnp'])} "
                        f"| {_cell(_mean(scores['degraded']))} | {_cell(_mean(scores['pnp']))} "
                        f"| {_cell(_mean(scores['bm3d']))} | {_cell(_mean(paired))} "
                        f"| {_cell(_mean(scores['wiener']))} | {_cell(_mean(scores['dedicated']))} |"
                    )
        parts.append(
            "## Deblurring\n\nCircular blur, Gaussian noise, PSNR (dB) on the whole clipped "
            "output, mean over photos and kernels. BM3D deblurring ran on the first photos of "
            "each set only (its column and the plug-and-play column beside it are the same "
            "inputs).\n\n" + "\n".join(table) + "\n\nPlug-and-play time: "
            f"{summary['deblur']['pnp_seconds_per_megapixel']:.1f} s per megapixel.\n\n"
            "![Deblurred crops](deblur.png)\n"
        )
    if "home" in summary:
        rows = [
            "| test set | images | blurred | plug-and-play | dedicated model |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, found in summary["home"].items():
            rows.append(
                f"| {name} | {found['images']} | {found['degraded']:.2f} | {found['pnp']:.2f} | {found['dedicated']:.2f} |"
            )
        parts.append(
            "## The dedicated model's protocol\n\n7x7 Gaussian blur (std 1.6), noise sigma 0.1, "
            "the project's seeded evaluation (first images of each set).\n\n"
            + "\n".join(rows)
            + "\n"
        )
    if "sr" in summary:
        rows = [
            "| set | scale @ noise (/255) | bicubic interpolation | plug-and-play |",
            "| --- | --- | ---: | ---: |",
        ]
        for set_name, found in summary["sr"].items():
            for key, scores in found.items():
                rows.append(
                    f"| {set_name} | {key} | {scores['bicubic']:.2f} | {scores['pnp']:.2f} |"
                )
        parts.append(
            "## Super-resolution\n\nBicubic degradation (the bicubic kernel, then every scale-th "
            "pixel), noise-free or with noise.\n\n" + "\n".join(rows) + "\n"
        )
    if "iteration_sweep" in summary:
        rows = ["| iterations | PSNR (dB) | s per image |", "| ---: | ---: | ---: |"]
        rows += [
            f"| {r['iterations']} | {r['psnr']:.2f} | {r['seconds_per_image']:.2f} |"
            for r in summary["iteration_sweep"]
        ]
        parts.append(
            "## Iterations\n\nSet3C, the 8 Levin kernels, noise 2.55/255.\n\n"
            + "\n".join(rows)
            + "\n"
        )
    return f"""# Plug-and-play restoration: deblurring and super-resolution

`{summary["model"]}` as the prior of half-quadratic splitting (`keras_resunet.pnp`,
{summary["iterations"]} iterations unless said), written by `{summary["command"]}` on
{summary["machine"]}.

""" + "\n".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DENOISER)
    parser.add_argument("--parts", default="deblur,home,sr,iterations")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--sets", default="Set3C,CBSD68", help="deblurring test sets")
    parser.add_argument("--cbsd68-images", type=int, default=10)
    parser.add_argument("--bm3d-images", type=int, default=3)
    parser.add_argument("--home-images", type=int, default=20)
    parser.add_argument("--data-root")
    parser.add_argument("--out", default="results/pnp")
    parser.add_argument("--quick", action="store_true", help="one photo, two kernels")
    args = parser.parse_args(argv)
    return common.run_timed("pnp", run, args)


if __name__ == "__main__":
    sys.exit(main())
