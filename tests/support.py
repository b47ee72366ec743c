"""Helpers the tests import: synthetic images and the checks every image model must pass."""

import struct
import zlib

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


def png_16_bit(path, pixels, chunks=b""):
    """Writes uint16 (H, W, 3 or 4) pixels as a 16-bit PNG from raw chunks (Pillow writes none),
    with `chunks` (already framed) after the header."""
    height, width, channels = pixels.shape
    values = np.asarray(pixels, ">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in values)
    header = struct.pack(">IIBBBBB", width, height, 16, 2 if channels == 3 else 6, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + chunks
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def camera_dng(path, rgb, orientation=1, white=4095):
    """A minimal camera raw file: `rgb` (H, W, 3 in [0, 1], H and W even) sampled through an RGGB
    Bayer mosaic at 12 bits, as a DNG with a neutral as-shot white balance and no colour matrix
    (LibRaw then takes the camera's colours as they are)."""
    import tifffile

    mosaic = np.zeros(rgb.shape[:2], np.uint16)
    for (top, left), channel in {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}.items():
        mosaic[top::2, left::2] = np.round(rgb[top::2, left::2, channel] * white)
    tags = [
        (271, "s", 0, "TestMaker", True),
        (272, "s", 0, "TestCam", True),
        (274, "H", 1, orientation, True),
        (33421, "H", 2, (2, 2), True),  # CFA repeat pattern 2x2
        (33422, "B", 4, (0, 1, 1, 2), True),  # R G / G B
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNG version
        (50708, "s", 0, "TestMaker TestCam", True),
        (50728, "2I", 3, [10000] * 6, True),  # as-shot neutral
        (50714, "H", 1, 0, True),  # black level
        (50717, "H", 1, white, True),  # white level
    ]
    tifffile.imwrite(path, mosaic, photometric=32803, extratags=tags, subfiletype=0)
