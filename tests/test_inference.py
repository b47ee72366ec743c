import numpy as np
import pytest

from keras_resunet import inference, pretrained
from keras_resunet.models import build_resunet
from tests.support import smooth_image


class _Identity(inference.Denoiser):
    def __init__(self, channels=None):
        super().__init__("identity", channels=channels, minimum_size=4)
        self.calls = []

    def __call__(self, images):
        self.calls.append(images.shape)
        return np.array(images)


class _RowRamp(inference.Denoiser):
    """Adds a ramp along the image's rows: not invariant to flips and rotations."""

    def __init__(self):
        super().__init__("ramp")

    def __call__(self, images):
        return images + np.linspace(0, 1, images.shape[1])[None, :, None, None]


def test_identity_survives_tiling_and_ensemble_exactly():
    image = smooth_image(70, 93)
    identity = _Identity()
    out = inference.restore_image(identity, image, tile=32, overlap=8, ensemble=True)
    np.testing.assert_allclose(out, image, atol=1e-6)
    assert all(shape[1:3] in ((32, 32),) for shape in identity.calls)


def test_ensemble_averages_the_eight_transforms():
    images = np.zeros((1, 6, 6, 1), np.float32)
    out = inference.self_ensemble(_RowRamp(), images)
    # each of the 8 transforms adds the ramp along rows or along columns of the original,
    # in either direction: the mean is the constant 0.5 everywhere.
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_self_ensemble_is_a_denoiser_that_keeps_the_inner_ones_traits():
    ramp = _RowRamp()
    ramp.channels, ramp.minimum_size = 1, 4
    ensembled = inference.SelfEnsemble(ramp)
    assert (ensembled.name, ensembled.channels, ensembled.minimum_size) == ("ramp_x8", 1, 4)
    assert ensembled.settings() == {"self_ensemble": 8}
    images = np.zeros((2, 6, 6, 1), np.float32)
    np.testing.assert_allclose(ensembled(images), inference.self_ensemble(ramp, images))


def test_tiled_output_matches_whole_image_away_from_borders():
    model = build_resunet(base_filters=4, depth=2)
    denoiser = inference.KerasDenoiser(model)
    image = smooth_image(120, 150)
    whole = inference.restore_image(denoiser, image)
    interior = np.s_[8:-8, 8:-8]

    def difference(overlap):
        tiled = inference.restore_image(denoiser, image, tile=64, overlap=overlap)
        return np.abs(whole[interior] - tiled[interior])

    blended, butted = difference(16), difference(0)
    # An untrained network reaches far across tile borders, so this is a loose bound; the
    # blending must still remove almost all of the seams that butted tiles show.
    assert blended.mean() < 3e-3 and blended.max() < 0.1 * butted.max()


def test_gray_goes_through_an_rgb_model_and_color_through_a_gray_one():
    gray = smooth_image(20, 20, channels=1)
    rgb = smooth_image(20, 20, channels=3)
    np.testing.assert_allclose(inference.restore_image(_Identity(3), gray), gray, atol=1e-6)
    identity_gray = _Identity(1)
    np.testing.assert_allclose(inference.restore_image(identity_gray, rgb), rgb, atol=1e-6)
    assert identity_gray.calls == [(1, 20, 20, 1)] * 3


def test_too_small_images_and_bad_tiles_are_refused():
    with pytest.raises(ValueError, match="3x9 is smaller than the 4x4 minimum of identity"):
        inference.restore_image(_Identity(), np.zeros((3, 9, 3), np.float32))
    with pytest.raises(ValueError, match="`tile` must exceed twice `overlap`"):
        inference.restore_image(_Identity(), np.zeros((40, 40, 3), np.float32), tile=16, overlap=8)


def test_shipped_model_names_resolve_from_the_models_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RESUNET_MODELS", str(tmp_path))
    # neither a checkout nor an installed package with models
    monkeypatch.setattr(pretrained, "_CHECKOUT", tmp_path / "no-checkout")
    monkeypatch.setattr(pretrained, "_PACKAGED", tmp_path / "no-package")
    with pytest.raises(FileNotFoundError, match="'unet-denoise' is not installed.*KERAS_RESUNET"):
        pretrained.resolve("unet-denoise")
    with pytest.raises(ValueError, match="Unknown model 'resnet'"):
        inference.load_denoiser("resnet")
    build_resunet(base_filters=4, depth=2).save(tmp_path / "unet-denoise.keras")
    assert pretrained.available() == ["unet-denoise"]
    denoiser = inference.load_denoiser("unet-denoise")
    assert denoiser.name == "unet-denoise" and denoiser.channels == 3
    assert inference.load_denoiser("nlm").sigma == 0.1  # no degradation: sigma 0.1


def test_a_denoiser_is_loaded_for_a_degradation_its_level_and_its_blur():
    from keras_resunet import degradations

    deblur = degradations.make_degradation("deblur_denoise", sigma=0.05, kernel="box")
    nlm = inference.load_denoiser("nlm", deblur)
    assert nlm.sigma == 0.05
    np.testing.assert_allclose(nlm.kernel, degradations.make_kernel("box"))
    noise = inference.load_denoiser("nlm", degradations.make_degradation("denoise", sigma=0.2))
    assert noise.sigma == 0.2 and noise.kernel is None
    ranged = degradations.make_degradation("denoise", sigma_range=(0.0, 0.2))
    with pytest.raises(ValueError, match="fixed noise level"):
        inference.load_denoiser("nlm", ranged)


def test_each_task_defaults_to_a_shipped_model_of_that_task():
    for task, name in pretrained.DEFAULT_FOR_TASK.items():
        assert pretrained.PRETRAINED[name].task == task


def test_shipped_model_tiles_cost_no_measurable_quality():
    from keras_resunet import degradations, metrics
    from keras_resunet.demo import sample_image

    if "resunet-denoise" not in pretrained.available():
        pytest.skip("saved_models/resunet-denoise.keras is not present")
    denoiser = inference.load_denoiser("resunet-denoise")
    clean = sample_image("astronaut")[100:300, 150:380]
    noisy = np.asarray(degradations.GaussianNoise(0.1)(clean, np.array([0, 0], np.int32)))
    whole = inference.restore_image(denoiser, noisy)
    tiled = inference.restore_image(denoiser, noisy, tile=96, overlap=32)
    # measured: mean |difference| 0.001 away from the borders, max 0.023 (the UNet's context
    # reaches past a 96-pixel tile); the PSNR against the clean image moves by < 0.05 dB
    assert np.abs(whole - tiled)[8:-8, 8:-8].mean() < 2e-3
    psnr_whole, psnr_tiled = float(metrics.psnr(whole, clean)), float(metrics.psnr(tiled, clean))
    assert (
        abs(psnr_whole - psnr_tiled) < 0.05 and psnr_whole > float(metrics.psnr(noisy, clean)) + 8
    )
