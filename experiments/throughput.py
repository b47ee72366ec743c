"""`python -m experiments.throughput`: training patches/s of UNet and ResUNet at the poster's
settings (batch 64, 32x32, Adam, MSE) on BSDS300 train, per Keras backend, with and without
XLA on TensorFlow.

    python -m experiments.throughput [--backends tensorflow,torch] [--processes 2] [--models dncnn]
        [--precisions float32,mixed_bfloat16]

Each backend runs in its own process (KERAS_BACKEND is read once, at import). With
`--processes N`, N single-threaded copies run at once and the table reports each copy and their
sum: what N independent runs (or N data-parallel workers, before their gradient exchange)
get from the CPU together. Writes results/training/throughput.json.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys

from keras_resunet.io import write_text_atomically
from keras_resunet.models import MODELS
from keras_resunet.precision import PRECISIONS
from keras_resunet.provenance import command_line, machine_description

# (jit_compile, fast_torch_conv) per backend: the PyTorch rows compare Keras's own conv with
# keras_resunet.torch_conv (what the trainer uses).
SETTINGS = {
    "tensorflow": ((True, False), (False, False)),
    "torch": ((False, False), (False, True)),
    "jax": ((True, False),),
}


def measure_backend(backend, models, precisions, patch_size=32, batch_size=64):
    """Rows for the current process's backend (called in the child process)."""
    import keras

    from experiments.speed import measure_throughput
    from keras_resunet import data, data_sources

    images, _ = data.load_images(data_sources.resolve_data_root() / "BSDS300" / "images" / "train")
    rows = []
    for model in models:
        for (jit, fast_conv), precision in itertools.product(SETTINGS[backend], precisions):
            row = measure_throughput(
                model,
                images,
                batch_size=batch_size,
                patch_size=patch_size,
                jit_compile=jit,
                fast_torch_conv=fast_conv,
                precision=precision,
            )
            rows.append({"backend": keras.backend.backend(), **row})
            shown = precision if precision != "auto" else f"auto={row['precision']}"
            print(
                f"{backend:<10} {model:<11} jit={jit!s:<5} fast_conv={fast_conv!s:<5} "
                f"{shown:<20} {row['patches_per_second']:7.1f} patches/s"
            )
    return rows


# One thread per process: every library's own pool (PyTorch/OpenMP, TensorFlow, oneDNN).
SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
}


def run_children(backend, processes, models, precisions, shape=("32", "64")):
    """Rows from `processes` concurrent child processes measuring `backend` (None if one failed)."""
    env = {**os.environ, "KERAS_BACKEND": backend, **(SINGLE_THREAD if processes > 1 else {})}
    command = [sys.executable, "-m", "experiments.throughput", "--child", backend]
    children = [
        subprocess.Popen(
            [*command, "--models", ",".join(models), "--precisions", ",".join(precisions)]
            + ["--patch-size", shape[0], "--batch-size", shape[1]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = [child.communicate() for child in children]
    per_child = []
    for child, (stdout, stderr) in zip(children, outputs):
        found = [line for line in stdout.splitlines() if line.startswith("ROWS ")]
        if child.returncode or not found:
            print(f"throughput: {backend} failed:\n{stderr[-2000:]}", file=sys.stderr)
            return None
        print("\n".join(line for line in stdout.splitlines() if not line.startswith("ROWS")))
        per_child.append(json.loads(found[0][5:]))
    return per_child[0] if processes == 1 else combine(per_child)


def combine(per_child):
    """One row per (model, jit) from concurrent children's rows: each child's rate and the sum."""
    rows = []
    for same in zip(*per_child, strict=True):
        each = [row["patches_per_second"] for row in same]
        rows.append(
            {
                **same[0],
                "processes": len(same),
                "threads_per_process": 1,
                "patches_per_second_each": each,
                "patches_per_second": float(sum(each)),
            }
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,torch")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help="concurrent single-thread copies")
    parser.add_argument("--models", default="unet,resunet", help="comma-separated model names")
    parser.add_argument(
        "--precisions",
        default="auto,float32",
        help="Keras dtype policies, e.g. float32,mixed_bfloat16; auto = what training picks here",
    )
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default="results/training/throughput.json")
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; valid: {sorted(MODELS)}")
    precisions = args.precisions.split(",")
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        parser.error(f"unknown precisions {unknown}; valid: {list(PRECISIONS)}")
    if args.child:
        rows = measure_backend(args.child, models, precisions, args.patch_size, args.batch_size)
        print("ROWS " + json.dumps(rows))
        return 0
    rows = []
    for backend in args.backends.split(","):
        if backend not in SETTINGS:
            print(f"throughput: error: unknown backend {backend!r}", file=sys.stderr)
            return 1
        shape = (str(args.patch_size), str(args.batch_size))
        found = run_children(backend, args.processes, models, precisions, shape)
        if found is None:
            return 1
        rows += found
    report = {
        "command": command_line("experiments.throughput", argv),
        "data": f"BSDS300 train (200 images), random {args.patch_size}x{args.patch_size} patches, "
        f"batch {args.batch_size}, sigma 0.1",
        "machine": machine_description(),
        "rows": rows,
    }
    write_text_atomically(args.out, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
