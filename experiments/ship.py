"""Ship a finished, evaluated run as a pretrained model in saved_models/.

    python -m experiments.ship --run runs/resunet_denoise_poster --name resunet-denoise

The run must have been evaluated by `python -m experiments.reproduce` (or experiments.baselines):
its records in results/<task>/summary.json go into the model card.
"""

import argparse
import json
import sys
from pathlib import Path

from keras_resunet import pretrained, provenance, results
from keras_resunet.data import parse_sources
from keras_resunet.denoisers import load_model
from keras_resunet.io import atomic_write, write_text_atomically
from keras_resunet.training.run_folder import read_best, read_config, training_budget

_LOSS_TEXT = {"mse": "MSE", "l1": "L1", "psnr": "minus each patch's PSNR (capped at 40 dB)"}


def ship(run_dir, name, records, command, note=""):
    """Copies a finished run's model into the models folder as `<name>.keras` (weights only, no
    optimizer state) with a model card `<name>.md` built from its config and result records.

    Args:
        run_dir: a finished training run (model.keras, config.json, progress.json, run.json).
        name: a key of `PRETRAINED`.
        records: `results.Record`s of this model (one per test set, status "ok").
        command: the command that shipped it (written in the card).
        note: optional free text added to the card (e.g. how the run was interrupted).

    Raises:
        ValueError: unknown name, a run of another task, or no evaluated records.
        FileNotFoundError: the run has no final model.
    """
    if name not in pretrained.PRETRAINED:
        raise ValueError(
            f"Unknown shipped model name {name!r}. Valid: {sorted(pretrained.PRETRAINED)}"
        )
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    expected = pretrained.PRETRAINED[name]
    noise_map = config.noise_map
    found = (config.model, config.task, None if noise_map else config.sigma)
    if found != (expected.model, expected.task, expected.sigma):
        raise ValueError(f"{run_dir} trained {found} (model, task, sigma), not {name}")
    records = [r for r in records if r.status == "ok"]
    if not records:
        raise ValueError(f"no evaluation results for {run_dir}: run experiments.reproduce first")
    best = read_best(run_dir)
    model = load_model(run_dir / ("best.keras" if best else "model.keras"))
    target = pretrained.models_dir() / pretrained.PRETRAINED[name].filename
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target) as temporary:
        model.save(temporary)
    progress = training_budget(run_dir, best=best is not None)
    write_text_atomically(target.with_suffix(".json"), json.dumps(progress, indent=2) + "\n")
    provenance = json.loads((run_dir / "run.json").read_text())
    note = f"\n{note.strip()}\n" if note else ""
    blur = ""
    precision = config.precision
    # weights are float32 in every shipped file; only the training arithmetic differs
    trained_in = "" if precision == "float32" else f", {precision} training (float32 weights)"
    warmup = f", {config.warmup_steps:,} warmup steps" if config.warmup_steps else ""
    if config.quantization_aware:
        trained_in += ", through simulated int8 rounding (quantization-aware: for int8 export)"
    if config.task != "denoise":
        from keras_resunet.degradations import make_kernel

        height, width = make_kernel(config.kernel).shape
        blur = f", after a {config.kernel} blur ({height}x{width}, circular convolution)"
    # a run can be evaluated both plainly and through the self-ensemble: say which row is which
    records = sorted(records, key=lambda r: "self_ensemble" in r.notes)
    rows = "\n".join(
        f"| {r.dataset} | {r.n_images} | "
        f"{'8 flips/rotations (`--ensemble`)' if 'self_ensemble' in r.notes else 'one pass'} | "
        f"{r.psnr:.2f} | {r.ssim:.4f} |"
        for r in records
    )
    loss = _LOSS_TEXT[config.pixel_loss]
    if config.beta:
        loss = f"{config.alpha:g} x {loss} + {config.beta:g} x VGG perceptual"
    clipped = "inputs clipped to [0, 1]" if config.clip else "not clipped"
    if config.clip_fraction:
        share = f"{config.clip_fraction:.0%}"
        clipped = f"{share} of the inputs clipped to [0, 1] and rounded to 8 bits"
    noise = f"Gaussian noise sigma {config.sigma} on [0, 1] images"
    if noise_map:
        low, high = config.sigma_range
        noise = (
            f"Gaussian noise of sigma {low * 255:.0f}-{high * 255:.0f}/255 on [0, 1] images, "
            "the sigma given as a constant extra input channel"
        )
        if config.sigma_power != 1.0:
            noise += (
                f" (each sigma drawn as low + (high - low) u^{config.sigma_power:g}, u uniform:"
                " low levels more often)"
            )
    steps, seconds, warm = progress["steps"], progress["train_seconds"], ""
    if progress.get("init_from"):
        steps -= progress["init_steps"]
        seconds -= progress["init_seconds"]
        warm = (
            f",\n  on top of the {progress['init_steps']:,} steps "
            f"({progress['init_seconds'] / 60:.0f} min) of `{progress['init_from']}`, whose "
            f"weights started it: {progress['steps']:,} steps, "
            f"{progress['train_seconds'] / 60:.0f} min in all"
        )
    extended = "".join(
        f", resumed for {record['steps']:,} steps by `{record['command']}`"
        for record in provenance.get("extended", [])
    )
    chosen = ""
    if best:
        run_steps = json.loads((run_dir / "progress.json").read_text())["steps"]
        scores = (
            " / ".join(f"{best[key]:.2f}" for key in sorted(best) if key.startswith("val_psnr_"))
            or f"{best['val_psnr']:.2f}"
        )
        chosen = (
            f"\n- Checkpoint: the best of the run on `{config.val_data}` (validation crops, "
            f"seeded noise): step {best['steps']:,} of {run_steps:,}, PSNR {scores} dB"
        )
    header = "\n".join(
        results.table_header(["test set", "images", "restored with", "PSNR (dB)", "SSIM"], left=3)
    )
    card = f"""# {name}

{pretrained.PRETRAINED[name].description}. File: `{target.name}` (Keras 3 format, {model.count_params():,}
parameters, no optimizer state). Load with `keras_resunet.inference.load_model` or use by name:
`resunet denoise --model {name} ...`.

- Task: {config.task}, {noise} ({clipped}){blur}
- Training data: {_sources_text(config.train_data)} ({config.patch_size}x{config.patch_size}
  random patches with flips/rotations, degraded on the fly){chosen}
- Budget: {steps:,} steps of batch {config.batch_size}, Adam {config.learning_rate}
  ({config.lr_schedule}{warmup}), loss {loss}{trained_in}, {seconds / 60:.0f} min of training on
  {records[0].machine}, Keras {provenance.get("keras_backend", "tensorflow")} backend{warm}
- Trained by: `{provenance["command"]}`{extended}; config in
  `{run_dir / "config.json"}` when the run folder is present, and in `experiments/configs/`.

Measured (seeded evaluation noise, output clipped, mean over images; `{records[0].command}`):

{header}
{rows}

Shipped by `{command}`.
{note}"""
    write_text_atomically(target.with_suffix(".md"), card)
    return target


def _sources_text(train_data):
    """A config's `train_data` in words: folders, with their weights when given."""
    return " + ".join(
        source.folder + (f" (weight {source.weight:g})" if source.weight is not None else "")
        for source in parse_sources(train_data)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="finished run folder")
    parser.add_argument("--name", required=True, choices=sorted(pretrained.PRETRAINED))
    parser.add_argument("--results", default="results", help="results folder (default results/)")
    parser.add_argument("--note", default="", help="free text for the model card")
    args = parser.parse_args(argv)
    # the note goes into the card itself, not into the command line it quotes
    argv = ["--run", args.run, "--name", args.name]
    argv += ["--results", args.results] if args.results != "results" else []
    command = provenance.command_line("experiments.ship", argv)
    task = pretrained.PRETRAINED[args.name].task
    if pretrained.PRETRAINED[args.name].sigma is None:
        records = noise_level_records(Path(args.results) / "noise_levels" / "summary.json")
    else:
        records = [
            r
            for r in results.load_records(Path(args.results) / task / "summary.json")
            if r.notes.get("run") == str(Path(args.run))
        ]
    try:
        path = ship(args.run, args.name, records, command, args.note)
    except (ValueError, OSError) as error:
        print(f"ship: error: {error}", file=sys.stderr)
        return 1
    print(f"shipped {path} and {path.with_suffix('.md')}")
    return 0


TEST_SETS = ("CBSD68", "BSDS300", "Photos1k/val")


def noise_level_records(path, sigmas=(15, 25, 50)):
    """Records of a noise-level-map model from `python -m experiments.noise_levels`' summary:
    one per test set and noise level (known sigma)."""
    import json

    if not path.is_file():
        return []
    summary = json.loads(path.read_text())
    rows = summary["known_sigma"]["noise_map"]
    return [
        results.Record(
            method="resunet_noise_map",
            task="denoise",
            dataset=f"{dataset}, sigma {sigma}/255",
            sigma=sigma / 255,
            n_images=rows[f"{dataset}@{sigma}"]["images"],
            psnr=rows[f"{dataset}@{sigma}"]["psnr"],
            ssim=rows[f"{dataset}@{sigma}"]["ssim"],
            machine=summary["machine"],
            command=summary["command"],
        )
        for dataset in TEST_SETS
        for sigma in sigmas
        if f"{dataset}@{sigma}" in rows
    ]


if __name__ == "__main__":
    sys.exit(main())
