"""Reproduce the poster's table for one task: train what is missing, evaluate, write results.

    python -m experiments.reproduce --task denoise [--quick] [--data-root DIR]

For UNet, ResUNet and ResUNet + perceptual loss (experiments/configs/<model>_<task>_poster.yaml)
it trains the run in runs/<config> (resuming a half-done one; a finished one is only reloaded),
evaluates it on BSDS300 test (100 images) and CBSD68 (68) with the fixed evaluation noise, and
writes results/<task>/summary.json (merged with other scripts' records), results/<task>/README.md
(the table beside the poster's numbers) and results/<task>/figure.png.

`--quick` trains 20 steps of narrow models and evaluates 3 images per set, into runs/quick/ and
runs/quick/results/: the whole pipeline in minutes, never mixed with the real results.
"""

import argparse
import sys
from pathlib import Path

from keras_resunet import degradations, experiment, results
from keras_resunet.inference import KerasDenoiser
from keras_resunet.training import TrainConfig

CONFIGS = Path(__file__).parent / "configs"
METHODS = (
    ("unet", "UNet"),
    ("resunet", "ResUNet"),
    ("resunet_perceptual", "ResUNet + perceptual"),
)

INTRO = """
Reproduction of the poster's table ({task}, sigma {sigma}) by `python -m experiments.reproduce
--task {task}`: each model trained by the project's trainer with the config named in its
record's notes (experiments/configs/), evaluated on every image of each test set with seeded
noise (image i of a set gets seed (0, i)), output clipped to [0, 1], PSNR/SSIM averaged over
images. "poster PSNR" is the poster's BSDS300-test number. The perceptual column needs ImageNet
VGG19 weights, which cannot be downloaded on the machine that ran this.
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("denoise", "deblur_denoise"), required=True)
    parser.add_argument("--quick", action="store_true", help="minutes, for tests and demos")
    parser.add_argument("--data-root", help="default: $KERAS_RESUNET_DATA, else ../shared/datasets")
    parser.add_argument("--runs", default="runs", help="run folders (default runs/)")
    parser.add_argument("--results", help="default results/, or runs/quick/results with --quick")
    parser.add_argument("--skip-training", action="store_true", help="evaluate finished runs only")
    args = parser.parse_args(argv)
    try:
        reproduce(args)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"reproduce: error: {error}", file=sys.stderr)
        return 1
    return 0


def reproduce(args):
    budget = experiment.Budget(quick=args.quick)
    out = Path(args.results or (Path(args.runs) / "quick" / "results" if args.quick else "results"))
    out = out / args.task
    # Test sets first: a missing dataset must fail before hours of training.
    test_sets = {
        name: experiment.load_test_set(name, args.data_root, limit=budget.image_limit)
        for name in experiment.COLOR_TEST_SETS
    }
    made = experiment.provenance()
    records, denoisers = [], {}
    sigma = kernel = None
    for method, title in METHODS:
        config_path = CONFIGS / f"{method}_{args.task}_poster.yaml"
        config = budget.config(TrainConfig.from_yaml(config_path))
        sigma = config.sigma
        kernel = degradations.make_kernel(config.kernel) if args.task != "denoise" else None
        run_dir = experiment.run_dir_for(args.runs, config_path, args.quick)
        problem = experiment.perceptual_weights_problem(config)
        if problem is None and args.skip_training and not (run_dir / "model.keras").is_file():
            problem = "not run: training not finished"
        if problem:
            print(f"{title}: {problem}")
            denoisers[title] = None
            records += [
                results.Record(method, args.task, name, sigma, status=problem, **made)
                for name in test_sets
            ]
            continue
        print(f"{title}: training / resuming {run_dir} ({config.steps} steps)")
        model, progress = experiment.train_if_needed(config, run_dir, args.data_root)
        denoiser = KerasDenoiser(model, name=method)
        denoisers[title] = denoiser
        found = experiment.evaluate_on(
            denoiser,
            method,
            args.task,
            sigma,
            test_sets,
            kernel=kernel,
            provenance=made,
            params=model.count_params(),
            train_steps=progress["steps"] or config.steps,
            train_seconds=progress["train_seconds"] or None,
            notes={
                "config": str(config_path.relative_to(CONFIGS.parent.parent)),
                "run": str(run_dir),
            },
        )
        for record in found:
            print(f"  {record.dataset}: PSNR {record.psnr:.2f} dB, SSIM {record.ssim:.4f}")
        records += found
    records += experiment.evaluate_on(
        experiment.Identity(), "degraded input", args.task, sigma, test_sets, kernel, made
    )
    all_records = results.update_records(out / "summary.json", records)
    intro = INTRO.format(task=args.task, sigma=sigma)
    results.write_readme(out / "README.md", all_records, args.task, intro)
    clean = test_sets["BSDS300"][0][0]
    degradation = degradations.make_degradation(args.task, sigma=sigma, kernel=kernel)
    degraded = experiment.degrade_one(degradation, clean)
    panels = experiment.figure_panels(clean, degraded, denoisers)
    results.make_figure(out / "figure.png", panels, crop=_centre_crop(clean, 192))
    print(results.format_table(all_records, args.task))
    print(f"written to {out}/ (summary.json, README.md, figure.png)")


def _centre_crop(image, size):
    height, width = image.shape[:2]
    size = min(size, height, width)
    return ((height - size) // 2, (width - size) // 2, size, size)


if __name__ == "__main__":
    sys.exit(main())
