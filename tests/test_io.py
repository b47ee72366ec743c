import numpy as np
import pytest
from PIL import Image

from keras_resunet import io
from tests.support import smooth_image


def test_gray_rgba_and_16_bit_images_round_trip_in_their_mode(tmp_path):
    rgb = io.to_uint8(smooth_image(20, 24))
    alpha = np.arange(20 * 24, dtype=np.uint8).reshape(20, 24)
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    deep = (smooth_image(20, 24, channels=1)[..., 0] * 65535).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")

    for name, channels, has_alpha, bits in (
        ("rgba.png", 3, True, 8),
        ("gray.png", 1, False, 8),
        ("deep.png", 1, False, 16),
    ):
        image = io.read_image_file(tmp_path / name)
        assert image.pixels.shape == (20, 24, channels)
        assert (image.alpha is not None) == has_alpha and image.bit_depth == bits
        io.save_image_file(tmp_path / f"out-{name}", image)
        with Image.open(tmp_path / name) as before, Image.open(tmp_path / f"out-{name}") as after:
            assert after.mode == before.mode
            np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


def test_palette_images_become_rgb():
    palette = Image.new("P", (8, 6))
    palette.putpalette([255, 0, 0] * 256)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.png"
        palette.save(path)
        image = io.read_image_file(path)
    assert image.pixels.shape == (6, 8, 3) and image.alpha is None
    np.testing.assert_allclose(image.pixels[0, 0], [1, 0, 0])


def test_jpeg_cannot_hold_alpha(tmp_path):
    image = io.ImageFile(np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="JPEG cannot store alpha"):
        io.save_image_file(tmp_path / "x.jpg", image)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_file_names_itself(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(io.ImageReadError, match="bad.png"):
        io.read_image_file(tmp_path / "bad.png")
