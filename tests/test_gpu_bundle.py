import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from experiments import gpu_bundle
from tests.support import smooth_image


@pytest.fixture
def data_root(tmp_path):
    # every folder the campaign config reads: its training folders and its validation folder
    for name in ("BSDS300/images/train", "Photos1k/train/a", "Photos1k/val/b"):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for index in range(3):
            image = np.round(smooth_image(48, 48, seed=index) * 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{index}.png")
    return tmp_path / "data"


def test_the_bundle_trains_from_its_own_folder(data_root, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "bundle"
    size = gpu_bundle.build(
        out, "experiments/configs/resunet_noise_map.yaml", data_root, "3.12", wheels=False
    )
    assert size < gpu_bundle.MAX_BYTES
    assert (out / "project" / "saved_models" / "resunet-noise-map.keras").is_file()
    assert sorted(p.name for p in (out / "data" / "BSDS300" / "images" / "train").iterdir()) == [
        "0.png",
        "1.png",
        "2.png",
    ]
    env = {**os.environ, "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)
    overrides = ["--set", "steps=4", "--set", "batch_size=2", "--set", "patch_size=32"]
    result = subprocess.run(
        ["sh", str(out / "train.sh"), *overrides, "--set", "precision=float32"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "starting" in result.stdout and "resunet-noise-map.keras" in result.stdout
    run = out / "runs" / "resunet_noise_map"
    import keras_resunet.models  # noqa: F401

    model = keras.models.load_model(run / "model.keras", compile=False)
    assert model.input_shape[-1] == 4 and model.output_shape[-1] == 3


def test_an_existing_folder_or_missing_images_are_refused(data_root, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        gpu_bundle.build(
            tmp_path / "taken", "experiments/configs/resunet_noise_map.yaml", data_root, "3.12"
        )
    with pytest.raises(FileNotFoundError, match="training images"):
        gpu_bundle.build(
            tmp_path / "new", "experiments/configs/resunet_noise_map.yaml", tmp_path, "3.12"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "taken"]


def test_images_over_the_size_limit_are_refused_before_anything_is_written(data_root, tmp_path):
    config = "experiments/configs/resunet_noise_map.yaml"
    with pytest.raises(ValueError, match="--max-mib"):
        gpu_bundle.build(tmp_path / "small", config, data_root, "3.12", max_bytes=1000)
    assert (
        gpu_bundle.main(
            [str(tmp_path / "small"), "--data-root", str(data_root), "--max-mib", "0.001"]
        )
        == 1
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
