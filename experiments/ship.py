"""Ship a finished, evaluated run as a pretrained model in saved_models/.

    python -m experiments.ship --run runs/resunet_denoise_poster --name resunet-denoise

The run must have been evaluated by `python -m experiments.reproduce` (or experiments.baselines):
its records in results/<task>/summary.json go into the model card.
"""

import argparse
import sys
from pathlib import Path

from keras_resunet import pretrained, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="finished run folder")
    parser.add_argument("--name", required=True, choices=sorted(pretrained.PRETRAINED))
    parser.add_argument("--results", default="results", help="results folder (default results/)")
    parser.add_argument("--note", default="", help="free text for the model card")
    args = parser.parse_args(argv)
    # the note goes into the card itself, not into the command line it quotes
    command = f"python -m experiments.ship --run {args.run} --name {args.name}"
    if args.results != "results":
        command += f" --results {args.results}"
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
        path = pretrained.ship(args.run, args.name, records, command, args.note)
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
