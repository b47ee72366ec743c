"""The baselines on the poster's protocol, in the same results table as the poster's models.

    python -m experiments.baselines --task denoise [--methods nlm,bm3d,dncnn,autoencoder,rdunet]
    python -m experiments.baselines --gray [--quick]

Color (`--task`): NLM and BM3D with the known sigma (and kernel, for deblur_denoise), and
DnCNN, the denoising autoencoder and RDUNet trained by the project's trainer on the poster's
budget (experiments/configs/<model>_<task>.yaml), evaluated on BSDS300 test and CBSD68 and
merged into results/<task>/summary.json, README.md, and figure_baselines.png (every classical
method and every learned one with a finished run, not only those named; kept as it is when a
learned method in the table has no finished run on this machine).

Gray (`--gray`): DnCNN and ResUNet trained on Train400 at sigma 25/255, with NLM and BM3D,
evaluated on BSD68 and Set12 into results/gray_denoise/ (DnCNN's published BSD68 PSNR is 29.23).

BM3D takes seconds per image: its outputs are cached in runs/cache/<method>/ keyed by input and
settings, so tables rebuild without running it again.
"""

import argparse
import sys
from pathlib import Path

from experiments import common
from keras_resunet import datasets, degradations, provenance
from keras_resunet.baselines import make_classical

CONFIGS = Path(__file__).parent / "configs"
CLASSICAL = ("nlm", "bm3d")
LEARNED = ("dncnn", "autoencoder", "rdunet")
GRAY_LEARNED = ("dncnn", "resunet")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--task", choices=("denoise", "deblur_denoise"))
    target.add_argument("--gray", action="store_true", help="Train400 -> BSD68 / Set12, sigma 25")
    parser.add_argument("--methods", help="comma-separated subset (default: all)")
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    return common.run_script("baselines", run, args)


def run(args):
    options, out = common.options_from(args)
    task = "denoise" if args.gray else args.task
    learned = GRAY_LEARNED if args.gray else LEARNED
    methods = args.methods.split(",") if args.methods else [*CLASSICAL, *learned]
    unknown = sorted(set(methods) - {*CLASSICAL, *learned})
    if unknown:
        raise ValueError(f"Unknown methods {unknown}. Valid: {[*CLASSICAL, *learned]}")
    if args.gray:
        test_sets = common.load_test_sets(datasets.GRAY_TEST_SETS, options, gray=True)
        folder, sigma = out / "gray_denoise", 25 / 255
    else:
        test_sets = common.load_test_sets(datasets.COLOR_TEST_SETS, options)
        folder, sigma = out / task, 0.1
    degradation = degradations.make_degradation(task, sigma=sigma)
    kernel = degradations.blur_kernel(degradation)
    made = provenance.record_fields()
    records, denoisers = [], {}
    cache = Path(options.runs) / ("quick" if options.budget.quick else "") / "cache"
    for method in methods:
        if method in CLASSICAL:
            denoiser = make_classical(method, sigma, kernel=kernel, cache=cache / method)
            print(f"{method}: evaluating (cache {cache / method})")
            found = common.evaluate_on(
                denoiser, method, degradation, test_sets, made, notes=denoiser.settings()
            )
            denoisers[method.upper()] = denoiser
        else:
            name = f"{method}_gray25" if args.gray else f"{method}_{task}"
            found, denoisers[method] = common.learned_method(
                method, CONFIGS / f"{name}.yaml", test_sets, options, made
            )
        records += found
    # The figure shows every classical method and every learned one with a finished run,
    # whichever of them this call evaluated (BM3D's figure image comes from its cache).
    figure, absent = {}, []
    for method in [*CLASSICAL, *learned]:
        title = method.upper() if method in CLASSICAL else method
        if title in denoisers:
            figure[title] = denoisers[title]
        elif method in CLASSICAL:
            figure[title] = make_classical(method, sigma, kernel=kernel, cache=cache / method)
        else:
            name = f"{method}_gray25" if args.gray else f"{method}_{task}"
            found = common.finished_denoiser(method, CONFIGS / f"{name}.yaml", options)
            if found is None:
                absent.append(method)
            else:
                figure[title] = found
    common.write_task_results(
        folder, task, test_sets, records, made, figure, "figure_baselines.png", absent
    )


if __name__ == "__main__":
    sys.exit(main())
