import numpy as np
import pytest
import tensorflow as tf

from keras_resunet import MODELS, build_model, build_resunet, build_unet
from keras_resunet.models import (
    Upsample2x,
    build_autoencoder,
    build_dncnn,
    build_rdunet,
    model_minimum_size,
)
from tests.support import check_image_model

TINY = {"base_filters": 4, "depth": 3}
TINY_BY_MODEL = {
    "dncnn": {"depth": 4, "filters": 4},
    "rdunet": {"base_filters": 4, "depth": 2, "blocks_per_level": 1, "dense_layers": 2},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_builder_checks(name, tmp_path):
    check_image_model(MODELS[name], tmp_path, **TINY_BY_MODEL.get(name, TINY))


@pytest.mark.parametrize(
    "builder, rgb, gray",
    [
        (build_unet, 1_675_283, 1_674_705),
        (build_resunet, 1_667_683, 1_667_105),
        (build_dncnn, 560_323, 558_017),
        (build_autoencoder, 1_455_907, 1_454_753),
        (build_rdunet, 1_465_891, 1_465_313),
    ],
)
def test_default_parameter_counts_match_docstrings(builder, rgb, gray):
    assert builder().count_params() == rgb
    assert builder(in_channels=1).count_params() == gray
    assert f"{rgb:,}" in builder.__doc__


@pytest.mark.parametrize(
    "options",
    [
        {"upsampling": "nearest"},
        {"upsampling": "transpose"},
        {"skip_join": "concat"},
        {"normalization": "batch"},
        {"normalization": "group"},
        {"global_residual": False},
        {"filters": (4, 6, 8, 10)},
    ],
)
def test_resunet_options_build_and_run(options):
    model = build_resunet(**{**TINY, **options})
    assert model(np.zeros((1, 21, 19, 3), np.float32)).shape == (1, 21, 19, 3)

    # each option takes effect: the graph (layer configs, parameters) or, for the global residual,
    # the output of a network whose last conv is zero (the input itself, or zero)
    def signature(built):
        configs = [{**layer.get_config(), "name": None} for layer in built.layers]
        return built.count_params(), sorted(map(repr, configs))

    default = build_resunet(**TINY)
    if options == {"global_residual": False}:
        x = np.random.default_rng(0).random((1, 21, 19, 3), np.float32)
        for built in (model, default):
            last = built.get_layer("resunet_out_conv")
            last.set_weights([np.zeros_like(w) for w in last.get_weights()])
        np.testing.assert_allclose(default(x), x, atol=1e-6)
        np.testing.assert_allclose(model(x), 0, atol=1e-6)
    else:
        assert signature(model) != signature(default)


def test_unet_options_and_blocks_per_level_change_parameters():
    assert build_unet(**TINY, skip_join="add").count_params() < build_unet(**TINY).count_params()
    one = build_resunet(**TINY, blocks_per_level=1).count_params()
    three = build_resunet(**TINY, blocks_per_level=3).count_params()
    assert one < build_resunet(**TINY).count_params() < three


def test_global_residual_of_zero_network_is_identity():
    model = build_resunet(**TINY)
    out_conv = model.get_layer("resunet_out_conv")
    out_conv.set_weights([np.zeros_like(w) for w in out_conv.get_weights()])
    x = np.random.default_rng(0).random((1, 23, 31, 3), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filters": (32, 64)}, "filters"),
        ({"depth": 0}, "depth"),
        ({"upsampling": "cubic"}, "upsampling"),
        ({"skip_join": "mul"}, "skip_join"),
        ({"normalization": "instance"}, "normalization"),
        ({"in_channels": 3, "out_channels": 1}, "global residual"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_invalid_arguments_quote_what_was_received(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_resunet(**kwargs)
    with pytest.raises(ValueError, match=message):
        build_unet(**kwargs)


def test_registry_rejects_unknown_name():
    with pytest.raises(ValueError, match="Valid names"):
        build_model("transformer")
    assert build_model("unet", **TINY).name == "unet"


def test_bilinear_upsampling_matches_tf_image_resize():
    x = np.random.default_rng(0).random((2, 7, 9, 5), dtype=np.float32)
    expected = tf.image.resize(x, (14, 18), method="bilinear").numpy()
    np.testing.assert_allclose(Upsample2x()(x), expected, atol=1e-6)
    nearest = Upsample2x("nearest")(x).numpy()
    np.testing.assert_array_equal(nearest[:, ::2, ::2], x)


def test_minimum_size_is_enforced_by_reflection():
    model = build_resunet(**TINY)  # depth 3: pads to multiples of 8
    assert model_minimum_size(model) == 5
    model(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="at least 5x5 pixels"):
        model(np.zeros((1, 4, 4, 3), np.float32))
    # a graph traced for any size may meet the reflection itself
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        model.predict(np.zeros((1, 4, 4, 3), np.float32), verbose=0)


@pytest.mark.parametrize("builder", [build_unet, build_resunet])
def test_savedmodel_export_has_dynamic_height_and_width(builder, tmp_path):
    model = builder(**TINY)
    model.export(str(tmp_path / "sm"), format="tf_saved_model")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    for height, width in ((16, 16), (37, 53)):
        x = np.random.default_rng(height).random((1, height, width, 3), dtype=np.float32)
        out = loaded.serve(tf.constant(x)).numpy()
        np.testing.assert_allclose(out, model.predict(x, verbose=0), atol=1e-5)


def test_default_model_uses_leaky_relu_and_no_normalization():
    model = build_resunet()
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "LeakyReLU" in kinds and "BatchNormalization" not in kinds


def test_dncnn_predicts_the_noise_and_autoencoder_output_stays_in_range():
    # DnCNN subtracts its prediction: with a zeroed last layer it is the identity
    model = build_dncnn(depth=3, filters=4)
    noise_layer = model.get_layer("dncnn_noise")
    noise_layer.set_weights([np.zeros_like(w) for w in noise_layer.get_weights()])
    x = np.random.default_rng(0).random((1, 11, 13, 3), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), x, atol=1e-7)
    y = build_autoencoder(base_filters=4, depth=2).predict(x * 50 - 25, verbose=0)
    assert y.min() >= 0 and y.max() <= 1


def test_new_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match="`depth` must be an int >= 3. Received: depth=2"):
        build_dncnn(depth=2)
    with pytest.raises(ValueError, match="`dense_layers` must be an int >= 1"):
        build_rdunet(dense_layers=0)


@pytest.mark.parametrize("builder", [build_unet, build_resunet])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_inputs_below_the_minimum_size_or_with_other_channels_are_value_errors(builder, depth):
    model = builder(base_filters=4, depth=depth)
    smallest = model_minimum_size(model)
    assert model(np.zeros((1, smallest, smallest + 5, 3), np.float32)).shape[1] == smallest
    for height, width in ((smallest - 1, 40), (40, smallest - 1)):
        with pytest.raises(ValueError, match=f"at least {smallest}x{smallest} pixels"):
            model(np.zeros((1, height, width, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected shape=\(None, None, None, 3\)"):
        model(np.zeros((1, 16, 16, 4), np.float32))
