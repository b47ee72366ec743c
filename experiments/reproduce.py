"""Reproduce the poster's table for one task: train what is missing, evaluate, write results.

    python -m experiments.reproduce --task denoise [--quick] [--data-root DIR]

For UNet, ResUNet and ResUNet + perceptual loss (experiments/configs/<model>_<task>_poster.yaml;
`--methods resunet_strong` adds our stronger configuration, configs/resunet_strong_<task>.yaml;
`resunet_strong_x8` evaluates the same run through the 8-fold flip/rotation self-ensemble;
`resunet_strong_qat` its quantization-aware fine-tune, configs/resunet_strong_<task>_qat.yaml,
where the task has one)
it trains the run in runs/<config> (resuming a half-done one; a finished one is only reloaded),
evaluates it on BSDS300 test (100 images) and CBSD68 (68) with the fixed evaluation noise, and
writes results/<task>/summary.json (merged with other scripts' records), results/<task>/README.md
(the table beside the poster's numbers) and results/<task>/figure.png (every method with a
finished run, not only those named; an existing figure is kept when a method in the table has no
finished run on this machine, since runs/ is not versioned).

`--quick` trains 20 steps of narrow models and evaluates 3 images per set, into runs/quick/ and
runs/quick/results/: the whole pipeline in minutes, never mixed with the real results.
"""

import argparse
import sys
from pathlib import Path

from experiments import common
from keras_resunet import datasets, provenance

CONFIGS = Path(__file__).parent / "configs"
METHODS = {
    "unet": ("UNet", "unet_{task}_poster"),
    "resunet": ("ResUNet", "resunet_{task}_poster"),
    "resunet_perceptual": ("ResUNet + perceptual", "resunet_perceptual_{task}_poster"),
    "resunet_strong": ("ResUNet strong", "resunet_strong_{task}"),
    "resunet_strong_x8": ("ResUNet strong x8", "resunet_strong_{task}"),
    "resunet_strong_qat": ("ResUNet strong, int8-aware", "resunet_strong_{task}_qat"),
}
# Methods evaluated through the self-ensemble (the run is the one their config names).
ENSEMBLED = {"resunet_strong_x8"}
POSTER = ("unet", "resunet", "resunet_perceptual")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("denoise", "deblur_denoise"), required=True)
    parser.add_argument(
        "--methods",
        default=",".join(POSTER),
        help=f"comma-separated, of {sorted(METHODS)} (default: the poster's three)",
    )
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    return common.run_script("reproduce", reproduce, args)


def reproduce(args):
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}. Valid: {sorted(METHODS)}")
    for method in methods:
        config_path = CONFIGS / f"{METHODS[method][1].format(task=args.task)}.yaml"
        if not config_path.is_file():
            raise ValueError(f"{method} has no config for task {args.task} ({config_path})")
    options, out = common.options_from(args)
    test_sets = common.load_test_sets(datasets.COLOR_TEST_SETS, options)
    made = provenance.record_fields()
    records, denoisers = [], {}
    for method in methods:
        title, config_name = METHODS[method]
        config_path = CONFIGS / f"{config_name.format(task=args.task)}.yaml"
        found, denoisers[title] = common.learned_method(
            method, config_path, test_sets, options, made, ensemble=method in ENSEMBLED
        )
        records += found
    # The figure shows the poster's three (drawn as not run where they are not) and every other
    # method with a finished run, whichever of them this call evaluated.
    figure, absent = {}, []
    for method, (title, config_name) in METHODS.items():
        if title in denoisers:
            figure[title] = denoisers[title]
            continue
        if method in ENSEMBLED:  # drawn only beside its own table row
            continue
        config_path = CONFIGS / f"{config_name.format(task=args.task)}.yaml"
        if not config_path.is_file():
            continue
        found = common.finished_denoiser(method, config_path, options)
        if found is None:
            absent.append(method)
        if found is not None or method in POSTER:
            figure[title] = found
    common.write_task_results(
        out / args.task, args.task, test_sets, records, made, figure, "figure.png", absent
    )


if __name__ == "__main__":
    sys.exit(main())
