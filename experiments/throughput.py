"""`python -m experiments.throughput`: training patches/s of UNet and ResUNet at the poster's
settings (batch 64, 32x32, Adam, MSE) on BSDS300 train, per Keras backend, with and without
XLA on TensorFlow.

    python -m experiments.throughput [--backends tensorflow,torch]

Each backend runs in its own process (KERAS_BACKEND is read once, at import). Writes
results/training/throughput.json.
"""

import argparse
import json
import os
import subprocess
import sys

from keras_resunet.io import write_text_atomically
from keras_resunet.results import machine_description

SETTINGS = {"tensorflow": (True, False), "torch": (False,), "jax": (True,)}


def measure_backend(backend):
    """Rows for the current process's backend (called in the child process)."""
    import keras

    from keras_resunet import data
    from keras_resunet.training import measure_throughput

    images, _ = data.load_images(data.resolve_data_root() / "BSDS300" / "images" / "train")
    rows = []
    for model in ("unet", "resunet"):
        for jit in SETTINGS[backend]:
            row = measure_throughput(model, images, jit_compile=jit)
            rows.append({"backend": keras.backend.backend(), **row})
            print(
                f"{backend:<10} {model:<8} jit={jit!s:<5} {row['patches_per_second']:7.1f} patches/s"
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,torch")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="results/training/throughput.json")
    args = parser.parse_args(argv)
    if args.child:
        print("ROWS " + json.dumps(measure_backend(args.child)))
        return 0
    rows = []
    for backend in args.backends.split(","):
        if backend not in SETTINGS:
            print(f"throughput: error: unknown backend {backend!r}", file=sys.stderr)
            return 1
        result = subprocess.run(
            [sys.executable, "-m", "experiments.throughput", "--child", backend],
            env={**os.environ, "KERAS_BACKEND": backend},
            capture_output=True,
            text=True,
            check=False,
        )
        found = [line for line in result.stdout.splitlines() if line.startswith("ROWS ")]
        if result.returncode or not found:
            print(f"throughput: {backend} failed:\n{result.stderr[-2000:]}", file=sys.stderr)
            return 1
        print("\n".join(line for line in result.stdout.splitlines() if not line.startswith("ROWS")))
        rows += json.loads(found[0][5:])
    report = {
        "command": " ".join(["python -m experiments.throughput", *(argv or sys.argv[1:])]),
        "data": "BSDS300 train (200 images), random 32x32 patches, sigma 0.1",
        "machine": machine_description(),
        "rows": rows,
    }
    write_text_atomically(args.out, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
