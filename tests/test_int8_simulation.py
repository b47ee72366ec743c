import json

import keras
import numpy as np
import pytest

from keras_resunet.int8_simulation import (
    activation_ranges,
    layer_sensitivity,
    with_int8_rounding,
)
from keras_resunet.metrics import psnr
from keras_resunet.models import build_resunet
from keras_resunet.training import TrainConfig, train
from tests.support import smooth_image
from tests.test_training import IMAGES, TINY, tiny_config


def _batch(seed):
    rng = np.random.default_rng(seed)
    clean = np.stack([smooth_image(32, 32, seed=seed + i) for i in range(2)])
    return clean + rng.normal(0, 0.1, clean.shape).astype(np.float32), clean


@pytest.mark.parametrize(
    "sizes", [[(1, 32, 32)] * 11, [(1, 32, 32), (3, 40, 24), (1, 32, 32)], [(2, 96, 96)] * 9]
)
def test_ranges_measured_in_stacked_calls_are_each_layers_extremes(sizes):
    """Batches are joined by size into calls of a few samples: the ranges are the extremes
    over every sample, whatever the sizes and counts."""
    keras.utils.set_random_seed(2)
    model = build_resunet(**TINY)
    rng = np.random.default_rng(len(sizes))
    batches = [rng.normal(0.5, 0.4, (*size, 3)).astype(np.float32) for size in sizes]
    ranges = activation_ranges(model, batches)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    outputs = [probe(batch, training=False) for batch in batches]
    for index, layer in enumerate(layers):
        values = [np.asarray(output[index]) for output in outputs]
        low = min(0.0, *(float(v.min()) for v in values))
        high = max(0.0, *(float(v.max()) for v in values))
        np.testing.assert_allclose(ranges[layer.name], [low, high], rtol=1e-5, atol=1e-6)
    assert ranges["input"] == [min(0.0, *(float(b.min()) for b in batches)), max(0.0, *(float(b.max()) for b in batches))]  # fmt: skip


def test_rounding_shares_the_weights_and_stays_within_a_few_int8_steps():
    keras.utils.set_random_seed(1)
    model = build_resunet(**TINY)
    noisy, _ = _batch(0)
    ranges = activation_ranges(model, [noisy, _batch(5)[0]])
    assert ranges["input"][0] < 0 and ranges["input"][1] > 1  # noise goes past [0, 1]
    assert all(low <= 0 <= high for low, high in ranges.values())
    rounded = with_int8_rounding(model, ranges)
    assert {id(v) for v in rounded.trainable_variables} == {
        id(v) for v in model.trainable_variables
    }
    assert all(layer.name.startswith("rounded_") for layer in rounded.layers[1:])
    difference = np.abs(rounded.predict(noisy, verbose=0) - model.predict(noisy, verbose=0))
    step = (ranges[model.layers[-1].name][1] - ranges[model.layers[-1].name][0]) / 255
    assert 0 < difference.max() < 20 * step  # rounded, by a few steps of the output's grid
    with pytest.raises(ValueError, match="no activation range for"):
        with_int8_rounding(build_resunet(base_filters=4, depth=3), ranges)


def test_a_quantization_aware_run_learns_through_the_rounding_and_saves_the_plain_model(
    tmp_path,
):
    keras.utils.set_random_seed(2)
    start = tmp_path / "start.keras"
    train(tiny_config(steps=30, checkpoint_every=30), tmp_path / "pre", images=IMAGES)
    keras.models.load_model(tmp_path / "pre" / "model.keras").save(start)
    config = tiny_config(
        init_from=str(start), quantization_aware=True, learning_rate=5e-4, steps=10
    )
    run = tmp_path / "qat"
    train(config, run, images=IMAGES)
    ranges = json.loads((run / "int8_ranges.json").read_text())
    saved = keras.models.load_model(run / "model.keras")
    assert [layer.name for layer in saved.layers] == [
        layer.name for layer in keras.models.load_model(start).layers
    ]
    lines = []  # a resumed run rounds to the ranges it started with
    train(TrainConfig(**{**config.to_dict(), "steps": 40}), run, images=IMAGES, log=lines.append)
    assert any("resuming" in line and "step 10" in line for line in lines)
    assert json.loads((run / "int8_ranges.json").read_text()) == ranges
    noisy, clean = _batch(10)

    def rounded_psnr(path):
        model = with_int8_rounding(keras.models.load_model(path), ranges)
        return float(np.mean(psnr(np.clip(model.predict(noisy, verbose=0), 0, 1), clean)))

    gain = rounded_psnr(run / "model.keras") - rounded_psnr(start)
    assert gain > 0.1, gain


def test_quantization_aware_needs_a_start_model_in_float32():
    with pytest.raises(ValueError, match="needs `init_from` and `precision: float32`"):
        tiny_config(quantization_aware=True)
    with pytest.raises(ValueError, match="needs `init_from`"):
        tiny_config(quantization_aware=True, init_from="a.keras", precision="mixed_bfloat16")


def test_a_rounded_model_round_trips_through_its_config():
    keras.utils.set_random_seed(4)
    model = build_resunet(**TINY)
    noisy, _ = _batch(1)
    rounded = with_int8_rounding(model, activation_ranges(model, [noisy]))
    copy = keras.Model.from_config(rounded.get_config())
    copy.set_weights(rounded.get_weights())
    np.testing.assert_allclose(
        copy.predict(noisy, verbose=0), rounded.predict(noisy, verbose=0), atol=1e-6
    )


def test_sensitivity_ranks_the_layer_with_the_coarsest_grid_first():
    keras.utils.set_random_seed(6)
    model = build_resunet(**TINY)
    noisy, _ = _batch(2)
    ranges = activation_ranges(model, [noisy])
    # nothing rounded: the float model exactly
    nothing = with_int8_rounding(model, dict.fromkeys(ranges), kernels=False)
    np.testing.assert_array_equal(
        nothing.predict(noisy, verbose=0), model.predict(noisy, verbose=0)
    )
    changes = layer_sensitivity(model, ranges, [noisy])
    values = [change for _, change in changes]
    assert values == sorted(values, reverse=True) and values[0] > 0
    assert {name for name, _ in changes} == {layer.name for layer in model.layers[1:]}
    # the least felt layer, rounded over a range 50 times wider (steps 50 times coarser):
    # its change grows with the square of the step and it moves up the ranking
    last = min((change, name) for name, change in changes if change > 0)[1]
    wide = {**ranges, last: [50 * value for value in ranges[last]]}
    widened = layer_sensitivity(model, wide, [noisy])
    before, after = dict(changes), dict(widened)
    assert after[last] > 100 * before[last]
    assert [n for n, _ in widened].index(last) < [n for n, _ in changes].index(last)
