"""The trained models shipped in `saved_models/`, referred to by name.

Each shipped model is a `.keras` file with a model card beside it (`<name>.md`). A source
checkout has them all in `saved_models/`; the wheel carries the default model of each task;
`$KERAS_RESUNET_MODELS` points at another copy (`models_dirs`).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pretrained:
    """A shipped model: its file name in the models folder, and what it restores.

    `sigma` is the one noise level it was trained for, or None for a noise-level-map model,
    which restores the level it is given (or that `resunet denoise` estimates).
    """

    filename: str
    model: str
    task: str
    sigma: float | None
    description: str

    def degradation(self):
        """What it restores, as a degradation (a noise-level-map model: at sigma 0.1)."""
        from keras_resunet import degradations

        return degradations.make_degradation(
            self.task, sigma=self.sigma or 0.1, kernel=degradations.task_kernel(self.task)
        )


PRETRAINED = {
    "resunet-denoise": Pretrained(
        "resunet-denoise.keras", "resunet", "denoise", 0.1, "ResUNet, RGB, Gaussian noise sigma 0.1"
    ),
    "resunet-deblur-denoise": Pretrained(
        "resunet-deblur-denoise.keras",
        "resunet",
        "deblur_denoise",
        0.1,
        "ResUNet, RGB, 7x7 Gaussian blur (sigma 1.6) + noise sigma 0.1",
    ),
    "resunet-strong-denoise": Pretrained(
        "resunet-strong-denoise.keras",
        "resunet",
        "denoise",
        0.1,
        "ResUNet (our strong config), RGB, Gaussian noise sigma 0.1",
    ),
    "resunet-strong-deblur-denoise": Pretrained(
        "resunet-strong-deblur-denoise.keras",
        "resunet",
        "deblur_denoise",
        0.1,
        "ResUNet (our strong config), RGB, 7x7 Gaussian blur (sigma 1.6) + noise sigma 0.1",
    ),
    "unet-denoise": Pretrained(
        "unet-denoise.keras", "unet", "denoise", 0.1, "UNet, RGB, Gaussian noise sigma 0.1"
    ),
    "resunet-noise-map": Pretrained(
        "resunet-noise-map.keras",
        "resunet",
        "denoise",
        None,
        "ResUNet with a noise-level-map input, RGB, Gaussian noise of any sigma in [0, 75/255]",
    ),
}

# What `resunet denoise` uses when no model is named: a ResUNet, the best shipped one per task.
# For denoising, the noise-level-map model: any sigma, and ahead of the sigma-0.1 model at 0.1
# (results/noise_levels/README.md).
DEFAULT_FOR_TASK = {
    "denoise": "resunet-noise-map",
    "deblur_denoise": "resunet-strong-deblur-denoise",
}


# A source checkout keeps the models in its saved_models/; an installed wheel carries the default
# model of each task as package data (keras_resunet/saved_models/); $KERAS_RESUNET_MODELS names
# another folder (an offline copy of the repository's saved_models/, with every model).
MODELS_ENV = "KERAS_RESUNET_MODELS"
_CHECKOUT = Path(__file__).resolve().parents[1] / "saved_models"
_PACKAGED = Path(__file__).resolve().parent / "saved_models"


def models_dirs():
    """The folders searched for shipped models, first match first: `$KERAS_RESUNET_MODELS`, then
    the source checkout's `saved_models/`, then the models installed with the package."""
    configured = os.environ.get(MODELS_ENV)
    folders = [Path(configured).expanduser()] if configured else []
    return folders + [folder for folder in (_CHECKOUT, _PACKAGED) if folder.is_dir()]


def models_dir():
    """Where shipped models are written (`experiments.ship`): `$KERAS_RESUNET_MODELS` if set,
    else `saved_models/` of this source checkout."""
    configured = os.environ.get(MODELS_ENV)
    return Path(configured).expanduser() if configured else _CHECKOUT


def locate(name):
    """The file of the shipped model `name` in the first folder of `models_dirs` holding it, or
    None."""
    for folder in models_dirs():
        path = folder / PRETRAINED[name].filename
        if path.is_file():
            return path
    return None


def available():
    """Names of the shipped models whose files are present."""
    return sorted(name for name in PRETRAINED if locate(name) is not None)


def resolve(spec):
    """The `.keras` path for a shipped model name or an existing path.

    Raises:
        ValueError: `spec` is neither a known name nor a `.keras` path.
        FileNotFoundError: the named model (or the path) does not exist.
    """
    if spec in PRETRAINED:
        path = locate(spec)
        if path is None:
            searched = ", ".join(str(folder) for folder in models_dirs()) or "no folder"
            raise FileNotFoundError(
                f"Shipped model {spec!r} is not installed (searched {searched}; present: "
                f"{', '.join(available()) or 'none'}). The package carries the default models; "
                f"for the others set ${MODELS_ENV} to a copy of the repository's saved_models/."
            )
        return path
    if str(spec).endswith(".keras"):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"Model file not found: {path}")
        return path
    raise ValueError(
        f"Unknown model {spec!r}: give a .keras path or a shipped model name "
        f"{sorted(PRETRAINED)} (or a classical method: bm3d, nlm)"
    )


def degradation_of(spec):
    """The degradation a model restores: for a shipped name or file, its own; for a run
    folder's `model.keras`, its config's (a noise range as trained); else None (unknown)."""
    if spec in PRETRAINED:
        return PRETRAINED[spec].degradation()
    path = Path(spec).resolve()
    for name, entry in PRETRAINED.items():
        found = locate(name)
        if found is not None and path == found.resolve():
            return entry.degradation()
    config = path.parent / "config.json"
    if path.name == "model.keras" and config.is_file():
        from keras_resunet import degradations

        values = json.loads(config.read_text())
        task = values.get("task", "denoise")
        return degradations.make_degradation(
            task,
            sigma=values.get("sigma", 0.1),
            sigma_range=values.get("sigma_range"),
            sigma_power=values.get("sigma_power", 1.0),
            kernel=degradations.task_kernel(task, values.get("kernel", "gaussian")),
        )
    return None


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
    from keras_resunet.denoisers import load_model
    from keras_resunet.io import atomic_write, write_text_atomically
    from keras_resunet.training.run_folder import read_best

    if name not in PRETRAINED:
        raise ValueError(f"Unknown shipped model name {name!r}. Valid: {sorted(PRETRAINED)}")
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    expected = PRETRAINED[name]
    noise_map = bool(config.get("model_args", {}).get("noise_level_map", False))
    found = (config["model"], config["task"], None if noise_map else config["sigma"])
    if found != (expected.model, expected.task, expected.sigma):
        raise ValueError(f"{run_dir} trained {found} (model, task, sigma), not {name}")
    records = [r for r in records if r.status == "ok"]
    if not records:
        raise ValueError(f"no evaluation results for {run_dir}: run experiments.reproduce first")
    best = read_best(run_dir)
    model = load_model(run_dir / ("best.keras" if best else "model.keras"))
    target = models_dir() / PRETRAINED[name].filename
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target) as temporary:
        model.save(temporary)
    progress = training_budget(run_dir, config, best=best is not None)
    write_text_atomically(target.with_suffix(".json"), json.dumps(progress, indent=2) + "\n")
    provenance = json.loads((run_dir / "run.json").read_text())
    note = f"\n{note.strip()}\n" if note else ""
    blur = ""
    precision = config.get("precision", "float32")
    # weights are float32 in every shipped file; only the training arithmetic differs
    trained_in = "" if precision == "float32" else f", {precision} training (float32 weights)"
    if config.get("quantization_aware"):
        trained_in += ", through simulated int8 rounding (quantization-aware: for int8 export)"
    if config["task"] != "denoise":
        from keras_resunet.degradations import make_kernel

        height, width = make_kernel(config["kernel"]).shape
        blur = f", after a {config['kernel']} blur ({height}x{width}, circular convolution)"
    # a run can be evaluated both plainly and through the self-ensemble: say which row is which
    records = sorted(records, key=lambda r: "self_ensemble" in r.notes)
    rows = "\n".join(
        f"| {r.dataset} | {r.n_images} | "
        f"{'8 flips/rotations (`--ensemble`)' if 'self_ensemble' in r.notes else 'one pass'} | "
        f"{r.psnr:.2f} | {r.ssim:.4f} |"
        for r in records
    )
    loss = _LOSS_TEXT[config.get("pixel_loss", "mse")]
    if config.get("beta"):
        loss = f"{config.get('alpha', 1.0):g} x {loss} + {config['beta']:g} x VGG perceptual"
    clipped = "inputs clipped to [0, 1]" if config.get("clip") else "not clipped"
    if config.get("clip_fraction"):
        share = f"{config['clip_fraction']:.0%}"
        clipped = f"{share} of the inputs clipped to [0, 1] and rounded to 8 bits"
    noise = f"Gaussian noise sigma {config['sigma']} on [0, 1] images"
    if noise_map:
        low, high = config["sigma_range"]
        noise = (
            f"Gaussian noise of sigma {low * 255:.0f}-{high * 255:.0f}/255 on [0, 1] images, "
            "the sigma given as a constant extra input channel"
        )
        if config.get("sigma_power", 1.0) != 1.0:
            noise += (
                f" (each sigma drawn as low + (high - low) u^{config['sigma_power']:g}, u uniform:"
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
        f", extended to {record['steps']:,} steps by `{record['command']}`"
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
            f"\n- Checkpoint: the best of the run on `{config['val_data']}` (validation crops, "
            f"seeded noise): step {best['steps']:,} of {run_steps:,}, PSNR {scores} dB"
        )
    card = f"""# {name}

{PRETRAINED[name].description}. File: `{target.name}` (Keras 3 format, {model.count_params():,}
parameters, no optimizer state). Load with `keras_resunet.inference.load_model` or use by name:
`resunet denoise --model {name} ...`.

- Task: {config["task"]}, {noise} ({clipped}){blur}
- Training data: {_sources_text(config["train_data"])} ({config["patch_size"]}x{config["patch_size"]}
  random patches with flips/rotations, degraded on the fly){chosen}
- Budget: {steps:,} steps of batch {config["batch_size"]}, Adam {config["learning_rate"]}
  ({config["lr_schedule"]}), loss {loss}{trained_in}, {seconds / 60:.0f} min of training on
  {records[0].machine}, Keras {provenance.get("keras_backend", "tensorflow")} backend{warm}
- Trained by: `{provenance["command"]}`{extended}; config in
  `{run_dir / "config.json"}` when the run folder is present, and in `experiments/configs/`.

Measured (seeded evaluation noise, output clipped, mean over images; `{records[0].command}`):

| test set | images | restored with | PSNR (dB) | SSIM |
| --- | ---: | --- | ---: | ---: |
{rows}

Shipped by `{command}`.
{note}"""
    write_text_atomically(target.with_suffix(".md"), card)
    return target


def _sources_text(train_data):
    """A config's `train_data` in words: folders, with their weights when given."""
    from keras_resunet.data import parse_sources

    return " + ".join(
        source.folder + (f" (weight {source.weight:g})" if source.weight is not None else "")
        for source in parse_sources(train_data)
    )


def training_budget(run_dir, config, best=False):
    """Steps and training seconds behind a run's model (with `best`, behind its best-validation
    checkpoint), counting those of the shipped model it was warm-started from (`init_from`,
    whose `<name>.json` says what it took)."""
    from keras_resunet.training.run_folder import read_best

    progress = json.loads((Path(run_dir) / "progress.json").read_text())
    record = read_best(run_dir) if best else None
    if record:
        # a record without its time: the run's time prorated to its steps
        share = progress["train_seconds"] * record["steps"] / max(progress["steps"], 1)
        progress = {"steps": record["steps"], "train_seconds": record.get("train_seconds", share)}
    budget = {"steps": progress["steps"], "train_seconds": progress["train_seconds"]}
    source = config.get("init_from")
    if source:
        # the budget as it was when the run started (shipping this run replaces the shipped one)
        record = Path(run_dir) / "init_budget.json"
        if not record.is_file():
            record = Path(source).with_suffix(".json")
        if not record.is_file():
            raise ValueError(f"{record} is missing: the budget of `init_from` {source} is unknown")
        prior = json.loads(record.read_text())
        budget = {
            "steps": budget["steps"] + prior["steps"],
            "train_seconds": round(budget["train_seconds"] + prior["train_seconds"], 1),
            "init_from": Path(source).stem,
            "init_steps": prior["steps"],
            "init_seconds": prior["train_seconds"],
        }
    return budget
