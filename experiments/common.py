"""What the experiment scripts share beyond the library: their common arguments, the error
handling of a script's body, and the results README of a task (prose, table, figure)."""

import sys
from pathlib import Path

from keras_resunet import degradations, results
from keras_resunet.experiment import (
    Budget,
    Identity,
    RunOptions,
    degrade_one,
    evaluate_on,
    figure_panels,
)


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
    kernel = degradations.task_kernel(task)
    records = records + evaluate_on(
        Identity(), "degraded input", task, sample.sigma, test_sets, kernel, made
    )
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
    degradation = degradations.make_degradation(task, sigma=sample.sigma, kernel=kernel)
    degraded = degrade_one(degradation, clean)
    panels = figure_panels(clean, degraded, denoisers)
    results.make_figure(figure_path, panels, crop=_centre_crop(clean, 192))
    print(f"written to {out}/ (summary.json, README.md, {figure_name})")
    return all_records


def _centre_crop(image, size):
    height, width = image.shape[:2]
    size = min(size, height, width)
    return ((height - size) // 2, (width - size) // 2, size, size)
