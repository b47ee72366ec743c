import math

import numpy as np
import pytest

from keras_resunet.noise_level import check_sigma, estimate_sigma
from tests.support import smooth_image


@pytest.mark.parametrize("sigma", [5 / 255, 25 / 255, 50 / 255])
def test_the_estimate_finds_the_added_noise_on_a_smooth_image(sigma):
    clean = smooth_image(128, 128)
    noisy = clean + np.random.default_rng(0).normal(0, sigma, clean.shape).astype(np.float32)
    assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.1)


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
