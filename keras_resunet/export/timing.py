"""Throughput and latency of Keras `predict` and every exported runtime on CBSD68-sized images.

Each runtime restores the same batch-1 images (481x321 by default, the CBSD68 size) after a
warm-up; we report the median latency per image and megapixels per second. Thread counts are
stated in the output: TFLite (XNNPACK delegate, the LiteRT default) and ONNX Runtime are given
`threads`; TensorFlow uses its own pools, limited to `threads` as well.
"""

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_resunet.export import ExportOptions, export_model, load_keras_model
from keras_resunet.export.quantization import QUANTIZATIONS
from keras_resunet.export.runtimes import Runner, onnx_time_by_op
from keras_resunet.results import table_header


@dataclass(frozen=True)
class BenchmarkConfig:
    model: str | None = None  # a .keras file or shipped name; None: a random default ResUNet
    height: int = 321
    width: int = 481
    repeats: int = 10
    threads: int = 2
    out: str = "results/export"
    quantizations: tuple = QUANTIZATIONS
    model_description: str = ""  # how the model was made, for the results table
    check_data: str = ""  # where the check / calibration images came from
    # also time a float32 TFLite file with the timed size fixed (static shapes let XNNPACK
    # plan once; some delegates need them)
    fixed_size_variant: bool = True


def time_runner(runner, images, repeats):
    """Median seconds per image over `repeats` passes after one warm-up pass."""
    for image in images:
        runner(image[None])
    timings = []
    for _ in range(repeats):
        for image in images:
            start = time.perf_counter()
            runner(image[None])
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def run_benchmark(config=BenchmarkConfig(), check_images=(), command="", log=print):
    """Exports the model to a scratch folder, times every artifact, writes JSON and a table."""
    import tempfile

    import keras
    import tensorflow as tf

    from keras_resunet import pretrained, provenance

    try:
        tf.config.threading.set_intra_op_parallelism_threads(config.threads)
        tf.config.threading.set_inter_op_parallelism_threads(config.threads)
        tensorflow_threads = config.threads
    except RuntimeError:  # TensorFlow was already initialized in this process
        tensorflow_threads = "default (TensorFlow already initialized)"
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        model_path = config.model and pretrained.resolve(config.model)
        if model_path is None:
            from keras_resunet import build_resunet

            keras.utils.set_random_seed(0)
            model_path = str(Path(scratch) / "resunet_random.keras")
            build_resunet().save(model_path)
        exported = Path(scratch) / "exported"
        report = export_model(
            model_path,
            exported,
            ExportOptions(quantizations=config.quantizations),
            check_images=list(check_images),
            log=log,
        )
        rng = np.random.default_rng(0)
        channels = load_keras_model(model_path).input_shape[-1]  # 4 with a noise-level map
        shape = (config.height, config.width, channels)
        images = [rng.random(shape, dtype=np.float32) for _ in range(2)]
        megapixels = config.height * config.width / 1e6
        rows = []
        artifacts = [("keras predict", Path(model_path), "none", None)] + [
            (a["format"], exported / a["path"], a["quantization"], a["checks"])
            for a in report["artifacts"]
        ]
        if config.fixed_size_variant:
            fixed = Path(scratch) / "fixed"
            options = ExportOptions(
                ("tflite",), ("none",), fixed_size=(config.height, config.width)
            )
            fixed_report = export_model(model_path, fixed, options, log=log)
            checks = fixed_report["artifacts"][0]["checks"]
            label = f"tflite {config.height}x{config.width}"
            artifacts.append((label, fixed / "model_float32.tflite", "none", checks))
        for label, path, quantization, checks in artifacts:
            runner = Runner(path, threads=config.threads)
            seconds = time_runner(runner, images, config.repeats)
            row = {
                "runtime": label,
                "artifact": path.name,
                "quantization": quantization,
                "latency_ms": 1000 * seconds,
                "megapixels_per_s": megapixels / seconds,
                "psnr_change_db": (checks or {}).get("psnr_change_db"),
                "max_abs_diff": (checks or {}).get("max_abs_diff"),
            }
            rows.append(row)
            log(
                f"{label:<14} {path.name:<22} {row['latency_ms']:8.1f} ms "
                f"{row['megapixels_per_s']:6.2f} MP/s"
            )
        onnx = exported / "model.onnx"
        time_by_op = (
            onnx_time_by_op(onnx, images[0][None], config.threads) if onnx.is_file() else {}
        )
    keras_speed = rows[0]["megapixels_per_s"]
    for row in rows:
        row["speedup_vs_keras"] = row["megapixels_per_s"] / keras_speed
    result = {
        "command": command,
        "model": (config.model or "build_resunet() defaults, random weights (speed only)")
        + (f" ({config.model_description})" if config.model_description else ""),
        "image_size": [config.height, config.width],
        "check_data": config.check_data,
        "threads": config.threads,
        "tensorflow_threads": tensorflow_threads,
        "machine": provenance.machine_description(),
        "tools": report["tools"],
        "rows": rows,
        "onnx_time_by_op": time_by_op,
    }
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    (out / "README.md").write_text(_table(result))
    return result


def _table(result):
    lines = [
        "# Export benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Model: {result['model']}  ",
        (
            f"Images: batch 1, {result['image_size'][0]}x{result['image_size'][1]} RGB "
            f"(CBSD68 size); threads: {result['threads']} (TFLite with XNNPACK, ONNX Runtime "
            f"intra-op); TensorFlow intra/inter-op: {result['tensorflow_threads']}  "
        ),
        f"Machine: {result['machine']}",
        "",
        *table_header(
            [
                "runtime",
                "artifact",
                "quantization",
                "latency (ms)",
                "MP/s",
                "vs Keras",
                "max abs diff",
                "PSNR change (dB)",
            ],
            left=3,
        ),
    ]
    for row in result["rows"]:
        diff = "" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.1e}"
        change = "" if row["psnr_change_db"] is None else f"{row['psnr_change_db']:+.3f}"
        lines.append(
            f"| {row['runtime']} | {row['artifact']} | {row['quantization']} | "
            f"{row['latency_ms']:.1f} | {row['megapixels_per_s']:.2f} | "
            f"{row['speedup_vs_keras']:.2f}x | {diff} | {change} |"
        )
    latency = {row["runtime"]: row["latency_ms"] for row in result["rows"]}
    if "savedmodel" in latency:
        lines += [
            "",
            (
                "Where the time goes: the same TensorFlow graph served as a SavedModel takes "
                f"{latency['savedmodel']:.1f} ms, so "
                f"{latency['keras predict'] - latency['savedmodel']:.1f} ms of a Keras "
                "`predict` call is its per-call setup, not compute."
            ),
        ]
    if result.get("onnx_time_by_op"):
        shares = ", ".join(
            f"{op} {share:.0%}" for op, share in list(result["onnx_time_by_op"].items())[:5]
        )
        lines[-1] += f" ONNX Runtime's profiler, share of kernel time: {shares}."
    lines += [
        "",
        (
            "Max abs diff: largest difference from the Keras model's output over random inputs "
            "of several sizes and degraded test images. PSNR change: mean PSNR of the artifact's "
            "output minus the Keras model's, on the 256x256 centres of up to 4 check images "
            f"({result['check_data']}) degraded whole as the model's task (noise-map models: "
            "sigma 0.1); crops of them, degraded alike, calibrate int8."
        ),
        "",
    ]
    return "\n".join(lines)
