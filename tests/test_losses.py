import keras
import numpy as np
import pytest

from keras_resunet.losses import PerceptualLoss, RestorationLoss, vgg_preprocess

LAYERS = {"block1_conv2": 1.0, "block2_conv2": 0.5}


def test_vgg_preprocess_is_keras_caffe_convention():
    rgb = np.random.default_rng(0).random((1, 4, 4, 3)).astype(np.float32)
    expected = keras.applications.vgg19.preprocess_input(rgb * 255.0)
    np.testing.assert_allclose(vgg_preprocess(rgb), expected, atol=1e-4)
    gray = rgb[..., :1]
    np.testing.assert_allclose(
        vgg_preprocess(gray),
        keras.applications.vgg19.preprocess_input(np.repeat(gray, 3, -1) * 255),
        atol=1e-4,
    )


@pytest.mark.parametrize("backbone", ["vgg19", "vgg16"])
def test_perceptual_loss_is_zero_for_equal_images_and_positive_otherwise(backbone):
    loss = PerceptualLoss(layer_weights=LAYERS, backbone=backbone, weights=None)
    rng = np.random.default_rng(0)
    clean = rng.random((2, 32, 32, 3)).astype(np.float32)
    assert float(loss(clean, clean)) == pytest.approx(0.0, abs=1e-8)
    assert float(loss(clean, np.clip(clean + 0.1, 0, 1))) > 0
    gray = clean[..., :1]
    assert float(loss(gray, gray * 0.5)) > 0


def test_restoration_loss_combines_terms():
    rng = np.random.default_rng(1)
    clean = rng.random((2, 32, 32, 3)).astype(np.float32)
    restored = clean + 0.1
    mse_only = RestorationLoss(alpha=100.0)
    assert float(mse_only(clean, restored)) == pytest.approx(100 * 0.01, rel=1e-4)
    combined = RestorationLoss(
        alpha=100.0, beta=2.0, perceptual={"layer_weights": LAYERS, "weights": None}
    )
    terms = {k: float(np.mean(v)) for k, v in combined.terms(clean, restored).items()}
    assert float(combined(clean, restored)) == pytest.approx(
        100 * terms["mse"] + 2 * terms["perceptual"], rel=1e-4
    )


def test_losses_serialize():
    loss = RestorationLoss(alpha=10, beta=1, perceptual={"layer_weights": LAYERS})
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.alpha == 10 and restored.perceptual.layer_weights == LAYERS
    assert restored.perceptual.weights is None


def test_unknown_layer_or_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="block9_conv1"):
        PerceptualLoss(layer_weights={"block9_conv1": 1.0})
    with pytest.raises(ValueError, match="resnet"):
        PerceptualLoss(backbone="resnet")


def test_l1_pixel_loss_is_the_mean_absolute_error_and_round_trips():
    rng = np.random.default_rng(0)
    y_true = rng.random((2, 8, 8, 3), dtype=np.float32)
    y_pred = y_true + rng.normal(0, 0.1, y_true.shape).astype(np.float32)
    loss = RestorationLoss(alpha=2.0, pixel="l1")
    expected = 2.0 * np.mean(np.abs(y_pred - y_true))
    assert float(loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)
    assert float(RestorationLoss()(y_true, y_pred)) == pytest.approx(
        np.mean((y_pred - y_true) ** 2), rel=1e-5
    )
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.pixel == "l1" and restored.alpha == 2.0
    with pytest.raises(ValueError, match="Unknown pixel loss 'l2'"):
        RestorationLoss(pixel="l2")


def test_configs_refuse_an_unknown_pixel_loss():
    from keras_resunet.training import TrainConfig

    assert TrainConfig(pixel_loss="l1").pixel_loss == "l1"
    with pytest.raises(ValueError, match="`pixel_loss` must be one of"):
        TrainConfig(pixel_loss="huber")


def test_psnr_pixel_loss_is_minus_each_images_psnr_capped_at_40_db():
    rng = np.random.default_rng(0)
    y_true = rng.random((3, 8, 8, 3), dtype=np.float32)
    noise = rng.normal(0, 1, y_true.shape).astype(np.float32)
    sigmas = np.array([0.1, 0.02, 0.0], np.float32).reshape(3, 1, 1, 1)
    y_pred = y_true + sigmas * noise
    per_image = np.asarray(RestorationLoss(pixel="psnr").call(y_true, y_pred))
    mse = np.mean((y_pred - y_true) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(per_image, 10 * np.log10(mse + 1e-4), rtol=1e-5)
    assert per_image[0] == pytest.approx(-20.0, abs=0.3)  # sigma 0.1: 20 dB
    assert per_image[2] == pytest.approx(-40.0, abs=1e-4)  # exact: the cap
    # a dB gained at any level moves the loss alike, where MSE barely sees the low level
    better = y_true + sigmas * noise / 10 ** (1 / 20)  # every image 1 dB better
    gains = per_image - np.asarray(RestorationLoss(pixel="psnr").call(y_true, better))
    assert gains[0] == pytest.approx(1.0, abs=0.02) and 0.7 < gains[1] < 0.9
