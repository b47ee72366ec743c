"""Helpers the tests import: synthetic images and the checks every image model must pass."""

import keras
import numpy as np


def smooth_image(height=48, width=48, channels=3, seed=0):
    """A smooth random image in [0, 1] (a sum of low-frequency waves): easy to denoise."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height)[:, None, None]
    cols = np.linspace(0, 1, width)[None, :, None]
    image = np.zeros((height, width, channels))
    for _ in range(4):
        fy, fx, phase = rng.uniform(0.5, 3, size=3)
        amplitude = rng.uniform(0.05, 0.2, size=channels)
        image += amplitude * np.sin(2 * np.pi * (fy * rows + fx * cols) + phase)
    return np.clip(0.5 + image, 0, 1).astype(np.float32)


def check_image_model(builder, tmp_path, **kwargs):
    """The cross-cutting checks every image-to-image builder must pass."""
    for channels in (1, 3):
        model = builder(in_channels=channels, **kwargs)
        assert model.input_shape == (None, None, None, channels)
        for height, width in ((37, 53), (32, 32), (17, 64)):
            x = np.random.default_rng(0).random((2, height, width, channels), dtype=np.float32)
            y = model(x)
            assert tuple(y.shape) == (2, height, width, channels)
            assert y.dtype == "float32"

    model = builder(in_channels=3, **kwargs)
    x = np.random.default_rng(1).random((2, 37, 53, 3), dtype=np.float32)
    # config round trip rebuilds the same model: every layer's config, field by field (a
    # constructor argument lost from get_config shows up here, not only in the parameter count)
    clone = keras.Model.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    for original, rebuilt in zip(model.layers, clone.layers):
        assert rebuilt.get_config() == original.get_config(), original.name
    # and computes the same: an argument a layer's get_config forgets rebuilds it differently
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x), model(x), atol=1e-6)
    # save / load gives identical outputs
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    # one training step lowers the loss on a fixed batch
    target = np.clip(x + 0.1, 0, 1)
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    before = model.evaluate(x, target, verbose=0)
    model.fit(x, target, epochs=5, verbose=0)
    after = model.evaluate(x, target, verbose=0)
    assert after < before
