"""The wheel as a user gets it: built, installed in a fresh venv outside the checkout, and used
from another folder with no models folder configured."""

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_resunet import pretrained
from tests.support import smooth_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("keras_resunet-*.whl")
    return path


def test_the_wheel_carries_the_default_models_the_license_and_its_dependencies(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = archive.read(metadata).decode()
    for name in pretrained.DEFAULT_FOR_TASK.values():
        stem = f"keras_resunet/saved_models/{pretrained.PRETRAINED[name].filename[:-6]}"
        assert {f"{stem}.keras", f"{stem}.md", f"{stem}.json"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    for package in ("pywavelets", "pillow-heif", "pillow-jxl-plugin"):
        assert f"Requires-Dist: {package}" in requires
    # every package of the source tree is in the wheel
    packages = {p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("keras_resunet/**/*.py")}
    assert {f"{p}/__init__.py" for p in packages} <= names


def test_an_installed_wheel_restores_a_photo_from_any_folder(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the dependencies are this environment's (no download); the package is only the wheel's
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
        + [str(wheel)],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    clean = (smooth_image(64, 80, seed=3) * 255).round().astype(np.uint8)
    noisy = clean + np.random.default_rng(0).normal(0, 15, clean.shape)
    Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8)).save(work / "photo.png")
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_RESUNET_MODELS", "PYTHONPATH")}
    resunet = str(env_dir / "bin" / "resunet")
    listing = subprocess.run(
        [resunet, "models"], cwd=work, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert f"{site}/keras_resunet/saved_models/resunet-noise-map.keras" in listing
    run = subprocess.run(
        [resunet, "denoise", "photo.png", "--output", "out"],
        check=False,
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "estimated" in run.stdout
    restored = np.asarray(Image.open(work / "out" / "photo.png"), np.float64)
    assert restored.shape == clean.shape
    error = lambda image: np.sqrt(np.mean((image - clean) ** 2))
    assert error(restored) < 0.6 * error(np.asarray(Image.open(work / "photo.png"), np.float64))
