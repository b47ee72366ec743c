import csv
import json
import math

import keras
import numpy as np
import pytest
from PIL import Image

from keras_resunet.io import to_uint8
from keras_resunet.training import TrainConfig, train, validation
from tests.support import smooth_image
from tests.test_training import IMAGES, tiny_config


def _val_folder(root, sizes=((60, 50), (60, 50), (30, 40))):
    folder = root / "val"
    (folder / "nested").mkdir(parents=True)
    for index, (height, width) in enumerate(sizes):
        where = folder / "nested" if index % 2 else folder
        image = to_uint8(smooth_image(height, width, seed=10 + index))
        Image.fromarray(image).save(where / f"v{index}.png")
    return folder


def _box_filter_model(kind):
    """A one-conv RGB model: 'identity' passes the noisy input, 'box' averages 3x3 (denoises a
    smooth image), 'zero' outputs black."""
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.zeros((3, 3, 3, 3), np.float32)
    for channel in range(3):
        if kind == "identity":
            kernel[1, 1, channel, channel] = 1
        elif kind == "box":
            kernel[:, :, channel, channel] = 1 / 9
    conv.set_weights([kernel])
    return model


def test_validation_inputs_are_fixed_crops_with_the_right_keys(tmp_path):
    folder = _val_folder(tmp_path)
    plain = validation.validation_inputs(folder, tiny_config(sigma=0.1), crop=32)
    assert list(plain) == ["val_psnr"]
    shapes = sorted(inputs.shape for inputs, _ in plain["val_psnr"])
    assert shapes == [(1, 30, 32, 3), (2, 32, 32, 3)]  # crops of one shape share a batch
    again = validation.validation_inputs(folder, tiny_config(sigma=0.1), crop=32)
    for (a, _), (b, _) in zip(plain["val_psnr"], again["val_psnr"]):
        np.testing.assert_array_equal(a, b)
    noise_map = tiny_config(
        model_args={**tiny_config().model_args, "noise_level_map": True}, sigma_range=(0.0, 0.3)
    )
    groups = validation.validation_inputs(folder, noise_map, crop=32)
    assert list(groups) == ["val_psnr_15", "val_psnr_25", "val_psnr_50"]
    for key, batches in groups.items():
        level = int(key.rsplit("_", 1)[1]) / 255
        for inputs, clean in batches:
            assert inputs.shape[-1] == 4
            np.testing.assert_allclose(inputs[..., 3], level)
            noise = np.std(inputs[..., :3] - clean)
            assert abs(noise - level) < 0.25 * level
    with pytest.raises(FileNotFoundError, match="Validation image folder"):
        validation.validation_inputs(tmp_path / "nope", noise_map)


def test_the_callback_keeps_the_best_weights_not_the_last(tmp_path):
    groups = validation.validation_inputs(_val_folder(tmp_path), tiny_config(sigma=0.1), crop=32)
    saved = {}

    def save_best(path):
        current.save(path)
        saved[path.name] = saved.get(path.name, 0) + 1

    lines = []
    callback = validation.Validation(groups, 10, 10, tmp_path, save_best, lines.append)
    scores = []
    for epoch, kind in enumerate(["identity", "box", "zero"]):
        current = _box_filter_model(kind)
        callback.set_model(current)
        logs = {}
        callback.on_epoch_end(epoch, logs)
        scores.append(logs["val_psnr"])
    assert scores[1] > scores[0] + 1 and scores[2] < scores[0]  # box denoises, zero ruins
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["steps"] == 20 and best["val_psnr"] == pytest.approx(scores[1], abs=1e-3)
    assert saved == {"best.keras": 2}  # identity (first), then box; never zero
    kept = keras.models.load_model(tmp_path / "best.keras")
    x = np.random.default_rng(0).random((1, 8, 8, 3), np.float32)
    np.testing.assert_allclose(kept(x), _box_filter_model("box")(x), atol=1e-6)
    # a resumed run's callback starts from the record: a worse score saves nothing
    resumed = validation.Validation(groups, 10, 10, tmp_path, save_best, lines.append)
    current = _box_filter_model("identity")
    resumed.set_model(current)
    resumed.on_epoch_end(3, {})
    assert saved == {"best.keras": 2}
    # steps between validations log NaN, so every log.csv row has the same columns
    sparse = validation.Validation(groups, 20, 10, tmp_path, save_best, lines.append)
    sparse.set_model(current)
    logs = {}
    sparse.on_epoch_end(0, logs)
    assert math.isnan(logs["val_psnr"])


def test_a_run_with_validation_logs_scores_and_keeps_best_keras(tmp_path):
    folder = _val_folder(tmp_path)
    config = tiny_config(val_data=str(folder), steps=30)
    lines = []
    train(config, tmp_path / "run", images=IMAGES, log=lines.append)
    with open(tmp_path / "run" / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and all(float(row["val_psnr"]) > 20 for row in rows)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    best_row = max(rows, key=lambda row: float(row["val_psnr"]))
    assert best["val_psnr"] == pytest.approx(float(best_row["val_psnr"]), abs=1e-3)
    assert (tmp_path / "run" / "best.keras").is_file()
    assert sum("validation at step" in line for line in lines) == 3
    # the kept model scores what the record says
    model = keras.models.load_model(tmp_path / "run" / "best.keras", compile=False)
    groups = validation.validation_inputs(folder, config)
    assert validation.score(model, groups)["val_psnr"] == pytest.approx(best["val_psnr"], abs=1e-3)


def test_val_every_is_checked(tmp_path):
    with pytest.raises(ValueError, match="`val_every` needs `val_data`"):
        tiny_config(val_every=10)
    with pytest.raises(ValueError, match="multiple of `checkpoint_every`"):
        tiny_config(val_data="v", val_every=15)
    config = tiny_config(val_data=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="Validation image folder"):
        train(config, tmp_path / "run", images=IMAGES, log=lambda _: 0)
    assert not (tmp_path / "run").exists()
    path = tmp_path / "c.yaml"
    path.write_text("train_data: [a, {folder: b, weight: 2}]\n")
    with pytest.raises(ValueError, match="weight, or none"):
        TrainConfig.from_yaml(path)
    path.write_text("train_data: [a, b]\nval_data: c\nval_every: 200\ncheckpoint_every: 100\n")
    config = TrainConfig.from_yaml(path)
    assert (config.train_data, config.val_every) == (["a", "b"], 200)
