"""`python -m export.benchmark [--model M.keras]`: time Keras and every exported runtime.

Writes results/export/benchmark.json and results/export/README.md.
"""

import argparse
import sys

from keras_resunet.export import check_images
from keras_resunet.export.timing import BenchmarkConfig, run_benchmark
from keras_resunet.provenance import command_line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help=".keras model (default: the poster's ResUNet, random)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--size", default="321x481", help="HxW of the timed images")
    parser.add_argument("--representative-data", help="image folder for checks / int8")
    parser.add_argument("--out", default="results/export")
    parser.add_argument("--model-description", default="", help="how the model was trained")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    images, source = check_images(args.representative_data)
    config = BenchmarkConfig(
        model=args.model,
        height=height,
        width=width,
        repeats=args.repeats,
        threads=args.threads,
        out=args.out,
        model_description=args.model_description,
        check_data=source,
    )
    run_benchmark(config, images, command_line("export.benchmark", argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
