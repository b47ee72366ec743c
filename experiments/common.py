"""What the experiment scripts share: their common arguments and error handling, training a
config's run if needed, evaluating any denoiser on the standard test sets, turning the outcome
into result records, and the results README of a task (prose, table, figure).

The scripts list their methods and call these functions; `--quick` shrinks every budget (steps,
widths, test images) so the whole pipeline runs in minutes.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_resunet import data, datasets, degradations, evaluation, results, training
from keras_resunet.denoisers import Denoiser
from keras_resunet.inference import restore_image
from keras_resunet.training.run_folder import training_budget


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
    return {
        name: datasets.load_test_set(name, options.data_root, limit=limit, gray=gray)
        for name in names
    }


def learned_method(method, config_path, test_sets, options, made, log=print, ensemble=False):
    """Trains (or resumes / reloads) one config's run and evaluates it on `test_sets`
    (with `ensemble`, through the 8-fold flip/rotation self-ensemble).

    Returns:
        (records, denoiser): one record per test set, and the trained model as a `Denoiser`
        (None when the method could not run; its records then say why).
    """
    from keras_resunet.denoisers import KerasDenoiser, SelfEnsemble

    config = options.budget.config(training.TrainConfig.from_yaml(config_path))
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
    budget = training_budget(run_dir)
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
        degradations.make_degradation(config.task, sigma=config.sigma, kernel=config.kernel),
        test_sets,
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


class Identity(Denoiser):
    """Returns its input: the "degraded input" row every table carries."""

    def __init__(self):
        super().__init__("degraded input")

    def __call__(self, images):
        return images


def evaluate_on(denoiser, method, degradation, test_sets, provenance=None, **extra):
    """Evaluates `denoiser` on each loaded test set; returns one record per set.

    Args:
        denoiser: a `Denoiser`.
        method: the name in the table.
        degradation: what the test images get (`degradations.make_degradation`).
        test_sets: {name: (images, names)}.
        provenance: dict of Record fields (command, commit, machine, time).
        extra: more Record fields (params, train_steps, train_seconds, notes).
    """
    task, sigma = degradations.task_of(degradation), degradations.noise_level(degradation)
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


def add_common_arguments(parser):
    """The arguments every experiment script takes."""
    parser.add_argument("--quick", action="store_true", help="minutes, for tests and demos")
    parser.add_argument("--data-root", help="default: $KERAS_RESUNET_DATA, else ../shared/datasets")
    parser.add_argument("--runs", default="runs", help="run folders (default runs/)")
    parser.add_argument("--results", help="default results/, or runs/quick/results with --quick")
    parser.add_argument("--skip-training", action="store_true", help="evaluate finished runs only")


def run_script(name, function, args):
    """Runs an experiment script's body: errors become one line on stderr and exit status 1."""
    try:
        function(args)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 1
    return 0


def run_timed(name, function, args):
    """`run_script`, then the script's wall time on stdout; returns the exit status."""
    import time

    start = time.perf_counter()
    if run_script(name, function, args):
        return 1
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def options_from(args):
    """(RunOptions, results folder) from parsed common arguments."""
    budget = Budget(quick=args.quick)
    options = RunOptions(args.runs, args.data_root, budget, args.skip_training)
    default = Path(args.runs) / "quick" / "results" if args.quick else Path("results")
    return options, Path(args.results) if args.results else default


INTRO = """
Written by `python -m experiments.reproduce --task {task}` (UNet, ResUNet, ResUNet + perceptual
loss: the poster's models) and `python -m experiments.baselines --task {task}` (NLM, BM3D, DnCNN,
autoencoder, RDUNet). Learned models are trained by the project's trainer with the config named
in their record's notes (experiments/configs/). Every image of each test set is degraded with
seeded noise (image i of a set gets seed (0, i); sigma {sigma} on [0, 1]), the output is clipped
to [0, 1], and PSNR/SSIM are averaged over images. "poster PSNR" is the poster's BSDS300-test
number. "s / MP" is restoration time per megapixel on the machine named below. The perceptual
variant needs ImageNet VGG19 weights: where they could not be downloaded the row says so.
Figures: `figure.png` (the poster's models), `figure_baselines.png` (the baselines), on the
centre of the first BSDS300 test image.
"""


GRAY_INTRO = """
Gray images, sigma 25/255. Written by `python -m experiments.baselines --gray`: DnCNN and
ResUNet trained by the project's trainer on Train400 (gray) with the configs named in their
records' notes (experiments/configs/<model>_gray25.yaml), and NLM and BM3D with the known sigma,
evaluated on BSD68 and Set12. Every image of each test set is degraded with seeded noise (image i of a set
gets seed (0, i); sigma {sigma} on [0, 1]), the output is clipped to [0, 1], and PSNR/SSIM are
averaged over images. The reference: DnCNN-S's published 29.23 dB on BSD68 (Zhang et al. 2017).
"s / MP" is restoration time per megapixel on the machine named below. Figure:
`figure_baselines.png`, on the centre of the first BSD68 image.
"""


def write_task_results(out, task, test_sets, records, made, denoisers, figure_name, absent=()):
    """Adds the degraded-input rows, merges `records` into out/summary.json, rewrites
    out/README.md and draws `figure_name` from `denoisers` ({title: Denoiser or None}).

    `absent` names methods whose finished run was looked for and is not on this machine. If one
    of them has results in the table, an existing figure is kept rather than redrawn without it.
    """
    sample = next(r for r in records)
    degradation = degradations.make_degradation(task, sigma=sample.sigma)
    records = records + evaluate_on(Identity(), "degraded input", degradation, test_sets, made)
    all_records = results.update_records(Path(out) / "summary.json", records)
    gray = "BSDS300" not in test_sets
    intro = (GRAY_INTRO if gray else INTRO).format(task=task, sigma=sample.sigma)
    title = "gray denoise (sigma 25/255)" if gray else None
    results.write_readme(Path(out) / "README.md", all_records, task, intro, title)
    print(results.format_table(all_records, task))
    scored = {r.method for r in all_records if r.status == "ok"}
    lost = sorted(set(absent) & scored)
    figure_path = Path(out) / figure_name
    if lost and figure_path.is_file():
        # the runs behind an earlier figure are gone (runs/ is not versioned): keep that figure
        print(f"kept {figure_path}: no finished run of {', '.join(lost)} on this machine")
        print(f"written to {out}/ (summary.json, README.md)")
        return all_records
    clean = (
        test_sets["BSDS300"][0][0]
        if "BSDS300" in test_sets
        else next(iter(test_sets.values()))[0][0]
    )
    degraded = degrade_one(degradation, clean)
    panels = figure_panels(clean, degraded, denoisers)
    results.make_figure(figure_path, panels, crop=_centre_crop(clean, 192))
    print(f"written to {out}/ (summary.json, README.md, {figure_name})")
    return all_records


def _centre_crop(image, size):
    height, width = image.shape[:2]
    size = min(size, height, width)
    return ((height - size) // 2, (width - size) // 2, size, size)
