"""`python -m experiments.gpu_bundle OUT`: a folder that trains a config on a GPU machine that has
PyTorch (or JAX) but neither TensorFlow nor a network.

    python -m experiments.gpu_bundle gpu_bundle/ [--config experiments/configs/resunet_noise_map.yaml]
        [--python-version 3.12] [--no-wheels | --wheels keras,namex,optree] [--max-mib 64] [--fit]
    # on the GPU machine:
    sh gpu_bundle/train.sh [--set steps=20000]

OUT holds the package and its configs (`project/`), the model a config's `init_from` names, the
training images (`data/`), the pure-Python or manylinux wheels of what such a machine lacks
(`wheels/`: Keras and its small dependencies, PyYAML, Pillow) and `train.sh`, which installs
the wheels into `OUT/site` and trains on the PyTorch backend (KERAS_BACKEND to change it) with
`precision: auto` (bfloat16 on GPUs of compute capability 8.0 and newer). The run folder
`OUT/runs/<config name>` checkpoints as every run does; its `model.keras` loads on TensorFlow
for export. Images over `--max-mib` are refused, or with `--fit` cut to a seeded subset of every
folder (listed in `data/subset.json`). See experiments/gpu.md.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
# What a PyTorch or JAX GPU image usually lacks to run `resunet train` (numpy it has: a wheel
# of another numpy version would shadow the one PyTorch was built against).
WHEELS = (
    "keras",
    "absl-py",
    "h5py",
    "ml-dtypes",
    "namex",
    "optree",
    "rich",
    "markdown-it-py",
    "mdurl",
    "pygments",
    "packaging",
    "pyyaml",
    "pillow",
    "typing-extensions",
)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)
SUBSET_SEED = 0
SUBSET_RECORD_BYTES = 256 * 1024  # room left for data/subset.json
# what a machine reached through a transfer-limited tool takes; a folder copied by hand can
# be larger (`--max-mib`)
MAX_BYTES = 64 * 2**20

TRAIN_SH = """#!/bin/sh
# Trains {config} on this machine's GPU, with no network and no TensorFlow needed.
set -e
here="$(cd "$(dirname "$0")" && pwd)"
if [ -d "$here/wheels" ] && [ ! -d "$here/site" ]; then
    "${{PYTHON:-python3}}" -m pip install -q --no-index --no-deps --no-compile --target "$here/site" "$here"/wheels/*.whl
fi
export PYTHONPATH="$here/site:$here/project${{PYTHONPATH:+:$PYTHONPATH}}"
export KERAS_BACKEND="${{KERAS_BACKEND:-torch}}"
cd "$here/project"
exec "${{PYTHON:-python3}}" -m keras_resunet.cli train --config experiments/configs/{config} \\
    --data-root "$here/data" --out "$here/runs/{name}" --resume "$@"
"""


def build(
    out,
    config,
    data_root,
    python_version,
    wheels=True,
    log=print,
    max_bytes=MAX_BYTES,
    fit=False,
):
    """Writes the bundle to the new folder `out` (through a temporary folder); returns its size
    in bytes.

    Args:
        wheels: True (every name of WHEELS), False (none), or the names to download.
        fit: when the images do not fit in `max_bytes` beside the rest of the bundle, take a
            seeded subset of every image folder, the same fraction of each folder's bytes
            (`fit_subset`), instead of refusing; the files kept are listed in data/subset.json.

    Raises:
        FileExistsError: `out` exists.
        FileNotFoundError: the config, its training images or its `init_from` model is missing.
        ValueError: the bundle would exceed `max_bytes` (without `fit`, checked on the images
            before any copying; with it, no image of some folder fits), or names an unknown
            wheel.
    """
    from keras_resunet import data, data_sources
    from keras_resunet.training import TrainConfig

    out, config = Path(out), Path(config)
    if out.exists():
        raise FileExistsError(f"{out} exists: name a new folder")
    train_config = TrainConfig.from_yaml(config)
    # every image folder the run reads: its training folders and its validation folder
    folders = [Path(source.folder) for source in data.parse_sources(train_config.train_data)]
    folders += [Path(train_config.val_data)] if train_config.val_data else []
    sources = {}
    for images in folders:
        found = data_sources.resolve_folder(images, data_root)
        if not found.is_dir():
            raise FileNotFoundError(f"training images not found: {found}")
        sources[images] = found
    wheel_names = WHEELS if wheels is True else tuple(wheels or ())
    unknown = sorted(set(wheel_names) - set(WHEELS))
    if unknown:
        raise ValueError(f"unknown wheels {unknown}; known: {', '.join(WHEELS)}")
    files = {images: _files(found) for images, found in sources.items()}
    data_bytes = sum(size for listed in files.values() for _, size in listed)
    if data_bytes > max_bytes and not fit:
        raise ValueError(
            f"the config's images take {data_bytes / 2**20:.1f} MiB, over the bundle's "
            f"{max_bytes / 2**20:.0f} MiB: give a larger --max-mib where the folder is copied "
            "by hand, or --fit to take a subset"
        )
    scratch = out.with_name(f".{out.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        project = scratch / "project"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / "keras_resunet", project / "keras_resunet", ignore=ignore)
        shutil.copytree(ROOT / "experiments", project / "experiments", ignore=ignore)
        if train_config.init_from:
            model = Path(train_config.init_from)
            for path in (model, model.with_suffix(".json")):
                if not (ROOT / path).is_file():
                    raise FileNotFoundError(f"`init_from` file not found: {ROOT / path}")
                (project / path.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / path, project / path)
        if wheel_names:
            log(f"downloading {len(wheel_names)} wheels for Python {python_version} ...")
            _download_wheels(scratch / "wheels", python_version, wheel_names)
        script = scratch / "train.sh"
        script.write_text(TRAIN_SH.format(config=config.name, name=config.stem))
        script.chmod(0o755)
        rest = _size(scratch)  # the rest of the bundle is written: the images get what it leaves
        if data_bytes > max_bytes - rest:
            if not fit:
                raise ValueError(
                    f"the config's images take {data_bytes / 2**20:.1f} MiB, the rest of the "
                    f"bundle {rest / 2**20:.1f} MiB: over {max_bytes / 2**20:.0f} MiB; "
                    "give a larger --max-mib, or --fit to take a subset"
                )
            whole, files = files, fit_subset(files, max_bytes - rest - SUBSET_RECORD_BYTES)
            kept = {str(images): [str(p) for p, _ in listed] for images, listed in files.items()}
            for images, listed in files.items():
                log(f"{images}: {len(listed)} of {len(whole[images])} files kept")
            (scratch / "data").mkdir(parents=True)
            (scratch / "data" / "subset.json").write_text(json.dumps(kept, indent=0) + "\n")
        for images, found in sources.items():
            target = scratch / "data" / (images.name if images.is_absolute() else images)
            for relative, _ in files[images]:
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(found / relative, target / relative)
        if any(images.is_absolute() for images in sources):  # the bundle's config reads copies
            values = yaml.safe_load(config.read_text())
            rename = lambda folder: Path(folder).name if Path(folder).is_absolute() else folder
            entries = values["train_data"]
            if isinstance(entries, str):
                values["train_data"] = rename(entries)
            else:
                values["train_data"] = [
                    {**e, "folder": rename(e["folder"])} if isinstance(e, dict) else rename(e)
                    for e in entries
                ]
            if values.get("val_data"):
                values["val_data"] = rename(values["val_data"])
            (project / "experiments" / "configs" / config.name).write_text(yaml.safe_dump(values))
        size = _size(scratch)
        if size > max_bytes:
            raise ValueError(
                f"the bundle would take {size / 2**20:.1f} MiB, over {max_bytes / 2**20:.0f} MiB"
            )
        scratch.rename(out)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return size


def fit_subset(files, room):
    """{folder: [(relative path, bytes)]} -> the same with a seeded subset of each folder's
    files, all of it at most `room` bytes: about the same fraction of every folder's bytes,
    and at least one file of each (its smallest where its share holds none).

    Raises:
        ValueError: one file of each folder does not fit.
    """
    if sum(min(size for _, size in listed) for listed in files.values()) > room:
        raise ValueError(
            f"one image of each folder does not fit in {max(room, 0) / 2**20:.1f} MiB beside "
            "the rest of the bundle: give a larger --max-mib"
        )
    fraction = room / sum(size for listed in files.values() for _, size in listed)
    while True:  # smallest files kept beyond a folder's share can overshoot: shrink the share
        kept = {folder: _share(listed, fraction) for folder, listed in files.items()}
        if sum(size for listed in kept.values() for _, size in listed) <= room:
            return kept
        fraction *= 0.97


def _share(listed, fraction):
    """A seeded subset of `listed` of at most `fraction` of its bytes, else its smallest file."""
    budget = fraction * sum(size for _, size in listed)
    chosen, used = [], 0
    for index in np.random.default_rng(SUBSET_SEED).permutation(len(listed)):
        if used + listed[index][1] <= budget:
            chosen.append(listed[index])
            used += listed[index][1]
    return sorted(chosen) or [min(listed, key=lambda item: item[1])]


def _files(folder):
    """[(path relative to `folder`, bytes)] of every file under it, sorted."""
    return sorted(
        (p.relative_to(folder), p.stat().st_size) for p in folder.rglob("*") if p.is_file()
    )


def _size(folder):
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _download_wheels(folder, python_version, names=WHEELS):
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", python_version, "--implementation", "cp", "-d", str(folder)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    result = subprocess.run([*command, *names], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise OSError(f"pip download failed: {result.stderr.strip().splitlines()[-1:]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="a new folder")
    parser.add_argument("--config", default="experiments/configs/resunet_noise_map.yaml")
    parser.add_argument("--data-root")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python")
    wheel_choice = parser.add_mutually_exclusive_group()
    wheel_choice.add_argument(
        "--no-wheels", action="store_true", help="the machine has Keras already"
    )
    wheel_choice.add_argument(
        "--wheels",
        help=f"comma-separated, only the packages the machine lacks (of {','.join(WHEELS)})",
    )
    parser.add_argument("--max-mib", type=float, default=MAX_BYTES / 2**20, help="size limit")
    parser.add_argument(
        "--fit",
        action="store_true",
        help="take a seeded subset of the images (the same fraction of each folder) to fit",
    )
    args = parser.parse_args(argv)
    if args.max_mib <= 0:
        parser.error("--max-mib must be positive")
    wheels = not args.no_wheels
    if args.wheels is not None:
        wheels = tuple(name.strip() for name in args.wheels.split(",") if name.strip())
        if not wheels:
            parser.error("--wheels names no package (use --no-wheels)")
    try:
        size = build(
            args.out,
            args.config,
            args.data_root,
            args.python_version,
            wheels=wheels,
            max_bytes=int(args.max_mib * 2**20),
            fit=args.fit,
        )
    except (OSError, ValueError) as error:
        print(f"gpu_bundle: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB); on the GPU machine: sh {args.out}/train.sh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
