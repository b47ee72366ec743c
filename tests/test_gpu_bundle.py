import json
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


@pytest.mark.parametrize("room_fraction", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("layout", [(3, 5), (1, 8, 2), (6,), (1, 1, 30)])
def test_a_fitted_subset_fits_keeps_every_folder_and_the_same_share_of_each(room_fraction, layout):
    rng = np.random.default_rng(len(layout))
    files = {
        f"folder{f}": [(f"sub/{i}.jpg", int(rng.integers(1000, 5000))) for i in range(count)]
        for f, count in enumerate(layout)
    }
    total = sum(size for listed in files.values() for _, size in listed)
    room = int(room_fraction * total)
    smallest = sum(min(s for _, s in listed) for listed in files.values())
    if room < smallest:  # one file per folder is the least a subset holds
        with pytest.raises(ValueError, match="one image of each folder"):
            gpu_bundle.fit_subset(files, room)
        room = smallest
    kept = gpu_bundle.fit_subset(files, room)
    assert kept == gpu_bundle.fit_subset(files, room)  # seeded
    assert sum(size for listed in kept.values() for _, size in listed) <= room
    for folder, listed in files.items():
        assert kept[folder] and set(kept[folder]) <= set(listed)
        share = sum(s for _, s in kept[folder]) / sum(s for _, s in listed)
        # no folder gets more than its share, unless it keeps its one smallest file
        if len(kept[folder]) > 1:
            assert share <= room / total
        else:
            assert kept[folder][0][1] == min(s for _, s in listed) or share <= room / total
    assert gpu_bundle.fit_subset(files, smallest) == {
        folder: [min(listed, key=lambda item: item[1])] for folder, listed in files.items()
    }
    with pytest.raises(ValueError, match="one image of each folder"):
        gpu_bundle.fit_subset(files, smallest - 1)


def test_fit_takes_a_subset_of_every_folder_that_fits_and_lists_it(
    data_root, tmp_path, monkeypatch
):
    config = "experiments/configs/resunet_noise_map.yaml"
    rng = np.random.default_rng(0)
    for path in data_root.rglob("*.png"):  # noise: files of about equal, known size
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    whole = gpu_bundle.build(tmp_path / "whole", config, data_root, "3.12", wheels=False)
    images = sum(p.stat().st_size for p in (tmp_path / "whole" / "data").rglob("*"))
    monkeypatch.setattr(gpu_bundle, "SUBSET_RECORD_BYTES", 512)
    limit = whole - images // 2
    with pytest.raises(ValueError, match="--fit"):
        gpu_bundle.build(tmp_path / "refused", config, data_root, "3.12", False, max_bytes=limit)
    out = tmp_path / "fitted"
    size = gpu_bundle.build(out, config, data_root, "3.12", False, max_bytes=limit, fit=True)
    assert size <= limit
    listed = json.loads((out / "data" / "subset.json").read_text())
    assert sorted(listed) == ["BSDS300/images/train", "Photos1k/train", "Photos1k/val"]
    for folder, names in listed.items():
        present = sorted(
            str(p.relative_to(out / "data" / folder))
            for p in (out / "data" / folder).rglob("*")
            if p.is_file()
        )
        assert names and present == sorted(names)
        assert len(names) < 3  # a real subset: 3 photos each in the full folders
    assert not (tmp_path / "refused").exists()


def test_wheel_choices_are_checked(data_root, tmp_path, capsys):
    config = "experiments/configs/resunet_noise_map.yaml"
    with pytest.raises(ValueError, match="unknown wheels"):
        gpu_bundle.build(tmp_path / "b", config, data_root, "3.12", wheels=("tensorflow",))
    argv = [str(tmp_path / "b"), "--data-root", str(data_root)]
    assert gpu_bundle.main([*argv, "--wheels", "keras,tensorflow"]) == 1
    assert "unknown wheels" in capsys.readouterr().err
    for bad in (["--wheels", " , "], ["--wheels", "keras", "--no-wheels"]):
        with pytest.raises(SystemExit) as stopped:
            gpu_bundle.main([*argv, *bad])
        assert stopped.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
