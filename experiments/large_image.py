"""Peak memory and time of `resunet denoise` on one large photograph, tiled vs whole.

    python -m experiments.large_image [--model resunet-denoise|PATH] [--size 6000x4000]

Runs each setting in a fresh subprocess that reports its own peak resident memory (ru_maxrss),
so one run's allocations do not hide another's. Without a shipped model it measures an untrained
poster-size ResUNet: memory and time do not depend on the weights. Writes
results/inference/large_image.json.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from keras_resunet.io import write_text_atomically
from keras_resunet.provenance import command_line, machine_description

CHILD = """
import resource, sys, time, numpy as np
from keras_resunet.denoisers import KerasDenoiser
from keras_resunet.inference import load_denoiser, restore_image
from keras_resunet.models import build_resunet
spec, height, width, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
denoiser = KerasDenoiser(build_resunet()) if spec == "untrained" else load_denoiser(spec)
image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
start = time.perf_counter()
out = restore_image(denoiser, image, tile=tile or None, overlap=32)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def measure(spec, height, width, tile):
    """(seconds, peak MiB) of restoring one random height x width image in a child process."""
    start = time.time()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, spec, str(height), str(width), str(tile)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.time() - start
    if result.returncode:
        return {"tile": tile, "error": result.stderr.strip().splitlines()[-1], "wall_s": wall}
    seconds, peak_kib = result.stdout.strip().splitlines()[-1].split()
    return {
        "tile": tile,
        "restore_s": round(float(seconds), 1),
        "peak_mib": round(int(peak_kib) / 1024),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resunet-denoise")
    parser.add_argument("--size", default="6000x4000", help="WIDTHxHEIGHT")
    parser.add_argument("--tiles", default="512,256", help="tile sides; 0 = whole image")
    parser.add_argument("--out", default="results/inference/large_image.json")
    args = parser.parse_args(argv)
    from keras_resunet import pretrained

    spec = (
        args.model
        if args.model not in pretrained.PRETRAINED or args.model in pretrained.available()
        else "untrained"
    )
    width, height = map(int, args.size.lower().split("x"))
    rows = []
    for tile in (int(t) for t in args.tiles.split(",")):
        rows.append(measure(spec, height, width, tile))
        print(rows[-1])
    report = {
        "command": command_line("experiments.large_image", argv),
        "model": spec,
        "image": f"{width}x{height} RGB, random pixels",
        "overlap": 32,
        "machine": machine_description(),
        "rows": rows,
    }
    write_text_atomically(Path(args.out), json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
