import numpy as np
import pytest

from keras_resunet import baselines, degradations, metrics
from tests.support import smooth_image


def _degraded(task, image):
    kernel = degradations.gaussian_kernel(7, 1.6) if task == "deblur_denoise" else None
    degradation = degradations.make_degradation(task, sigma=0.1, kernel=kernel)
    return np.asarray(degradation(image, np.array([3, 0], np.int32))), kernel


@pytest.mark.parametrize("method", ["nlm", "bm3d"])
@pytest.mark.parametrize("task", ["denoise", "deblur_denoise"])
@pytest.mark.parametrize("channels", [1, 3])
def test_classical_methods_beat_the_degraded_input(method, task, channels):
    clean = smooth_image(40, 48, channels=channels)
    degraded, kernel = _degraded(task, clean)
    denoiser = baselines.make_classical(method, sigma=0.1, kernel=kernel)
    restored = denoiser(degraded[None])[0]
    assert restored.shape == clean.shape and restored.dtype == np.float32
    gain = float(metrics.psnr(restored, clean)) - float(metrics.psnr(degraded, clean))
    assert gain > 3.0, f"{method} on {task}: only {gain:.2f} dB over the degraded input"


def test_wiener_with_a_delta_kernel_scales_by_one_over_one_plus_balance():
    image = smooth_image(16, 20)
    restored, noise_gain = baselines.wiener_deconvolve(image, np.ones((1, 1)), balance=0.25)
    np.testing.assert_allclose(restored, image / 1.25, atol=1e-6)
    assert noise_gain == pytest.approx(1 / 1.25)


def test_wiener_inverts_a_blur_when_there_is_no_noise():
    image = smooth_image(32, 32)
    blurred = np.asarray(degradations.Blur(degradations.gaussian_kernel(5, 1.0))(image))
    restored, _ = baselines.wiener_deconvolve(blurred, degradations.gaussian_kernel(5, 1.0), 1e-6)
    assert float(metrics.psnr(restored, image)) > float(metrics.psnr(blurred, image)) + 10


def test_cache_reuses_results_and_keys_on_input_and_settings(tmp_path):
    clean = smooth_image(24, 24)
    degraded, _ = _degraded("denoise", clean)
    cached = baselines.make_classical("nlm", sigma=0.1, cache=tmp_path)
    first = cached(degraded[None])
    again = baselines.make_classical("nlm", sigma=0.1, cache=tmp_path)(degraded[None])
    np.testing.assert_array_equal(first, again)
    assert len(list(tmp_path.glob("nlm-*.npz"))) == 1
    # another sigma, or another input, is another entry
    other = baselines.make_classical("nlm", sigma=0.05, cache=tmp_path)
    other(degraded[None])
    other(degraded[None] * 0.9)
    assert (other.hits, other.misses) == (0, 2)
    # and so are other NLM parameters
    wider = baselines.CachedDenoiser(baselines.NLMDenoiser(0.1, patch_distance=3), tmp_path)
    wider(degraded[None])
    assert (wider.hits, wider.misses) == (0, 1)
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


def test_unknown_method_and_missing_sigma_are_clear_errors():
    with pytest.raises(ValueError, match="Valid methods: \\['bm3d', 'nlm'\\]"):
        baselines.make_classical("wavelet", sigma=0.1)
    with pytest.raises(ValueError, match="sigma"):
        baselines.make_classical("bm3d", sigma=0)


def test_bm3d_profile_is_part_of_the_cache_key_and_checked(tmp_path):
    clean = smooth_image(32, 32, channels=1)
    degraded, _ = _degraded("denoise", clean)
    default = baselines.CachedDenoiser(baselines.BM3DDenoiser(0.1), tmp_path)
    high = baselines.CachedDenoiser(baselines.BM3DDenoiser(0.1, profile="high"), tmp_path)
    default(degraded[None])
    high(degraded[None])
    assert (high.hits, high.misses) == (0, 1)
    assert default.settings()["profile"] == "np"
    kernel = degradations.gaussian_kernel(7, 1.6)
    assert "regularization" in baselines.BM3DDenoiser(0.1, kernel=kernel).settings()
    with pytest.raises(ValueError, match="Unknown BM3D profile 'fast'"):
        baselines.BM3DDenoiser(0.1, profile="fast")
    with pytest.raises(ValueError, match="'refilter' is not supported"):
        baselines.BM3DDenoiser(0.1, profile="refilter")


@pytest.mark.parametrize("profile", baselines.BM3D_PROFILES)
def test_every_offered_bm3d_profile_runs_on_color_and_gray(profile):
    # The package's profiles are offered only where they run: "refilter" does not.
    for channels in (1, 3):
        clean = smooth_image(40, 48, channels=channels)
        degraded, _ = _degraded("denoise", clean)
        restored = baselines.BM3DDenoiser(0.1, profile=profile)(degraded[None])[0]
        gain = float(metrics.psnr(restored, clean)) - float(metrics.psnr(degraded, clean))
        assert gain > 3.0, f"profile {profile}, {channels} channels: {gain:.2f} dB"


def test_a_zero_noise_level_and_a_flat_image_give_finite_output():
    from keras_resunet.baselines import BM3DDenoiser, NLMDenoiser

    flat = np.full((1, 32, 32, 3), 0.4, np.float32)
    for denoiser in (NLMDenoiser(0.1).at_sigma(0.0), BM3DDenoiser(0.1).at_sigma(0.0)):
        np.testing.assert_allclose(denoiser(flat), flat, atol=1e-6)
