"""What the experiment scripts share: train a config's run if needed, evaluate any denoiser on
the standard test sets, and turn the outcome into result records.

The scripts in `experiments/` list their methods and call these functions; `--quick` shrinks
every budget (steps, widths, test images) so the whole pipeline runs in minutes.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_resunet import data, degradations, evaluation, results, training
from keras_resunet.inference import Denoiser, restore_image
from keras_resunet.pretrained import training_budget
from keras_resunet.provenance import RECORD_FIELDS
from keras_resunet.provenance import provenance as _provenance

# Test sets under the data root: name -> (folder, channels)
COLOR_TEST_SETS = {"BSDS300": ("BSDS300/images/test", 3), "CBSD68": ("CBSD68", 3)}
GRAY_TEST_SETS = {"BSD68": ("BSD68", 1), "Set12": ("Set12", 1)}
# Held-out photos that choose recipes and checkpoints (never a test set), reported beside them
VALIDATION_SETS = {"Photos1k/val": ("Photos1k/val", 3)}


@dataclass(frozen=True)
class Budget:
    """How much to spend. `quick` trains a few steps of narrow models on patches of at most
    32x32 (small enough for any demo image) and evaluates a few test images."""

    quick: bool = False
    quick_steps: int = 20
    quick_images: int = 3

    def config(self, config):
        if not self.quick:
            return config
        values = config.to_dict()
        values.update(
            steps=self.quick_steps,
            checkpoint_every=self.quick_steps // 2,
            batch_size=8,
            patch_size=min(config.patch_size, 32),
            model_args={**values["model_args"], **_narrow(config.model)},
        )
        return training.TrainConfig.from_dict(values)

    @property
    def image_limit(self):
        return self.quick_images if self.quick else None


def _narrow(model):
    return {"dncnn": {"depth": 5, "filters": 8}}.get(model, {"base_filters": 4})


def perceptual_weights_problem(config):
    """None if the config's VGG weights can be had, else why not (e.g. no internet here).

    Weights None mean a random VGG: allowed in tests, never reported as the perceptual result.
    """
    if not config.beta:
        return None
    weights = config.perceptual.get("weights")
    if weights is None:
        return "not run: random VGG weights are not the perceptual loss"
    from keras_resunet.losses import build_feature_extractor

    try:
        build_feature_extractor(config.perceptual.get("backbone", "vgg19"), weights=weights)
    except Exception:  # noqa: BLE001  a download failure has no common type
        return "not run: no ImageNet weights on this machine (download failed)"
    return None


def train_if_needed(config, run_dir, data_root=None, log=print):
    """Trains (or resumes, or just reloads) the run for `config` in `run_dir`.

    Returns:
        (model, progress): the trained Keras model and {"steps", "train_seconds"}.
    """
    if data_root is not None:
        config = training.TrainConfig.from_dict({**config.to_dict(), "data_root": str(data_root)})
    model = training.train(config, run_dir, log=log)
    return model, training.read_progress(run_dir)


@dataclass(frozen=True)
class RunOptions:
    """Where runs live and how much to do: shared by every experiment script."""

    runs: str = "runs"
    data_root: str | None = None
    budget: Budget = Budget()
    skip_training: bool = False


def load_test_sets(names, options, gray=False):
    """{name: (images, names)}; a missing set fails here, before any training."""
    limit = options.budget.image_limit
    return {name: load_test_set(name, options.data_root, limit=limit, gray=gray) for name in names}


def learned_method(method, config_path, test_sets, options, made, log=print, ensemble=False):
    """Trains (or resumes / reloads) one config's run and evaluates it on `test_sets`
    (with `ensemble`, through the 8-fold flip/rotation self-ensemble).

    Returns:
        (records, denoiser): one record per test set, and the trained model as a `Denoiser`
        (None when the method could not run; its records then say why).
    """
    from keras_resunet.denoisers import KerasDenoiser, SelfEnsemble

    config = options.budget.config(training.TrainConfig.from_yaml(config_path))
    kernel = degradations.task_kernel(config.task, config.kernel)
    run_dir = run_dir_for(options.runs, config_path, options.budget.quick)
    problem = perceptual_weights_problem(config)
    if problem is None and options.skip_training and not (run_dir / "model.keras").is_file():
        problem = "not run: training not finished"
    if problem:
        log(f"{method}: {problem}")
        records = [
            results.Record(method, config.task, name, config.sigma, status=problem, **made)
            for name in test_sets
        ]
        return records, None
    log(f"{method}: training / resuming {run_dir} ({config.steps} steps)")
    model, _ = train_if_needed(config, run_dir, options.data_root, log=log)
    # a warm-started run's model took the steps of the model it started from as well
    budget = training_budget(run_dir, config.to_dict())
    denoiser = KerasDenoiser(model, name=method)
    notes = {"config": f"experiments/configs/{Path(config_path).name}", "run": str(run_dir)}
    if config.precision != "float32":
        notes["precision"] = config.precision
    if ensemble:
        denoiser = SelfEnsemble(denoiser)
        notes["self_ensemble"] = "mean over the 8 flips/rotations of the input"
    records = evaluate_on(
        denoiser,
        method,
        config.task,
        config.sigma,
        test_sets,
        kernel=kernel,
        provenance=made,
        params=model.count_params(),
        train_steps=budget["steps"] or config.steps,
        train_seconds=budget["train_seconds"] or None,
        notes=notes,
    )
    for record in records:
        log(f"  {record.dataset}: PSNR {record.psnr:.2f} dB, SSIM {record.ssim:.4f}")
    return records, denoiser


def finished_denoiser(method, config_path, options):
    """The finished run of `config_path` as a denoiser, or None while it is not finished: lets
    a figure show every method that has a model, not only those a call evaluated."""
    from keras_resunet.denoisers import KerasDenoiser, load_model

    path = run_dir_for(options.runs, config_path, options.budget.quick) / "model.keras"
    if not path.is_file():
        return None
    return KerasDenoiser(load_model(path), name=method)


def load_test_set(name, data_root=None, limit=None, gray=False):
    """(images, names) of a standard test or validation set under the data root (read
    recursively; names are paths relative to the set's folder)."""
    folder, channels = {**COLOR_TEST_SETS, **GRAY_TEST_SETS, **VALIDATION_SETS}[name]
    root = data.resolve_data_root(data_root) / folder
    images, paths = data.load_images(
        root, channels=1 if gray else channels, limit=limit, recursive=True
    )
    return images, [p.relative_to(root).as_posix() for p in paths]


class Identity(Denoiser):
    """Returns its input: the "degraded input" row every table carries."""

    def __init__(self):
        super().__init__("degraded input")

    def __call__(self, images):
        return images


def evaluate_on(denoiser, method, task, sigma, test_sets, kernel=None, provenance=None, **extra):
    """Evaluates `denoiser` on each loaded test set; returns one record per set.

    Args:
        denoiser: a `Denoiser`.
        method: the name in the table.
        task, sigma, kernel: the degradation (kernel: 2-D array for deblur_denoise).
        test_sets: {name: (images, names)}.
        provenance: dict of Record fields (command, commit, machine, time).
        extra: more Record fields (params, train_steps, train_seconds, notes).
    """
    degradation = degradations.make_degradation(task, sigma=sigma, kernel=kernel)
    records = []
    for dataset, (images, names) in test_sets.items():
        result = evaluation.evaluate_model(denoiser, images, degradation, seed=0, names=names)
        psnrs = [image["psnr"] for image in result["images"]]
        records.append(
            results.Record(
                method=method,
                task=task,
                dataset=dataset,
                sigma=sigma,
                n_images=result["n_images"],
                psnr=result["psnr"],
                ssim=result["ssim"],
                psnr_std=float(np.std(psnrs)),
                seconds_per_megapixel=result["seconds_per_megapixel"],
                **(provenance or {}),
                **extra,
            )
        )
    return records


def degrade_one(degradation, clean, seed=0):
    """`clean` degraded exactly as image 0 of an evaluation set with `seed`."""
    degraded, _ = data.evaluation_pairs([clean], degradation, seed)
    return degraded[0]


def provenance():
    """Record fields saying how a result was made."""
    made = _provenance()
    return {key: made[key] for key in RECORD_FIELDS}


def figure_panels(clean, degraded, restorers):
    """Panels for `results.make_figure`: ground truth, degraded, then each restorer's output
    with its PSNR. `restorers` maps a title to a `Denoiser` or to None (drawn as not run)."""
    from keras_resunet import metrics

    panels = [
        ("ground truth", clean),
        (f"degraded {float(metrics.psnr(degraded, clean)):.2f} dB", degraded),
    ]
    for title, denoiser in restorers.items():
        if denoiser is None:
            panels.append((f"{title}: not run", None))
            continue
        restored = restore_image(denoiser, degraded)
        panels.append((f"{title} {float(metrics.psnr(restored, clean)):.2f} dB", restored))
    return panels


def run_dir_for(runs, config_path, quick):
    """runs/<config name>, or runs/quick/<config name> for the quick budget (never mixed)."""
    name = Path(config_path).stem
    return Path(runs) / ("quick" if quick else "") / name
