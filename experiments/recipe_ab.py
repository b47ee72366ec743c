"""`python -m experiments.recipe_ab`: which change to the noise-map recipe gains most per CPU-hour.

    python -m experiments.recipe_ab [--steps 2400] [--arms control,l1,patch128,lr_high,wide]
        [--start saved_models/resunet-noise-map.keras] [--config CONFIG] [--name recipe_ab]
        [--quick]

Every arm fine-tunes the same start model with the campaign's config
(experiments/configs/resunet_noise_map.yaml, or `--config`) and one change, for the same number of training
pixels (an arm with larger patches takes fewer steps), on the same seeded data stream (the
`fresh` arm starts from random weights instead). Each finished arm and the start model are then
scored on the validation photos: the config's `val_data` (Photos1k/val for the campaign's
config), or, for a config without one, the 32 BSDS300 test images that are not in CBSD68
(CBSD68, where the results are reported, never chooses the recipe); seeded noise at sigma 15,
25 and 50 /255, the true sigma given, whole photos. Reported: PSNR per sigma, the change from
the start model, training seconds, dB per CPU-hour, and each model's restoration time per
megapixel (timed in the same run as the start model's).

Runs live in runs/NAME/ARM (resumable). Writes results/noise_levels/NAME.{json,md}: a new
start model or question gets a new `--name`, so earlier records stay.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments import common
from keras_resunet import data, data_sources, degradations, evaluation, provenance, results
from keras_resunet.inference import load_denoiser
from keras_resunet.io import write_text_atomically

CONFIG = "experiments/configs/resunet_noise_map.yaml"
SIGMAS_255 = (15, 25, 50)
# Fine-tuning an annealed model: every arm starts at the same small learning rate, then decays.
BASE = {"learning_rate": 5.0e-5, "lr_schedule": "cosine"}
ARMS = {
    "control": {},
    "l1": {"pixel_loss": "l1"},
    "psnr_loss": {"pixel_loss": "psnr"},
    "patch128": {"patch_size": 128},
    # the training photos: BSDS300 train alone, or each of the five sources drawn equally
    # often (by default every photo is, so the 655 ImageNet photos give half the patches)
    "bsds_only": {"train_data": ["BSDS300/images/train"]},
    "sources_equal": {
        "train_data": [
            {"folder": folder, "weight": 1.0}
            for folder in (
                "BSDS300/images/train",
                "Photos1k/train/bsds500",
                "Photos1k/train/imagenet",
                "Photos1k/train/deepphotostyle",
                "Photos1k/train/t91",
            )
        ]
    },
    # what the start model's training is worth: the same pixels from random weights
    "fresh": {"init_from": None, "learning_rate": 1.0e-4},
    "lr_high": {"learning_rate": 1.5e-4},
    # half the patches from the lowest quarter of the noise range (uniform: a quarter)
    "low_sigma": {"sigma_power": 2.0},
    # wider models grow from the start model (32, 32, 96, 192, 256 features per level) without
    # changing what it computes (training.warm_start): 48 features at half resolution, or 48 at
    # full and half resolution and 128, 256 below
    "wide": {"model_args": {"filters": [32, 48, 96, 192, 256]}},
    "wider": {"model_args": {"filters": [48, 48, 128, 256, 256]}},
}
CHECKPOINT_EVERY = 100


def arm_steps(overrides, steps, base_patch):
    """Steps that give an arm the training pixels of `steps` at the base patch size."""
    patch = overrides.get("patch_size", base_patch)
    scaled = steps * base_patch**2 / patch**2
    return max(CHECKPOINT_EVERY, round(scaled / CHECKPOINT_EVERY) * CHECKPOINT_EVERY)


def validation_set(data_root=None, limit=None, folder=None):
    """(images, names, description): the photos of `folder` (read recursively, relative to the
    data root), or without one the BSDS300 test images that are not in CBSD68."""
    root = data_sources.resolve_data_root(data_root)
    if folder is not None:
        path = data_sources.resolve_folder(folder, root)
        images, paths = data.load_images(path, recursive=True, limit=limit)
        if not images:
            raise ValueError(f"no validation image in {path}")
        names = [str(p.relative_to(path)) for p in paths]
        return images, names, f"{len(images)} photos of {folder}"
    reported = {path.stem for path in (root / "CBSD68").iterdir()}
    images, paths = data.load_images(root / "BSDS300/images/test")
    kept = [(image, path.name) for image, path in zip(images, paths) if path.stem not in reported]
    kept = kept[:limit]
    if not kept:
        raise ValueError(f"no BSDS300 test image outside CBSD68 under {root}")
    description = f"{len(kept)} BSDS300 test images not in CBSD68"
    return [image for image, _ in kept], [name for _, name in kept], description


def score(model_path, images, names):
    """(mean PSNR at each validation sigma with the true sigma given, parameter count, seconds
    per megapixel of restoration over the three sigmas)."""
    denoiser = load_denoiser(str(model_path))
    scores, seconds = {}, []
    for sigma_255 in SIGMAS_255:
        degradation = degradations.GaussianNoise(sigma=sigma_255 / 255)
        result = evaluation.evaluate_model(denoiser, images, degradation, seed=0, names=names)
        scores[str(sigma_255)] = round(result["psnr"], 3)
        seconds.append(result["seconds_per_megapixel"])
    return scores, denoiser.model.count_params(), round(float(np.mean(seconds)), 3)


def run(args):
    from keras_resunet.training import TrainConfig, read_progress, train

    unknown = [arm for arm in args.arms if arm not in ARMS]
    if unknown:
        raise ValueError(f"Unknown arms {unknown}. Valid: {sorted(ARMS)}")
    if not Path(args.start).is_file():
        raise FileNotFoundError(f"start model not found: {args.start}")
    steps = min(200, args.steps) if args.quick else args.steps
    limit = 2 if args.quick else None
    base = TrainConfig.from_yaml(args.config)
    images, names, described = validation_set(args.data_root, limit, base.val_data)
    runs = Path(args.runs) / (f"{args.name}_quick" if args.quick else args.name)
    record = {
        "command": provenance.command_line("experiments.recipe_ab", args.argv),
        "config": args.config,
        "start": args.start,
        "common_changes": BASE,
        "validation": f"{described}, seeded noise, true sigma given",
        "machine": provenance.machine_description(),
        "arms": {},
    }
    record["start_psnr"], _, record["start_seconds_per_megapixel"] = score(
        args.start, images, names
    )
    print(f"start {args.start}: {record['start_psnr']}")
    for arm in args.arms:
        overrides = {
            **BASE,
            "init_from": args.start,
            **ARMS[arm],
            "model_args": {**base.model_args, **ARMS[arm].get("model_args", {})},
            "steps": arm_steps(ARMS[arm], steps, base.patch_size),
            "checkpoint_every": CHECKPOINT_EVERY,
        }
        config = TrainConfig.from_yaml(
            args.config, [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
        )
        if args.data_root:
            config = TrainConfig.from_dict({**config.to_dict(), "data_root": args.data_root})
        out = runs / arm
        started = time.perf_counter()
        train(config, out)
        progress = read_progress(out)
        psnr, parameters, seconds_per_megapixel = score(out / "model.keras", images, names)
        gain = float(np.mean([psnr[s] - record["start_psnr"][s] for s in psnr]))
        hours = progress["train_seconds"] / 3600
        record["arms"][arm] = {
            "changes": ARMS[arm],
            "parameters": parameters,
            "steps": config.steps,
            "patch_size": config.patch_size,
            "train_seconds": round(progress["train_seconds"], 1),
            "seconds_per_megapixel": seconds_per_megapixel,
            "psnr": psnr,
            "mean_gain_db": round(gain, 4),
            "db_per_cpu_hour": round(gain / hours, 3) if hours else None,
        }
        print(f"{arm}: {psnr} mean gain {gain:+.3f} dB in {time.perf_counter() - started:.0f} s")
    out_dir = Path(args.results or ("runs/quick/results" if args.quick else "results"))
    out_dir = out_dir / "noise_levels"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out_dir / f"{args.name}.json", json.dumps(record, indent=2) + "\n")
    write_text_atomically(out_dir / f"{args.name}.md", table(record))
    print(f"wrote {out_dir / args.name}.md")


def table(record):
    """The A/B record as a Markdown page."""
    sigmas = [f"sigma {s}" for s in SIGMAS_255]
    lines = [
        "# Noise-map recipe A/B",
        "",
        f"Command: `{record['command']}`  ",
        (
            f"Every arm fine-tunes `{record['start']}` with `{record['config']}`, "
            f"{json.dumps(record['common_changes'])} and the arm's change, for equal training "
            "pixels.  "
        ),
        f"Validation: {record['validation']}.  ",
        f"Machine: {record['machine']}",
        "",
        *results.table_header(
            [
                "arm",
                "change",
                "parameters",
                "steps",
                "train s",
                "restore s / MP",
                *sigmas,
                "mean gain (dB)",
                "dB / CPU-hour",
            ],
            left=2,
        ),
        f"| start | | | | | {_seconds(record.get('start_seconds_per_megapixel'))} | "
        + " | ".join(f"{v:.3f}" for v in record["start_psnr"].values())
        + " | | |",
    ]
    for name, arm in record["arms"].items():
        change = ", ".join(_change(k, v) for k, v in arm["changes"].items()) or "none"
        lines.append(
            f"| {name} | {change} | {arm['parameters']:,} | {arm['steps']} | "
            f"{arm['train_seconds']:.0f} | {_seconds(arm.get('seconds_per_megapixel'))} | "
            + " | ".join(f"{v:.3f}" for v in arm["psnr"].values())
            + f" | {arm['mean_gain_db']:+.3f} | {arm['db_per_cpu_hour']:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def _change(key, value):
    if key == "train_data" and isinstance(value, list):  # folders, with their weights if any
        entries = [
            f"{e['folder']} x{e['weight']:g}" if isinstance(e, dict) and "weight" in e else str(e)
            for e in value
        ]
        return f"{key}: {', '.join(entries)}"
    return f"{key}={value}"


def _seconds(value):
    return "" if value is None else f"{value:.2f}"  # records from before the column: blank


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=2400, help="steps at the base patch size")
    parser.add_argument("--config", default=CONFIG, help="the recipe the arms change")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arm names")
    parser.add_argument("--start", default="saved_models/resunet-noise-map.keras")
    parser.add_argument(
        "--name", default="recipe_ab", help="names the runs folder and the result files"
    )
    args = parser.parse_args(argv)
    args.arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    args.argv = argv
    if args.steps < 1:
        parser.error("--steps must be positive")
    if not args.name.replace("_", "").replace("-", "").isalnum():
        parser.error(f"--name must be letters, digits, '-' and '_'. Received: {args.name!r}")
    return common.run_script("recipe_ab", run, args)


if __name__ == "__main__":
    sys.exit(main())
