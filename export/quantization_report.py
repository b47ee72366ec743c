"""`python -m export.quantization_report --model NAME`: where int8 loses, and what each TFLite
variant costs in PSNR on test photos.

    python -m export.quantization_report --model resunet-noise-map [--images 8]
        [--float-layers 4,10,16,24] [--representative-data DIR] [--out results/export]
        [--int8-source QAT.keras] [--variants none,int8,int8_selective]

1. TFLite's quantization debugger runs the float and the int8 graph layer by layer on calibration
   crops; the layers whose error is largest in quantization steps are listed. int8 rounding
   simulated in Keras on the weights alone, the activations alone, or both (and, for a
   noise-level-map model, the activations over ranges calibrated at one noise level) says which
   kind of rounding costs the PSNR.
2. Every variant (float32, fp16, dynamic, int8, int8 with the k layers kept in float whose
   rounding alone changes the output most (simulated in Keras, `int8_simulation`),
   int16x8; with `--int8-source`, float32 and int8 converted from a quantization-aware
   fine-tune of the model, `resunet train` with `quantization_aware: true`; for a
   noise-level-map model, int8 as one file per noise band, `quantization.NOISE_BANDS`, each
   calibrated on its band alone) is converted and
   run in LiteRT on the first `--images` CBSD68 photos, degraded with
   the evaluation's seeded noise (at 15, 25 and 50 /255 for a noise-level-map model, at the
   model's own level otherwise). Reported: PSNR against the clean photo, its change from the Keras
   model on the same inputs, and the largest pixel difference from Keras. Speed is measured by
   `python -m export.benchmark`, on a quiet machine.

Calibration uses BSDS300 train (`--representative-data`), never the test photos.
Writes OUT/quantization_NAME.{json,md}.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def _variants(float_layers, noise_map):
    """(label, quantization, convert's extra arguments, source): the rows of the report."""
    variants = [("float32", "none", {}), ("fp16", "fp16", {}), ("dynamic", "dynamic", {})]
    variants.append(("int8", "int8", {}))
    for count in float_layers:
        variants.append((f"int8, {count} layers float", "int8_selective", {"float_layers": count}))
    variants.append(("int16x8", "int16x8", {}))
    variants = [(*variant, "model") for variant in variants]
    if noise_map:  # one file per noise band, each test input run by its band's file
        variants.append(("int8 per noise band", "int8", {}, "bands"))
        for count in float_layers:
            extra = {"float_layers": count}
            variants.append((f"int8 per noise band, {count} layers float", "int8_selective", extra, "bands"))  # fmt: skip
    return variants


def run(args):
    import tensorflow as tf

    from keras_resunet import data, datasets, degradations, provenance
    from keras_resunet.calibration import Codec, model_input, representative, takes_noise_map
    from keras_resunet.export import check_images, load_keras_model, model_degradation
    from keras_resunet.export import quantization as q
    from keras_resunet.export.runtimes import Runner
    from keras_resunet.io import write_text_atomically
    from keras_resunet.metrics import psnr

    model = load_keras_model(args.model)
    noise_map = takes_noise_map(model)
    int8_source = args.int8_source and load_keras_model(args.int8_source)
    if int8_source and (
        int8_source.input_shape != model.input_shape
        or int8_source.output_shape != model.output_shape
        or [w.shape for w in int8_source.weights] != [w.shape for w in model.weights]
    ):
        raise ValueError(f"--int8-source {args.int8_source} is not a copy of {args.model}")
    own_degradation = model_degradation(args.model)
    tests = photo_degradations(own_degradation, noise_map)
    kernel = degradations.blur_kernel(tests[0])
    calibration, calibration_source = check_images(args.representative_data)
    calibration = [image for image in calibration if image.shape[-1] == 3]
    test, _ = datasets.load_test_set("CBSD68", args.data_root, limit=args.images)
    cases = []  # (sigma, clean, model input)
    for degradation in tests:
        sigma = degradations.noise_level(degradation)
        degraded, clean = data.evaluation_pairs(test, degradation, seed=0)
        cases += [(sigma, c, model_input(d, sigma, noise_map)) for d, c in zip(degraded, clean)]
    keras_out = [np.clip(model.predict(x[None], verbose=0)[0], 0, 1) for _, _, x in cases]
    record = {
        "command": provenance.command_line("export.quantization_report", args.argv),
        "model": args.model,
        "calibration": f"{calibration_source}: seeded crops, "
        + ("noisy at 0 ... 75/255" if noise_map else "degraded as the model's task"),
        "test": f"first {len(test)} CBSD68 images, "
        + (
            f"blurred by the task's {kernel.shape[0]}x{kernel.shape[1]} kernel, then "
            if kernel is not None
            else ""
        )
        + "seeded noise at "
        + ", ".join(f"{degradations.noise_level(d) * 255:.3g}/255" for d in tests),
        "machine": provenance.machine_description(),
        "keras_psnr": _by_sigma(cases, keras_out, psnr),
        "int8_source": args.int8_source,
        "layers": [],
        "variants": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        spec = tf.TensorSpec((None, None, None, model.input_shape[-1]), tf.float32)
        sources = {}
        for key, keras_model in (("model", model), ("int8_source", int8_source)):
            if keras_model:
                sources[key] = Path(scratch) / f"savedmodel_{key}"
                keras_model.export(
                    str(sources[key]),
                    format="tf_saved_model",
                    verbose=False,
                    input_signature=[spec],
                )
        source = sources["model"]
        dataset = representative(
            calibration, spec, noise_map, Codec("float32"), degradation=own_degradation
        )
        print("quantization debugger ...")
        layers = q.layer_errors(source, dataset)
        print("int8 sensitivity per layer (simulated in Keras) ...")
        calibrated = q.calibration_ranges(model, dataset)
        ranking = q.sensitivity_ranking(model, dataset, calibration=calibrated)
        record["float_layers_by_sensitivity"] = ranking[: max(args.float_layers)]
        print("int8 rounding simulated in Keras: weights, activations, both ...")
        ranges = calibrated[0]
        ranges_at = {}
        if noise_map:  # a range wide enough for every noise level, or the test's own level's
            for sigma in sorted({sigma for sigma, _, _ in cases}):
                one_level = representative(
                    calibration, spec, True, Codec("float32"), sigmas=(sigma,)
                )
                ranges_at[sigma] = q.calibration_ranges(model, one_level)[0]
        record["simulation"] = [
            {"variant": label, "psnr_change_db": _change(cases, outputs, record, psnr)}
            for label, outputs in simulated_int8(model, ranges, cases, ranges_at)
        ]
        record["layers"] = [
            {k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}
            for row in layers[: args.top]
        ]
        bands = {}  # band: (calibration dataset, debugger's layers, sensitivity ranking)
        for band in q.NOISE_BANDS if noise_map else ():
            print(f"calibration on noise band {band} ...")
            sigmas = q.band_sigmas(band)
            band_data = representative(calibration, spec, True, Codec("float32"), sigmas=sigmas)
            band_ranking = q.sensitivity_ranking(model, band_data)
            bands[band] = (band_data, q.layer_errors(source, band_data), band_ranking)
        record["noise_bands"] = [list(band) for band in bands]
        variants = [v for v in _variants(args.float_layers, noise_map) if v[1] in args.variants]
        if int8_source:
            variants += [
                ("float32, quantization-aware weights", "none", {}, "int8_source"),
                ("int8, quantization-aware weights", "int8", {}, "int8_source"),
            ]
        for label, quantization, extra, origin in variants:
            print(f"{label} ...")
            if origin == "bands":  # one file per band, calibrated on that band alone
                files = {band: (sources["model"], *bands[band]) for band in bands}
            else:
                files = {None: (sources[origin], dataset, layers, ranking)}
            runners = {}
            for index, (band, (saved, data_set, errors, order)) in enumerate(files.items()):
                path = Path(scratch) / f"{origin}_{quantization}_{extra.get('float_layers', 0)}_{index}.tflite"  # fmt: skip
                path.write_bytes(
                    q.convert(saved, quantization, data_set, layers=errors, ranking=order, **extra)
                )
                runners[band] = Runner(path, threads=args.threads)

            def file_for(sigma, origin=origin, runners=runners):
                return runners[q.band_of(sigma, runners) if origin == "bands" else None]

            outputs = [np.clip(file_for(sigma)(x[None])[0], 0, 1) for sigma, _, x in cases]
            row = {
                "variant": label,
                "quantization": quantization,
                **extra,
                "size_mb": round(path.stat().st_size / 2**20, 2),
                "psnr": _by_sigma(cases, outputs, psnr),
                "psnr_change_db": _change(cases, outputs, record, psnr),
                "max_abs_diff": round(
                    max(float(np.max(np.abs(o - k))) for o, k in zip(outputs, keras_out)), 4
                ),
            }
            record["variants"].append(row)
            print(f"  {row['psnr_change_db']} max diff {row['max_abs_diff']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"quantization_{Path(args.model).stem}"
    write_text_atomically(out / f"{stem}.json", json.dumps(record, indent=2) + "\n")
    write_text_atomically(out / f"{stem}.md", _table(record))
    print(f"wrote {out / stem}.md")


def photo_degradations(own, noise_map):
    """What the test photos get: noise at 15, 25 and 50 /255 for a noise-level-map model, else
    the model's own degradation `own` (a shipped model's or a run folder's; a deblurring model
    tested on sharp photos would measure nothing it is for), Gaussian noise 0.1 when unknown."""
    from keras_resunet import degradations

    if noise_map:
        return [degradations.GaussianNoise(s / 255) for s in (15, 25, 50)]
    return [own or degradations.GaussianNoise(0.1)]


def simulated_int8(model, ranges, cases, ranges_at=None):
    """[(label, outputs on `cases`)] of `model` with int8 rounding simulated in Keras
    (`int8_simulation`): on the conv weights alone, on the activations alone over the
    calibration `ranges`, on both; with `ranges_at` ({sigma: ranges calibrated at that noise
    level alone}), on the activations over the ranges of each test input's own level."""
    from keras_resunet.int8_simulation import with_int8_rounding

    def run(simulated_for):
        return [
            np.clip(simulated_for(sigma).predict(x[None], verbose=0)[0], 0, 1)
            for sigma, _, x in cases
        ]

    rows = []
    for label, chosen, kernels in (
        ("weights", dict.fromkeys(ranges), True),
        ("activations", ranges, False),
        ("weights and activations", ranges, True),
    ):
        simulated = with_int8_rounding(model, chosen, kernels=kernels)
        rows.append((label, run(lambda _, simulated=simulated: simulated)))
    if ranges_at:
        by_level = {s: with_int8_rounding(model, r, kernels=False) for s, r in ranges_at.items()}
        rows.append(("activations, ranges of the test's noise level alone", run(by_level.get)))
    return rows


def _change(cases, outputs, record, psnr):
    scores = _by_sigma(cases, outputs, psnr)
    return {s: round(scores[s] - record["keras_psnr"][s], 3) for s in scores}


def _by_sigma(cases, outputs, psnr):
    scores = {}
    for (sigma, clean, _), output in zip(cases, outputs):
        scores.setdefault(f"{sigma * 255:.3g}/255", []).append(float(psnr(output, clean)))
    return {s: round(float(np.mean(v)), 3) for s, v in scores.items()}


def _table(record):
    from keras_resunet.export.quantization import BAND_LEVELS
    from keras_resunet.results import table_header

    sigmas = list(record["keras_psnr"])
    lines = [
        f"# TFLite quantization of {record['model']}",
        "",
        f"Command: `{record['command']}`  ",
        f"Calibration: {record['calibration']}.  ",
        f"Test: {record['test']}; Keras PSNR "
        + ", ".join(f"{v:.3f} dB at {s}" for s, v in record["keras_psnr"].items())
        + ".  ",
        f"Machine: {record['machine']}",
        "",
        "## PSNR change from the Keras model, per variant",
        "",
        *([_int8_source_note(record["int8_source"])] if record.get("int8_source") else []),
        "",
        *table_header(
            ["variant", "size (MB)", *(f"change at {s} (dB)" for s in sigmas), "max abs diff"]
        ),
    ]
    for row in record["variants"]:
        lines.append(
            f"| {row['variant']} | {row['size_mb']:.2f} | "
            + " | ".join(f"{row['psnr_change_db'][s]:+.3f}" for s in sigmas)
            + f" | {row['max_abs_diff']:.3f} |"
        )
    if record.get("float_layers_by_sensitivity"):
        lines += [
            "",
            "Layers kept in float by the `int8, k layers float` rows: the first k of "
            + ", ".join(f"`{name}`" for name in record["float_layers_by_sensitivity"])
            + " (each layer's output rounded alone in a Keras copy of the model, calibration "
            "crops: the largest change of the model's output first).",
        ]
    if record.get("noise_bands"):
        bands = ", ".join(f"{lo * 255:.3g}-{hi * 255:.3g}/255" for lo, hi in record["noise_bands"])
        note = (
            f"The `per noise band` rows are one file per band of noise levels ({bands}), each "
            f"calibrated on crops noisy at {BAND_LEVELS} levels spread across its band (and its "
            "layers kept in float chosen on them); each test input is run by the file of its "
            "band, the first that holds its sigma (`resunet export --noise-bands`)."
        )
        lines += ["", note]
    if record.get("simulation"):
        lines += [
            "",
            "## Where the int8 loss comes from (rounding simulated in Keras)",
            "",
            (
                "PSNR change from the Keras model on the same test inputs with int8 rounding "
                "simulated on one kind of tensor: conv weights (per output channel), "
                "activations (per tensor, over the calibration ranges), both; for a "
                "noise-level-map model also the activations over ranges calibrated at the test "
                "input's own noise level, which says what one range wide enough for every level "
                "costs."
            ),
            "",
            *table_header(["rounded", *(f"change at {s} (dB)" for s in sigmas)]),
            *(
                f"| {row['variant']} | "
                + " | ".join(f"{row['psnr_change_db'][s]:+.3f}" for s in sigmas)
                + " |"
                for row in record["simulation"]
            ),
        ]
    lines += [
        "",
        "## Layers with the largest int8 error (quantization debugger, calibration crops)",
        "",
        "RMS error in quantization steps (0.29 is the floor of rounding alone).",
        "",
        *table_header(["op", "tensor", "range", "RMS error / step", "max abs error"], left=2),
    ]
    for row in record["layers"]:
        lines.append(
            f"| {row['op_name']} | `{row['tensor_name']}` | {row['range']:.3f} | "
            f"{row['rmse_per_scale']:.2f} | {row['max_abs_error']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def _int8_source_note(path):
    return (
        f"Rows on quantization-aware weights are converted from `{path}` (a fine-tune of the "
        "model through simulated int8 rounding); their change is measured against the model's "
        "own Keras output, like every row."
    )


def main(argv=None):
    from keras_resunet.export.quantization import QUANTIZATIONS

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a .keras file or a shipped model name")
    parser.add_argument("--images", type=int, default=8, help="CBSD68 photos to test on")
    parser.add_argument("--float-layers", default="4,10,16,24", help="k values for int8_selective")
    parser.add_argument("--representative-data", help="calibration images (default BSDS300 train)")
    parser.add_argument("--data-root", help="default: $KERAS_RESUNET_DATA, else ../shared/datasets")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=12, help="layers to list")
    parser.add_argument("--out", default="results/export")
    parser.add_argument(
        "--int8-source", help="a quantization-aware fine-tune of --model (.keras) to convert too"
    )
    parser.add_argument(
        "--variants",
        default=",".join(QUANTIZATIONS),
        help="the quantizations to convert (default all; int16x8 is slow to run here)",
    )
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in QUANTIZATIONS]
    if unknown or not args.variants:
        parser.error(f"--variants takes names of {', '.join(QUANTIZATIONS)}; got {unknown}")
    try:
        args.float_layers = [int(k) for k in args.float_layers.split(",") if k.strip()]
    except ValueError:
        parser.error("--float-layers takes comma-separated integers")
    if args.images < 1 or any(k < 1 for k in args.float_layers):
        parser.error("--images and --float-layers must be positive")
    args.argv = argv
    try:
        run(args)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"quantization_report: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
