import numpy as np
import pytest
from scipy import ndimage

from keras_resunet.operators import BlurOperator, check_kernel


def _kernel(size=7, seed=0):
    rng = np.random.default_rng(seed)
    kernel = rng.random((size, size)) ** 3
    return kernel / kernel.sum()


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(24, 36, 3), (36, 24, 1)])
def test_forward_is_circular_convolution_then_decimation(scale, shape):
    kernel = _kernel(seed=scale)
    image = np.random.default_rng(1).random(shape).astype(np.float32)
    direct = np.stack(
        [ndimage.convolve(image[..., c], kernel, mode="wrap") for c in range(shape[-1])], -1
    )[::scale, ::scale]
    operator = BlurOperator(kernel, scale)
    np.testing.assert_allclose(operator.forward(image), direct, atol=1e-5)
    assert operator.forward(image).shape == operator.output_shape(shape)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_adjoint_passes_the_dot_product_test(scale):
    rng = np.random.default_rng(scale)
    operator = BlurOperator(_kernel(9, seed=scale), scale)
    x = rng.standard_normal((24, 36, 3)).astype(np.float32)
    y = rng.standard_normal(operator.output_shape(x.shape)).astype(np.float32)
    left = float(np.sum(operator.forward(x) * y, dtype=np.float64))
    right = float(np.sum(x * operator.adjoint(y), dtype=np.float64))
    assert abs(left - right) < 1e-4 * max(abs(left), 1)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("alpha", [1e-3, 0.1, 10.0])
def test_prox_solves_its_normal_equations(scale, alpha):
    rng = np.random.default_rng(10 * scale)
    operator = BlurOperator(_kernel(7, seed=scale), scale)
    z = rng.random((24, 36, 3)).astype(np.float32)
    y = rng.random(operator.output_shape(z.shape)).astype(np.float32)
    x = operator.prox(y, z, alpha)
    residual = operator.adjoint(operator.forward(x)) + alpha * x - operator.adjoint(y) - alpha * z
    scale_of = np.abs(operator.adjoint(y) + alpha * z).max()
    assert np.abs(residual).max() < 1e-4 * scale_of


def test_prox_of_a_noise_free_observation_with_a_weak_prior_recovers_the_image():
    operator = BlurOperator(np.outer([1, 4, 1], [1, 4, 1]), 1)
    x = np.random.default_rng(3).random((16, 16, 3)).astype(np.float32)
    # this kernel's spectrum (4 + 2 cos w per axis) has no zero: the blur is invertible
    restored = operator.prox(operator.forward(x), np.zeros_like(x), 1e-7)
    np.testing.assert_allclose(restored, x, atol=2e-3)


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        (np.ones(5), "2-D"),
        (np.full((3, 3), np.nan), "NaN"),
        (np.array([[0, -1, 0], [0, 2, 0], [0, 0, 0]]), "negative"),
        (np.zeros((3, 3)), "all zeros"),
        (np.ones((4, 5)), "even side"),
    ],
)
def test_bad_kernels_are_refused(kernel, message):
    with pytest.raises(ValueError, match=message):
        check_kernel(kernel)


def test_kernel_checks_size_against_the_image_and_normalises_with_a_note():
    with pytest.raises(ValueError, match="larger than the image"):
        check_kernel(np.ones((9, 9)), image_shape=(8, 20, 3))
    kernel, note = check_kernel(np.ones((3, 3)))
    assert np.isclose(kernel.sum(), 1) and "sums to 9" in note
    assert check_kernel(np.ones((3, 3)) / 9)[1] is None
    with pytest.raises(ValueError, match="int >= 1"):
        BlurOperator(np.ones((3, 3)), scale=0)
    with pytest.raises(ValueError, match="multiples of the scale"):
        BlurOperator(np.ones((3, 3)), scale=2).forward(np.zeros((5, 6, 3)))
