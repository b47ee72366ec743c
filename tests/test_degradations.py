import numpy as np
import pytest
import tensorflow as tf

from keras_resunet import degradations as deg
from tests.support import smooth_image

SEED = tf.constant([3, 4], tf.int64)


def test_noise_has_requested_std_and_is_seeded():
    clean = np.full((4, 64, 64, 3), 0.5, np.float32)
    noisy = deg.GaussianNoise(sigma=0.1)(clean, SEED).numpy()
    residual = noisy - clean
    assert abs(residual.std() - 0.1) < 0.002
    assert abs(residual.mean()) < 0.002
    assert noisy.max() > 1.0 - 0.5 + 0.3  # not clipped: the protocol keeps the tails
    np.testing.assert_array_equal(deg.GaussianNoise(0.1)(clean, SEED), noisy)
    assert not np.array_equal(deg.GaussianNoise(0.1)(clean, SEED + 1), noisy)


def test_clipped_noise_is_the_same_draw_clipped_to_the_unit_range():
    clean = np.linspace(0, 1, 64 * 64 * 3, dtype=np.float32).reshape(1, 64, 64, 3)
    noisy = deg.GaussianNoise(0.1)(clean, SEED).numpy()
    clipped = deg.GaussianNoise(0.1, clip=True)(clean, SEED).numpy()
    assert noisy.min() < 0 and noisy.max() > 1
    np.testing.assert_array_equal(clipped, np.clip(noisy, 0, 1))
    blurred = deg.make_degradation("deblur_denoise", clip=True)(clean, SEED).numpy()
    assert blurred.min() == 0.0 and blurred.max() == 1.0


def test_noise_sigma_range_draws_one_sigma_per_image():
    clean = np.zeros((64, 32, 32, 1), np.float32)
    noisy = deg.GaussianNoise(sigma_range=(0.0, 0.2))(clean, SEED).numpy()
    stds = noisy.reshape(64, -1).std(axis=1)
    assert 0.0 <= stds.min() < 0.05 and 0.15 < stds.max() <= 0.21
    assert abs(stds.mean() - 0.1) < 0.03


def test_sigma_power_draws_low_levels_more_often_and_one_keeps_the_uniform_draw():
    clean = np.zeros((400, 4, 4, 1), np.float32)
    uniform = deg.GaussianNoise(sigma_range=(0.0, 0.2))
    _, plain = uniform.sample(clean, SEED)
    _, same = deg.GaussianNoise(sigma_range=(0.0, 0.2), sigma_power=1).sample(clean, SEED)
    np.testing.assert_array_equal(same, plain)
    _, low = deg.GaussianNoise(sigma_range=(0.0, 0.2), sigma_power=2.0).sample(clean, SEED)
    low, plain = np.asarray(low), np.asarray(plain)
    assert 0.0 <= low.min() and low.max() <= 0.2
    # below a quarter of the range: half the draws (u^2 < 1/4 when u < 1/2), not a quarter
    assert 0.43 < np.mean(low < 0.05) < 0.57 and 0.18 < np.mean(plain < 0.05) < 0.32
    rng = np.random.default_rng(0)
    _, drawn = deg.GaussianNoise(sigma_range=(0.1, 0.3), sigma_power=3.0).numpy_sample(clean, rng)
    assert 0.1 <= drawn.min() and drawn.max() <= 0.3
    assert 0.43 < np.mean(drawn < 0.1 + 0.2 / 8) < 0.57  # u^3 < 1/8 when u < 1/2


def test_single_image_and_batch_agree_in_shape():
    image = smooth_image(20, 30)
    single = np.asarray(deg.GaussianNoise(0.1)(image, SEED))
    batch = np.asarray(deg.GaussianNoise(0.1)(np.stack([image, image]), SEED))
    assert single.shape == (20, 30, 3) and batch.shape == (2, 20, 30, 3)
    # one image is a batch of one: the same noise as the batch's first image
    np.testing.assert_allclose(single, batch[0], atol=1e-6)


@pytest.mark.parametrize(
    "kernel",
    [
        deg.gaussian_kernel(7, 1.6),
        deg.box_kernel(5),
        deg.motion_kernel(7, 30),
        deg.digit_kernel(7, 7),
    ],
)
def test_kernels_sum_to_one_and_blur_keeps_constants(kernel):
    assert kernel.dtype == np.float32
    assert abs(kernel.sum() - 1) < 1e-6
    constant = np.full((2, 19, 23, 3), 0.37, np.float32)
    for mode in ("circular", "same"):
        np.testing.assert_allclose(deg.Blur(kernel, mode)(constant), constant, atol=1e-5)


def test_circular_blur_matches_numpy_fft_reference():
    image = np.random.default_rng(0).random((1, 16, 20, 1)).astype(np.float32)
    kernel = deg.motion_kernel(5, 45)
    blurred = deg.Blur(kernel, "circular")(image).numpy()[0, :, :, 0]
    # direct circular convolution: sum_k kernel[k] * image[x - (k - centre)]
    expected = np.zeros((16, 20))
    for (i, j), weight in np.ndenumerate(kernel):
        expected += weight * np.roll(image[0, :, :, 0], (i - 2, j - 2), axis=(0, 1))
    np.testing.assert_allclose(blurred, expected, atol=1e-5)


def test_same_blur_matches_circular_away_from_borders():
    image = np.random.default_rng(1).random((1, 24, 24, 3)).astype(np.float32)
    kernel = deg.motion_kernel(7, 10)  # asymmetric: catches a missing flip
    circular = deg.Blur(kernel, "circular")(image).numpy()
    same = deg.Blur(kernel, "same")(image).numpy()
    np.testing.assert_allclose(same[:, 4:-4, 4:-4], circular[:, 4:-4, 4:-4], atol=1e-5)


def test_blur_noise_composition_is_deterministic():
    degradation = deg.make_degradation("deblur_denoise", sigma=0.05)
    image = smooth_image()
    first = degradation(image, SEED).numpy()
    np.testing.assert_array_equal(first, degradation(image, SEED).numpy())
    blurred = deg.Blur(deg.gaussian_kernel(7, 1.6))(image).numpy()
    assert abs((first - blurred).std() - 0.05) < 0.005


def test_load_kernel_from_files(tmp_path):
    kernel = np.arange(9, dtype=np.float32).reshape(3, 3)
    np.save(tmp_path / "k.npy", kernel)
    np.savetxt(tmp_path / "k.txt", kernel)
    for name in ("k.npy", "k.txt"):
        np.testing.assert_allclose(deg.make_kernel(str(tmp_path / name)), kernel / 36, atol=1e-7)
    (tmp_path / "bad.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="bad.npy"):
        deg.load_kernel(tmp_path / "bad.npy")
    with pytest.raises(FileNotFoundError):
        deg.load_kernel(tmp_path / "missing.npy")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: deg.gaussian_kernel(4), "odd"),
        (lambda: deg.normalize_kernel(-np.ones((3, 3))), "non-negative"),
        (lambda: deg.GaussianNoise(sigma=-1), "sigma"),
        (lambda: deg.GaussianNoise(sigma_range=(0.3, 0.1)), "sigma_range"),
        (lambda: deg.GaussianNoise(sigma_range=(0.0, 0.3), sigma_power=0), "sigma_power"),
        (lambda: deg.GaussianNoise(sigma_power="2"), "sigma_power"),
        (lambda: deg.Blur(np.ones((3, 3)), mode="fft"), "mode"),
        (lambda: deg.make_degradation("inpaint"), "Unknown task"),
        (lambda: deg.make_kernel("airy"), "Unknown kernel"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_degradation_works_inside_tf_data():
    images = tf.data.Dataset.from_tensor_slices(np.zeros((4, 16, 16, 1), np.float32))
    seeds = tf.data.Dataset.from_tensor_slices(np.arange(8, dtype=np.int64).reshape(4, 2))
    noise = deg.GaussianNoise(0.1)
    out = list(tf.data.Dataset.zip(images, seeds).map(lambda x, s: noise(x, s)))
    assert len(out) == 4 and all(abs(float(tf.math.reduce_std(o)) - 0.1) < 0.03 for o in out)


@pytest.mark.parametrize("mode", ["circular", "same"])
def test_numpy_blur_matches_the_tensorflow_one(mode):
    from keras_resunet.degradations import Blur, motion_kernel

    images = np.random.default_rng(0).random((2, 20, 26, 3), dtype=np.float32)
    blur = Blur(motion_kernel(5, angle=30), mode=mode)
    np.testing.assert_allclose(blur.numpy(images), np.asarray(blur(images)), atol=1e-5)


def test_numpy_noise_has_the_level_and_clipping_it_claims():
    from keras_resunet.degradations import GaussianNoise

    clean = np.full((64, 48, 48, 3), 0.5, np.float32)
    rng = np.random.default_rng(0)
    noisy, sigma = GaussianNoise(sigma_range=(0.05, 0.2)).numpy_sample(clean, rng)
    assert 0.05 <= sigma.min() and sigma.max() <= 0.2
    measured = (noisy - clean).std(axis=(1, 2, 3))
    np.testing.assert_allclose(measured, sigma, rtol=0.05)
    saved = GaussianNoise(sigma=0.3, clip_fraction=1.0).numpy(clean, rng)
    assert saved.min() >= 0 and saved.max() <= 1
    np.testing.assert_allclose(saved * 255, np.round(saved * 255), atol=1e-3)


def test_tensorflow_noise_map_sample_and_clip_share():
    from keras_resunet.degradations import GaussianNoise, with_noise_map

    clean = np.full((200, 8, 8, 3), 0.5, np.float32)
    noisy, sigma = GaussianNoise(sigma=0.4, clip_fraction=0.25).sample(clean, [1, 2])
    noisy = np.asarray(noisy)
    quantized = np.all(np.abs(noisy * 255 - np.round(noisy * 255)) < 1e-3, axis=(1, 2, 3))
    assert 0.15 < quantized.mean() < 0.35 and np.all(np.asarray(sigma) == np.float32(0.4))
    mapped = np.asarray(with_noise_map(noisy, sigma))
    assert mapped.shape == (200, 8, 8, 4) and np.all(mapped[..., 3] == np.float32(0.4))
    # the plain draw of a fixed sigma is unchanged by the clip share: same seeds, same noise
    plain = np.asarray(GaussianNoise(sigma=0.4)(clean, [1, 2]))
    np.testing.assert_array_equal(plain[~quantized], noisy[~quantized])


def test_one_constructor_takes_a_kernel_by_name_file_or_array(tmp_path):
    protocol = deg.make_degradation("deblur_denoise", sigma=0.05)
    np.testing.assert_allclose(deg.blur_kernel(protocol), deg.gaussian_kernel(7, 1.6))
    assert deg.task_of(protocol) == "deblur_denoise" and deg.noise_level(protocol) == 0.05
    np.save(tmp_path / "k.npy", np.ones((3, 3)))
    for kernel in ("box", str(tmp_path / "k.npy"), tmp_path / "k.npy", np.ones((5, 3))):
        blurred = deg.make_degradation("deblur_denoise", kernel=kernel)
        expected = deg.make_kernel("box") if isinstance(kernel, str) and kernel == "box" else None
        found = deg.blur_kernel(blurred)
        assert found.sum() == pytest.approx(1.0)
        if expected is not None:
            np.testing.assert_allclose(found, expected)
        else:
            assert np.ptp(found) == 0  # a uniform kernel, normalised
    noise = deg.make_degradation("denoise", sigma=0.2, kernel="box")  # denoise has no blur
    assert deg.blur_kernel(noise) is None and deg.task_of(noise) == "denoise"
