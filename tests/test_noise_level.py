import io
import math

import numpy as np
import pytest
from PIL import Image

from keras_resunet.noise_level import (
    block_sigma,
    check_sigma,
    estimate_sigma,
    flat_block_sigma,
    wavelet_sigma,
)
from tests.support import smooth_image


@pytest.mark.parametrize("sigma", [5 / 255, 25 / 255, 50 / 255])
def test_the_estimate_finds_the_added_noise_on_a_smooth_image(sigma):
    clean = smooth_image(128, 128)
    noisy = clean + np.random.default_rng(0).normal(0, sigma, clean.shape).astype(np.float32)
    assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.1)


def _saved_as_jpeg(image, quality, subsampling):
    buffer = io.BytesIO()
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), np.float32) / 255


@pytest.mark.parametrize("size", [(48, 64), (97, 131), (33, 200)])
@pytest.mark.parametrize("quality", [75, 90, 95])
@pytest.mark.parametrize("sigma_255", [5, 15, 25, 50])
def test_chroma_subsampling_leaves_the_estimate_of_a_jpeg_unchanged(size, quality, sigma_255):
    # 4:2:0 and 4:2:2 average chroma over pixel blocks, which removes most chroma noise from
    # the finest scale; the estimate must read the same level as from the 4:4:4 file
    clean = smooth_image(*size)
    rng = np.random.default_rng(sigma_255)
    noisy = clean + rng.normal(0, sigma_255 / 255, clean.shape).astype(np.float32)
    full = estimate_sigma(_saved_as_jpeg(noisy, quality, subsampling=0))
    for subsampling in (1, 2):
        estimate = estimate_sigma(_saved_as_jpeg(noisy, quality, subsampling))
        assert estimate == pytest.approx(full, rel=0.05, abs=0.25 / 255), subsampling


@pytest.mark.parametrize("sigma_255", [5, 15, 25])
def test_high_quality_jpegs_give_the_added_level(sigma_255):
    clean = smooth_image(128, 96)
    rng = np.random.default_rng(1)
    noisy = clean + rng.normal(0, sigma_255 / 255, clean.shape).astype(np.float32)
    estimate = estimate_sigma(_saved_as_jpeg(noisy, quality=95, subsampling=2))
    assert estimate == pytest.approx(sigma_255 / 255, rel=0.1)


def _saved(clean, sigma_255, seed=0):
    """`clean` with Gaussian noise, clipped and rounded to 8 bits as a saved photo is."""
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0, sigma_255 / 255, clean.shape).astype(np.float32)
    return np.round(np.clip(noisy, 0, 1) * 255).astype(np.float32) / 255, noisy


@pytest.mark.parametrize("size", [(97, 131), (200, 150)])
@pytest.mark.parametrize("contrast", [1.0, 2.5])  # 2.5: large parts black or white
@pytest.mark.parametrize("sigma_255", [5, 15, 25, 50, 75])
def test_noise_clipped_by_saving_is_estimated_at_its_level(size, contrast, sigma_255):
    clean = np.clip(0.5 + (smooth_image(*size, seed=4) - 0.5) * contrast, 0, 1)
    saved, _ = _saved(clean, sigma_255, seed=sigma_255)
    assert estimate_sigma(saved) == pytest.approx(sigma_255 / 255, rel=0.15)
    # the correction only ever raises the measure, and stays with it where nothing clips
    assert estimate_sigma(saved) >= flat_block_sigma(saved)


@pytest.mark.parametrize("sigma_255", [5, 15, 25])
def test_the_clipping_correction_leaves_unclipped_images_alone(sigma_255):
    clean = 0.3 + 0.4 * smooth_image(96, 112, seed=2)  # far from black and white
    saved, _ = _saved(clean, sigma_255)
    assert estimate_sigma(saved) == pytest.approx(flat_block_sigma(saved), rel=0.03)
    bright = np.clip(smooth_image(96, 112) + 0.3, 0, 1)
    _, outside = _saved(bright, sigma_255)
    assert outside.max() > 1  # values beyond [0, 1]: the noise was not clipped, nothing to undo
    assert estimate_sigma(outside) == flat_block_sigma(outside)
    assert estimate_sigma(saved) == estimate_sigma(saved.copy())  # seeded: always the same


@pytest.mark.parametrize("black_share", [0.5, 0.8])
@pytest.mark.parametrize("sigma_255", [15, 30, 50, 75])
def test_large_black_and_white_areas_are_corrected_to_the_level(black_share, sigma_255):
    # most of the image clipped: the correction must simulate black as black (a smoothed noisy
    # image lifts it off 0 and reads 16-24% low here)
    clean = np.clip(smooth_image(192, 256, seed=3) * 0.6 + 0.2, 0, 1)
    clean[:, : int(256 * black_share)] = 0.0
    clean[:40] = 1.0
    saved, _ = _saved(clean, sigma_255, seed=sigma_255)
    assert estimate_sigma(saved) == pytest.approx(sigma_255 / 255, rel=0.12)


@pytest.mark.parametrize("sigma", [0.005, 0.05, 0.2, 0.4])
def test_clipped_mean_is_the_mean_of_clipped_noise_and_unclipped_mean_undoes_it(sigma):
    from keras_resunet.noise_level import clipped_mean, unclipped_mean

    clean = np.linspace(0, 1, 21)
    unit = np.random.default_rng(5).standard_normal((200_000, 1))
    sampled = np.clip(clean + sigma * unit, 0, 1).mean(axis=0)
    assert clipped_mean(clean, sigma) == pytest.approx(sampled, abs=3e-3 * max(sigma, 0.1))
    assert unclipped_mean(clipped_mean(clean, sigma), sigma) == pytest.approx(clean, abs=2e-3)
    # means no clean level gives (darker than black's clipped noise) stay at the ends
    assert unclipped_mean(np.array([0.0, 1.0]), sigma) == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize("shape", [(96, 80), (96, 80, 1), (96, 80, 2), (96, 80, 4)])
def test_other_channel_counts_average_their_channels(shape):
    rng = np.random.default_rng(2)
    noisy = 0.5 + rng.normal(0, 20 / 255, shape).astype(np.float32)
    assert estimate_sigma(noisy) == pytest.approx(20 / 255, rel=0.1)


def test_flat_images_give_zero_and_tiny_ones_an_error():
    assert estimate_sigma(np.full((32, 32, 3), 0.4, np.float32)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="too small to estimate"):
        estimate_sigma(np.zeros((12, 40, 3), np.float32))


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, math.inf, "x", None])
def test_sigma_outside_the_unit_range_or_not_a_number_is_refused(value):
    with pytest.raises(ValueError, match="sigma"):
        check_sigma(value)


def test_valid_sigmas_pass():
    assert check_sigma(0) == 0.0 and check_sigma("0.25") == 0.25 and check_sigma(1) == 1.0


@pytest.mark.parametrize("shape", [(600, 500, 3), (333, 900, 3), (700, 300, 1), (130, 2000, 3)])
def test_large_images_are_corrected_on_a_mosaic_as_on_the_whole(shape, monkeypatch):
    from keras_resunet import noise_level

    clean = np.clip(0.5 + (smooth_image(*shape, seed=1) - 0.5) * 2.5, 0, 1)
    saved, _ = _saved(clean, 50)
    whole = estimate_sigma(saved)
    monkeypatch.setattr(noise_level, "CLIP_PIXELS", 100_000)
    monkeypatch.setattr(noise_level, "TILE", 32)
    mosaic = noise_level._mosaic(saved)
    assert mosaic.shape[0] * mosaic.shape[1] <= 100_000 < saved.shape[0] * saved.shape[1]
    assert mosaic.shape[2:] == saved.shape[2:] and mosaic.shape[0] % 32 == mosaic.shape[1] % 32 == 0
    assert mosaic.shape[0] * mosaic.shape[1] > 50_000  # the budget is used
    assert estimate_sigma(saved) == pytest.approx(whole, rel=0.03)


def _textured(size, texture_share, seed=0):
    """A smooth image whose right `texture_share` of columns carries a fixed fine texture (what
    a noise estimate must not read as noise)."""
    height, width = size
    clean = 0.3 + 0.4 * smooth_image(height, width, seed=seed)[..., :3]
    start = int(width * (1 - texture_share))
    texture = np.random.default_rng(100 + seed).uniform(-0.08, 0.08, (height, width - start, 1))
    clean[:, start:] += texture.astype(np.float32)
    return clean


@pytest.mark.parametrize("size", [(256, 256), (300, 420)])
@pytest.mark.parametrize("texture_share", [0.6, 0.75])
@pytest.mark.parametrize("sigma_255", [0, 5, 15])
def test_texture_does_not_raise_the_estimate(size, texture_share, sigma_255):
    clean = _textured(size, texture_share)
    saved, _ = _saved(clean, sigma_255)
    assert wavelet_sigma(saved) > sigma_255 / 255 + 4 / 255  # the whole image reads the texture
    assert estimate_sigma(saved) == pytest.approx(sigma_255 / 255, rel=0.15, abs=1.5 / 255)


@pytest.mark.parametrize("quality", [0, 50, 75, 89])
def test_photos_a_codec_stored_at_low_quality_are_measured_over_the_whole_image(quality):
    saved, _ = _saved(_textured((256, 256), 0.7), 5)
    whole = estimate_sigma(saved, stored_quality=quality)
    assert whole == pytest.approx(estimate_sigma(saved, stored_quality=0))
    assert whole >= wavelet_sigma(saved) > estimate_sigma(saved) + 4 / 255


@pytest.mark.parametrize("quality", [90, 95, 100, None])
def test_lossless_and_fine_quality_photos_are_measured_on_their_flattest_blocks(quality):
    saved, _ = _saved(_textured((256, 256), 0.7), 5)
    assert estimate_sigma(saved, stored_quality=quality) == estimate_sigma(saved)
    assert estimate_sigma(saved) == pytest.approx(5 / 255, rel=0.15)


@pytest.mark.parametrize("shape", [(128, 128, 3), (256, 384, 3), (500, 700, 1), (300, 260)])
@pytest.mark.parametrize("sigma_255", [2, 10, 40])
def test_the_flattest_blocks_of_pure_noise_read_its_level(shape, sigma_255):
    noisy = 0.5 + np.random.default_rng(sigma_255).normal(0, sigma_255 / 255, shape)
    # 16 blocks in the smallest: a percentile of few blocks varies more
    assert block_sigma(noisy.astype(np.float32)) == pytest.approx(sigma_255 / 255, rel=0.08)


@pytest.mark.parametrize(
    "shape", [(16, 16, 3), (20, 300, 3), (300, 20), (64, 64, 3), (40, 500, 3), (100, 100, 1)]
)
def test_images_with_too_few_blocks_are_measured_whole(shape):
    saved, _ = _saved(np.full(shape, 0.5, np.float32), 10)
    assert block_sigma(saved) is None
    assert flat_block_sigma(saved) == wavelet_sigma(saved)


@pytest.mark.parametrize("sigma_255", [15, 30])
@pytest.mark.parametrize("black_share", [0.3, 0.6])
def test_blocks_with_clipped_noise_are_left_out(sigma_255, black_share, monkeypatch):
    from keras_resunet import noise_level

    # black (noise clipped away by half) and mid-grey: a low percentile of all blocks would
    # pick the black ones
    clean = np.full((256, 320, 3), 0.5, np.float32)
    clean[:, : int(320 * black_share)] = 0.0
    saved, _ = _saved(clean, sigma_255)
    assert block_sigma(saved) == pytest.approx(sigma_255 / 255, rel=0.08)
    monkeypatch.setattr(noise_level, "MAX_CLIPPED", 1.0)
    assert block_sigma(saved) < 0.75 * sigma_255 / 255
