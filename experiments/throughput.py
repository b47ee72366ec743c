"""`python -m experiments.throughput`: training patches/s of UNet and ResUNet at the poster's
settings (batch 64, 32x32, Adam, MSE) on BSDS300 train, with and without XLA.

Writes results/training/throughput.json.
"""

import json
import os
import platform
import sys

from keras_resunet import data
from keras_resunet.io import write_text_atomically
from keras_resunet.training import measure_throughput


def main():
    root = data.resolve_data_root()
    images, _ = data.load_images(root / "BSDS300" / "images" / "train")
    rows = []
    for model in ("unet", "resunet"):
        for jit in (True, False):
            row = measure_throughput(model, images, jit_compile=jit)
            rows.append(row)
            print(f"{model:<8} jit={jit!s:<5} {row['patches_per_second']:7.1f} patches/s")
    result = {
        "command": "python -m experiments.throughput",
        "data": "BSDS300 train (200 images), random 32x32 patches, sigma 0.1",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "rows": rows,
    }
    write_text_atomically("results/training/throughput.json", json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
