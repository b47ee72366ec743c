"""The `resunet` command line. Subcommands call the library; errors are one line, exit 1."""

import argparse
import sys


def _demo(args):
    from keras_resunet.demo import DemoConfig, run_demo

    run_demo(DemoConfig(task=args.task, steps=args.steps, output=args.output, seed=args.seed))


def _download(args):
    from keras_resunet.data import download_bsds300

    print(download_bsds300(args.destination))


def build_parser():
    parser = argparse.ArgumentParser(prog="resunet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train briefly and restore sample photographs")
    demo.add_argument("--task", choices=("denoise", "deblur_denoise"), default="denoise")
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--output", default="demo_output")
    demo.set_defaults(handler=_demo)

    download = commands.add_parser("download-bsds300", help="fetch BSDS300 (needs internet)")
    download.add_argument("destination", help="folder that will hold BSDS300/")
    download.set_defaults(handler=_download)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, OSError) as error:
        print(f"resunet {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
