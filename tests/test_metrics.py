import numpy as np
import pytest

from keras_resunet import metrics
from tests.support import smooth_image


def test_constant_offset_of_point_one_is_20_db():
    reference = np.full((2, 16, 16, 3), 0.5, np.float32)
    values = np.asarray(metrics.psnr(reference + 0.1, reference))
    assert values.shape == (2,)
    np.testing.assert_allclose(values, 20.0, atol=1e-3)


def test_psnr_is_per_image_not_per_batch():
    reference = np.full((2, 8, 8, 1), 0.5, np.float32)
    restored = reference + np.array([0.1, 0.01], np.float32)[:, None, None, None]
    np.testing.assert_allclose(metrics.psnr(restored, reference), [20.0, 40.0], atol=1e-3)


def test_outputs_are_clipped_before_scoring():
    reference = np.ones((8, 8, 1), np.float32)
    assert float(metrics.psnr(reference + 5.0, reference)) == np.inf


def test_ssim_of_identical_images_is_one_and_drops_with_noise():
    rng = np.random.default_rng(0)
    reference = smooth_image(48, 48)
    assert float(metrics.ssim(reference, reference)) == pytest.approx(1.0, abs=1e-6)
    noisy = reference + rng.normal(0, 0.1, reference.shape).astype(np.float32)
    # the same definition as scikit-image's Gaussian-window SSIM (Wang et al. 2004)
    from skimage.metrics import structural_similarity

    expected = structural_similarity(
        np.clip(noisy, 0, 1),
        reference,
        data_range=1.0,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert float(metrics.ssim(noisy, reference)) == pytest.approx(expected, abs=0.02)
    slightly = reference + rng.normal(0, 0.01, reference.shape).astype(np.float32)
    assert float(metrics.ssim(slightly, reference)) > float(metrics.ssim(noisy, reference))


def test_evaluate_pairs_summarizes_per_image_values():
    reference = [np.full((16, 16, 1), 0.5, np.float32)] * 2
    restored = [reference[0] + 0.1, reference[1] + 0.01]
    result = metrics.evaluate_pairs(restored, reference)
    assert result["psnr_summary"]["mean"] == pytest.approx(30.0, abs=1e-3)
    assert result["psnr_summary"]["n"] == 2
    with pytest.raises(ValueError, match="Shapes differ"):
        metrics.psnr(np.zeros((4, 4, 1)), np.zeros((4, 5, 1)))


def test_numpy_metrics_equal_tensorflows():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    for shape in ((40, 52, 3), (33, 64, 1)):
        clean = rng.random(shape).astype(np.float32)
        noisy = np.clip(clean + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
        assert metrics.psnr(noisy, clean) == pytest.approx(
            float(tf.image.psnr(noisy, clean, 1.0)), abs=1e-4
        )
        assert metrics.ssim(noisy, clean) == pytest.approx(
            float(tf.image.ssim(noisy, clean, 1.0)), abs=1e-5
        )
