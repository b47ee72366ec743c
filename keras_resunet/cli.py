"""The `resunet` command line. Subcommands call the library; errors are one line, exit 1.

Arguments are parsed and checked before Keras and TensorFlow are imported, so `--help` and
argument errors answer at once; TensorFlow's and absl's log lines are silenced unless
`--verbose` is given.
"""

import argparse
import math
import os
import signal
import sys
from pathlib import Path


def _demo(args):
    from keras_resunet.demo import DemoConfig, run_demo

    run_demo(
        DemoConfig(
            task=args.task,
            train_steps=args.train_steps,
            output=args.output,
            seed=args.seed,
            base_filters=args.base_filters,
            save_model=args.save_model,
        )
    )


def _train(args):
    from keras_resunet.training import TrainConfig, train

    config = TrainConfig.from_yaml(args.config, overrides=args.set)
    if args.data_root:
        # resolved, so a resume through another spelling of the same folder matches
        data_root = str(Path(args.data_root).expanduser().resolve())
        config = TrainConfig.from_dict({**config.to_dict(), "data_root": data_root})
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise ValueError(f"{out} already holds a run: pass --resume to continue it")
    time_limit = None if args.time_limit is None else args.time_limit * 60
    train(config, out, time_limit=time_limit)
    print(f"model written to {out / 'model.keras'}")


def _evaluate(args):
    from keras_resunet.evaluation import evaluate_folder, format_report, write_json

    result = evaluate_folder(
        args.model or args.method,
        args.data,
        args.task,
        args.sigma,
        args.kernel,
        args.seed,
        channels=args.channels,
        ensemble=args.ensemble,
        cache=args.cache,
        limit=args.limit,
        clip=args.clip,
    )
    print(format_report(result))
    if args.json:
        write_json(args.json, result)


def _denoise(args):
    from keras_resunet.restore import RestoreInterrupted, restore_files, summarize

    try:
        results = restore_files(args.inputs, args.output, args.options)
    except RestoreInterrupted as stop:
        print(summarize(stop.results))
        raise stop.cause from None
    print(summarize(results))
    failed = sum(1 for result in results if result.error)
    if failed:
        raise RuntimeError(f"{failed} of {len(results)} inputs failed (listed above)")


def _models(args):
    from keras_resunet import pretrained

    defaults = {name: task for task, name in pretrained.DEFAULT_FOR_TASK.items()}
    print("searched: " + (", ".join(map(str, pretrained.models_dirs())) or "no folder"))
    for name, entry in pretrained.PRETRAINED.items():
        path = pretrained.locate(name)
        default = f" [default for {defaults[name]}]" if name in defaults else ""
        where = str(path) if path else f"not installed (set ${pretrained.MODELS_ENV})"
        print(f"{name}{default}: {entry.description}\n    {where}")


def _download(args):
    from keras_resunet.data_sources import download_bsds300

    print(download_bsds300(args.destination))


def _export(args):
    from keras_resunet.export import ExportOptions, check_images, export_model, parse_size
    from keras_resunet.export.quantization import parse_noise_bands

    options = ExportOptions(
        formats=tuple(args.formats.split(",")),
        quantizations=tuple(args.quantize.split(",")),
        fixed_size=parse_size(args.fixed_size) if args.fixed_size else None,
        overwrite=args.overwrite,
        io=args.io,
        noise_bands=parse_noise_bands(args.noise_bands) if args.noise_bands else (),
        float_layers=args.float_layers,
    )
    if args.representative_data and not Path(args.representative_data).is_dir():
        raise FileNotFoundError(
            f"--representative-data folder not found: {args.representative_data}"
        )
    images, source = check_images(args.representative_data)
    print(f"checks and int8 calibration on {source}")
    if source.startswith("scikit-image"):
        print(
            "warning: no --representative-data and no data root: int8 files are calibrated and "
            "checked on three sample photos; pass --representative-data DIR with photos like "
            "the ones the app will restore"
        )
    export_model(args.model, args.out, options, check_images=images, check_source=source)
    print(f"exported to {args.out}")


def _sigma(text):
    """argparse type for a noise level: a finite number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(
            f"must be in [0, 1] (noise std on [0, 1] images; 25/255 = 0.098): {text!r}"
        )
    return value


def _positive_minutes(text):
    """argparse type for a time limit: a finite number of minutes above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of minutes: {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="resunet", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="restore degraded sample photographs (NLM vs ResUNet)")
    demo.add_argument("--task", choices=("denoise", "deblur_denoise"), default="denoise")
    demo.add_argument(
        "--train-steps",
        type=int,
        default=0,
        help="train a small ResUNet this long instead of using the shipped model",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--output", default="demo_output")
    demo.add_argument(
        "--base-filters", type=int, default=8, help="with --train-steps; 16 = the poster's ResUNet"
    )
    demo.add_argument("--save-model", help="with --train-steps: save the trained model (.keras)")
    demo.set_defaults(handler=_demo)

    train = commands.add_parser("train", help="train a model from a YAML config")
    train.add_argument("--config", required=True, help="experiments/configs/<name>.yaml")
    train.add_argument("--out", required=True, help="run folder (runs/<name>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument(
        "--time-limit",
        type=_positive_minutes,
        metavar="MINUTES",
        help="stop at the last checkpoint that ends within MINUTES (--resume continues)",
    )
    train.add_argument(
        "--data-root", help="dataset root (default: $KERAS_RESUNET_DATA, else ../shared/datasets)"
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (repeatable)",
    )
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="PSNR/SSIM of a method on an image folder")
    method = evaluate.add_mutually_exclusive_group(required=True)
    method.add_argument("--model", help="a .keras file or a shipped model name")
    method.add_argument("--method", choices=("nlm", "bm3d"), help="a classical method")
    evaluate.add_argument("--data", required=True, help="folder of clean images")
    evaluate.add_argument("--task", choices=("denoise", "deblur_denoise"), default="denoise")
    evaluate.add_argument("--sigma", type=_sigma, default=0.1, help="noise level on [0, 1]")
    evaluate.add_argument("--kernel", default="gaussian", help="blur kernel name or file")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--channels", type=int, choices=(1, 3), help="default: the model's")
    evaluate.add_argument("--ensemble", action="store_true", help="8-fold self-ensemble")
    evaluate.add_argument("--cache", help="folder caching classical outputs (e.g. BM3D)")
    evaluate.add_argument("--limit", type=int, help="only the first N images (sorted by name)")
    evaluate.add_argument(
        "--clip", action="store_true", help="clip degraded inputs to [0, 1], as 8-bit photos are"
    )
    evaluate.add_argument("--json", help="also write the results here")
    evaluate.set_defaults(handler=_evaluate)

    denoise = commands.add_parser("denoise", help="restore image files or folders")
    _add_restore_arguments(
        denoise,
        "noise level on [0, 1] (25/255 = 0.098) for methods that take "
        "one; default: estimated per image (with --noisy-demo: the added noise, default 0.1)",
    )
    denoise.add_argument("--task", choices=("denoise", "deblur_denoise"), default="denoise")
    denoise.set_defaults(handler=_denoise)

    deblur = commands.add_parser(
        "deblur", help="deblur with a known kernel (plug-and-play with the noise-map denoiser)"
    )
    _add_restore_arguments(deblur, _PNP_SIGMA_HELP)
    deblur.add_argument(
        "--kernel",
        required=True,
        help="gaussian:STD, motion:LENGTH[:ANGLE], levin:N (0-7, from the data root) or a file "
        "(.npy, .txt, .csv, grayscale image); normalised to sum 1",
    )
    _add_pnp_arguments(deblur)
    deblur.set_defaults(handler=_denoise)

    upscale = commands.add_parser(
        "upscale", help="super-resolve x2/x3/x4 (plug-and-play with the noise-map denoiser)"
    )
    _add_restore_arguments(upscale, _PNP_SIGMA_HELP)
    upscale.add_argument("--scale", type=int, choices=(2, 3, 4), required=True)
    upscale.add_argument(
        "--kernel", help="the blur before downsampling, as for deblur (default: bicubic)"
    )
    _add_pnp_arguments(upscale)
    upscale.set_defaults(handler=_denoise)

    models = commands.add_parser("models", help="list the shipped models and where they are")
    models.set_defaults(handler=_models)

    download = commands.add_parser("download-bsds300", help="fetch BSDS300 (needs internet)")
    download.add_argument("destination", help="folder that will hold BSDS300/")
    download.set_defaults(handler=_download)

    export = commands.add_parser("export", help="export a .keras model (SavedModel/TFLite/ONNX)")
    export.add_argument("--model", required=True, help="a .keras file or a shipped model name")
    export.add_argument(
        "--out", required=True, help="a new or empty folder (or an earlier export, --overwrite)"
    )
    export.add_argument("--formats", default="savedmodel,tflite,onnx")
    export.add_argument(
        "--quantize",
        default="none",
        help="TFLite: none, fp16, dynamic, int8, int8_selective, int16x8 (comma-separated)",
    )
    export.add_argument("--fixed-size", help="HxW: static TFLite input for GPU/NPU delegates")
    export.add_argument("--representative-data", help="image folder for int8 calibration")
    export.add_argument(
        "--noise-bands",
        help="noise-map models: one calibrated TFLite file per sigma band on [0, 1], "
        "e.g. 0:0.08,0.08:0.3 (0-20.4 and 20.4-76.5 /255)",
    )
    export.add_argument(
        "--float-layers", type=int, help="layers int8_selective keeps in float (default 10)"
    )
    export.add_argument(
        "--io", default="float32", choices=("float32", "uint8"), help="tensor type in and out"
    )
    export.add_argument(
        "--overwrite", action="store_true", help="replace an earlier export in --out"
    )
    export.set_defaults(handler=_export)
    return parser


_PNP_SIGMA_HELP = (
    "noise level of the blurred image on [0, 1] (2.55/255 = 0.01); default: estimated per "
    "image (with --noisy-demo: the added noise, default 0.01)"
)


def _add_restore_arguments(command, sigma_help):
    """The file handling and method options `denoise`, `deblur` and `upscale` share."""
    command.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    command.add_argument("--output", required=True, help="output folder (created if needed)")
    command.add_argument(
        "--model", help="shipped model name, .keras path, or nlm/bm3d (default: the task's ResUNet)"
    )
    command.add_argument("--sigma", type=_sigma, help=sigma_help)
    command.add_argument("--tile", type=int, default=512, help="tile side; 0 = whole image")
    command.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels")
    command.add_argument(
        "--skip-existing", action="store_true", help="leave outputs that already exist as they are"
    )
    command.add_argument("--ensemble", action="store_true", help="8-fold self-ensemble (8x time)")
    command.add_argument(
        "--noisy-demo",
        action="store_true",
        help="degrade clean inputs first and report PSNR before/after",
    )
    command.add_argument("--seed", type=int, default=0, help="--noisy-demo noise seed")


def _add_pnp_arguments(command):
    command.add_argument(
        "--iterations",
        type=int,
        help="data steps and denoiser passes (default 8 for deblur, 24 for upscale)",
    )
    command.add_argument(
        "--data-root",
        help="where levin:N kernels are (default: $KERAS_RESUNET_DATA, else ../shared/datasets)",
    )


def _operator(args):
    """The known degradation of `deblur` / `upscale` (None for `denoise`)."""
    if args.command not in ("deblur", "upscale"):
        return None
    from keras_resunet.kernels import parse_kernel_spec
    from keras_resunet.pnp import make_operator

    if args.iterations is not None and args.iterations < 1:
        raise ValueError(f"--iterations must be >= 1: {args.iterations}")
    kernel = parse_kernel_spec(args.kernel, args.data_root) if args.kernel else None
    return make_operator(kernel, getattr(args, "scale", 1))


def _check_arguments(parser, args):
    """Checks what argparse cannot before anything heavy is imported; exits 2 on an error."""
    if args.command in ("denoise", "deblur", "upscale"):
        from keras_resunet.restore import RestoreOptions

        try:
            operator = _operator(args)
            args.options = RestoreOptions(
                model=args.model,
                task=getattr(args, "task", "denoise"),
                sigma=args.sigma,
                tile=args.tile,
                overlap=args.overlap,
                ensemble=args.ensemble,
                noisy_demo=args.noisy_demo,
                seed=args.seed,
                skip_existing=args.skip_existing,
                operator=operator,
                iterations=getattr(args, "iterations", None),
            )
        except (ValueError, FileNotFoundError) as error:
            parser.error(str(error))
    if args.command == "evaluate" and args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1: {args.limit}")


def _quiet_tensorflow():
    """Silences TensorFlow's C++ and absl logging (CUDA probes on CPU machines, oneDNN notes):
    the settings first, then the import itself with the process's stderr pointed at /dev/null,
    since the native libraries write to it while loading, before any setting applies."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return  # TensorFlow is imported later only if needed (and may not be installed)
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# Optional modules and the extra of this package that installs them
EXTRAS = {
    "onnx": "export",
    "tf2onnx": "export",
    "onnxruntime": "export",
    "ai_edge_litert": "export",
    "bm3d": "baselines",
    "torch": "torch",
}


def missing_dependency(error):
    """The message for an import that failed: the module, and what installs it."""
    name = (getattr(error, "name", None) or "").split(".")[0]
    if name in EXTRAS:
        return f"this needs the `{name}` module: pip install 'keras-resunet[{EXTRAS[name]}]'"
    if name:
        return f"this needs the `{name}` module, which is not installed: pip install {name}"
    return str(error)


def _terminate(signum, frame):
    # SIGTERM (kill, timeout, job schedulers) unwinds like Ctrl-C: temporary files are removed.
    raise SystemExit(128 + signum)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    if not args.verbose:
        _quiet_tensorflow()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        args.handler(args)
    except ImportError as error:  # an optional dependency this command needs
        print(f"resunet {args.command}: error: {missing_dependency(error)}", file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError) as error:
        print(f"resunet {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"resunet {args.command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as stop:
        if isinstance(stop.code, int) and stop.code > 128:
            print(f"resunet {args.command}: terminated", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
