import json

import numpy as np
import pytest
from PIL import Image

from experiments import recipe_ab
from keras_resunet.models import build_resunet
from tests.support import smooth_image

TINY_CONFIG = """
model: resunet
model_args: {noise_level_map: true, base_filters: 4, depth: 2}
sigma_range: [0.0, 0.3]
clip_fraction: 0.25
patch_size: 16
batch_size: 4
learning_rate: 1.0e-3
steps: 100
checkpoint_every: 100
precision: float32
"""


@pytest.fixture
def setup(tmp_path):
    root = tmp_path / "data"
    folders = {"CBSD68": 2, "BSDS300/images/test": 4, "BSDS300/images/train": 3}
    for folder, count in folders.items():
        (root / folder).mkdir(parents=True)
        for index in range(count):
            image = np.round(smooth_image(40, 48, seed=index) * 255).astype(np.uint8)
            Image.fromarray(image).save(root / folder / f"{index}.png")
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)
    build_resunet(base_filters=4, depth=2, noise_level_map=True).save(tmp_path / "start.keras")
    argv = ["--config", str(tmp_path / "tiny.yaml"), "--start", str(tmp_path / "start.keras")]
    argv += ["--data-root", str(root), "--runs", str(tmp_path / "runs")]
    argv += ["--results", str(tmp_path / "results"), "--steps", "100"]
    return tmp_path, argv


def test_arms_get_equal_training_pixels():
    assert recipe_ab.arm_steps({}, 2400, 96) == 2400
    assert recipe_ab.arm_steps({"patch_size": 128}, 2400, 96) == 1400  # 1350, to a checkpoint
    assert recipe_ab.arm_steps({"patch_size": 192}, 100, 96) == 100  # at least one checkpoint


def test_validation_images_are_the_test_images_outside_cbsd68(setup):
    tmp_path, _ = setup
    images, names, described = recipe_ab.validation_set(tmp_path / "data")
    assert names == ["2.png", "3.png"] and len(images) == 2
    assert described == "2 BSDS300 test images not in CBSD68"


def test_a_config_with_val_data_is_scored_on_those_photos(setup):
    tmp_path, argv = setup
    for index, sub in enumerate(["a", "a", "b/c"]):
        folder = tmp_path / "data" / "val" / sub
        folder.mkdir(parents=True, exist_ok=True)
        image = np.round(smooth_image(40, 48, seed=10 + index) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{index}.png")
    images, names, described = recipe_ab.validation_set(tmp_path / "data", folder="val")
    assert (
        len(images) == 3
        and names == ["a/0.png", "a/1.png", "b/c/2.png"]
        and described == "3 photos of val"
    )
    config = tmp_path / "tiny.yaml"
    config.write_text(config.read_text() + "val_data: val\n")
    assert recipe_ab.main([*argv, "--arms", "control"]) == 0
    record = json.loads((tmp_path / "results" / "noise_levels" / "recipe_ab.json").read_text())
    assert record["validation"].startswith("3 photos of val,")
    with pytest.raises(FileNotFoundError):
        recipe_ab.validation_set(tmp_path / "data", folder="missing")


def test_data_arms_read_as_their_folders_and_weights():
    weighted = recipe_ab.ARMS["sources_equal"]["train_data"]
    assert recipe_ab._change("train_data", weighted) == (
        "train_data: BSDS300/images/train x1, Photos1k/train/bsds500 x1, "
        "Photos1k/train/imagenet x1, Photos1k/train/deepphotostyle x1, Photos1k/train/t91 x1"
    )
    assert recipe_ab._change("train_data", ["BSDS300/images/train"]) == (
        "train_data: BSDS300/images/train"
    )
    assert recipe_ab._change("patch_size", 128) == "patch_size=128"


def test_the_data_arms_name_valid_sources_and_fresh_starts_from_random_weights():
    from keras_resunet.data import parse_sources

    for arm in ("bsds_only", "sources_equal"):
        sources = parse_sources(recipe_ab.ARMS[arm]["train_data"])
        assert sources[0].folder == "BSDS300/images/train"
    weights = {s.weight for s in parse_sources(recipe_ab.ARMS["sources_equal"]["train_data"])}
    assert weights == {1.0}
    assert recipe_ab.ARMS["fresh"]["init_from"] is None


def test_ab_runs_train_score_and_resume_without_retraining(setup):
    tmp_path, argv = setup
    argv += ["--arms", "control,l1"]
    assert recipe_ab.main(argv) == 0
    path = tmp_path / "results" / "noise_levels" / "recipe_ab.json"
    record = json.loads(path.read_text())
    assert list(record["arms"]) == ["control", "l1"]
    control = record["arms"]["control"]
    assert control["steps"] == 100 and control["train_seconds"] > 0
    assert control["seconds_per_megapixel"] > 0 and record["start_seconds_per_megapixel"] > 0
    assert control["psnr"] != record["start_psnr"]  # 100 steps at 1e-3 change the model
    gain = np.mean([control["psnr"][s] - record["start_psnr"][s] for s in control["psnr"]])
    assert control["mean_gain_db"] == pytest.approx(gain, abs=1e-3)
    table = [
        line for line in (path.parent / "recipe_ab.md").read_text().splitlines() if line[:1] == "|"
    ]
    assert table[3].startswith("| control | none |") and table[4].startswith(
        "| l1 | pixel_loss=l1 |"
    )
    assert len({line.count("|") for line in table}) == 1  # every row has the header's columns
    assert recipe_ab.main(argv) == 0  # finished arms are scored again, not retrained
    again = json.loads(path.read_text())
    assert again["arms"]["control"]["train_seconds"] == control["train_seconds"]
    assert again["arms"]["control"]["psnr"] == control["psnr"]


def test_unknown_arms_and_missing_start_models_are_refused(setup, capsys):
    tmp_path, argv = setup
    assert recipe_ab.main([*argv, "--arms", "control,bigger"]) == 1
    assert "Unknown arms ['bigger']" in capsys.readouterr().err
    argv[3] = str(tmp_path / "missing.keras")
    assert recipe_ab.main(argv) == 1
    assert "start model not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_named_ab_keeps_its_own_runs_and_records(setup, capsys):
    tmp_path, argv = setup
    assert recipe_ab.main([*argv, "--arms", "psnr_loss", "--name", "loss_ab"]) == 0
    record = json.loads((tmp_path / "results" / "noise_levels" / "loss_ab.json").read_text())
    assert record["arms"]["psnr_loss"]["changes"] == {"pixel_loss": "psnr"}
    assert (tmp_path / "runs" / "loss_ab" / "psnr_loss" / "model.keras").is_file()
    assert not (tmp_path / "results" / "noise_levels" / "recipe_ab.json").exists()
    with pytest.raises(SystemExit):
        recipe_ab.main([*argv, "--name", "../elsewhere"])
    assert "--name must be letters" in capsys.readouterr().err
