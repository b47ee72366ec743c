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


def _modern_photo(path, mode, size, orientation=6):
    """A smooth picture in `mode` saved as AVIF, HEIC or JPEG XL with an EXIF orientation and
    maker."""
    height, width = size
    rgb = io.to_uint8(smooth_image(height, width, seed=3))
    picture = Image.fromarray(rgb).convert(mode.removesuffix("A"))
    if mode.endswith("A"):
        picture.putalpha(Image.fromarray(np.full((height, width), 200, np.uint8)))
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = orientation, "TestCam"
    picture.save(path, quality=95, exif=exif.tobytes())
    return np.asarray(picture)


@pytest.mark.parametrize("suffix", ["avif", "heic", "jxl"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("size", [(33, 47), (64, 40)])
def test_avif_heic_and_jxl_photos_come_back_upright_in_their_format_and_mode(
    tmp_path, suffix, mode, size
):
    source = tmp_path / f"in.{suffix}"
    written = _modern_photo(source, mode, size)
    image = io.read_image_file(source)
    height, width = size
    channels = 1 if mode == "L" else 3
    assert image.pixels.shape == (width, height, channels)  # orientation 6: turned upright
    assert (image.alpha is not None) == mode.endswith("A")
    # the pixels are the written ones, turned (lossy: a small error)
    turned = np.rot90(written, k=-1).astype(np.float32) / 255
    colour = turned[..., :channels] if turned.ndim == 3 else turned[..., None]
    assert np.abs(image.pixels - colour).mean() < 0.02
    io.save_image_file(tmp_path / f"out.{suffix}", image)
    with Image.open(source) as before, Image.open(tmp_path / f"out.{suffix}") as after:
        after.load()
        assert after.format == before.format and after.mode == before.mode
        assert after.getexif().get(0x010F) == "TestCam"
    again = io.read_image_file(tmp_path / f"out.{suffix}")  # not turned a second time
    assert again.pixels.shape == image.pixels.shape
    assert np.abs(again.pixels - image.pixels).mean() < 0.02


@pytest.mark.parametrize(
    ("suffix", "flag", "package"),
    [("heic", "HEIF_READABLE", "pillow-heif"), ("jxl", "JXL_READABLE", "pillow-jxl-plugin")],
)
def test_heic_and_jxl_without_their_plugin_are_refused_by_name(
    tmp_path, monkeypatch, suffix, flag, package
):
    _modern_photo(tmp_path / f"in.{suffix}", "RGB", (20, 24))
    image = io.read_image_file(tmp_path / f"in.{suffix}")
    monkeypatch.setattr(io, flag, False)
    with pytest.raises(io.ImageReadError, match=rf"in\.{suffix}: .*pip install {package}"):
        io.read_image_file(tmp_path / f"in.{suffix}")
    with pytest.raises(ValueError, match=package):
        io.save_image_file(tmp_path / f"out.{suffix}", image)
    assert not (tmp_path / f"out.{suffix}").exists()
    assert io.missing_plugin(".png") is None


def test_sixteen_bit_gray_goes_to_jxl_whole_and_is_refused_by_avif_and_jpeg(tmp_path):
    deep = (smooth_image(20, 24, channels=1)[..., 0] * 65535).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    image = io.read_image_file(tmp_path / "deep.png")
    for suffix in ("avif", "jpg", "jfif"):
        with pytest.raises(ValueError, match="cannot store 16-bit"):
            io.save_image_file(tmp_path / f"out.{suffix}", image)
        assert not (tmp_path / f"out.{suffix}").exists()
    io.save_image_file(tmp_path / "out.jxl", image, quality=100)
    again = io.read_image_file(tmp_path / "out.jxl")
    assert again.bit_depth == 16 and again.notes == ()
    # quality 100 is lossless in JPEG XL: the 16-bit values come back
    np.testing.assert_array_equal(np.round(again.pixels * 65535), np.round(image.pixels * 65535))


def test_sixteen_bit_gray_goes_to_heic_in_ten_bits(tmp_path):
    deep = (smooth_image(20, 24, channels=1)[..., 0] * 65535).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    image = io.read_image_file(tmp_path / "deep.png")
    io.save_image_file(tmp_path / "out.heic", image)
    again = io.read_image_file(tmp_path / "out.heic")
    assert again.bit_depth == 16 and again.notes == ()
    error = np.abs(again.pixels - image.pixels)
    assert error.mean() < 2**-9 and error.max() < 0.01  # lossy: within about one 8-bit level


def test_ten_bit_heic_colour_is_read_in_8_bits_and_said(tmp_path):
    import pillow_heif

    rgb = (smooth_image(20, 24) * 65535).astype(np.uint16)
    photo = pillow_heif.from_bytes(mode="RGB;16", size=(24, 20), data=rgb.tobytes())
    photo.save(tmp_path / "deep.heic", quality=95)
    image = io.read_image_file(tmp_path / "deep.heic")
    assert image.bit_depth == 8 and image.notes == (
        "10-bit colour is read as 8 bits per channel: written in 8 bits",
    )
    assert np.abs(image.pixels - rgb / 65535).mean() < 0.05  # lossy, chroma halved


@pytest.mark.parametrize("quality", [25, 40, 50, 60, 75, 85, 89, 90, 92, 95, 98])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_a_jpegs_quality_is_read_from_its_tables(tmp_path, quality, subsampling):
    path = tmp_path / "q.jpg"
    Image.fromarray(io.to_uint8(smooth_image(32, 40))).save(
        path, quality=quality, subsampling=subsampling
    )
    assert abs(io.read_image_file(path).stored_quality - quality) <= 1


def _saved_in(path, **options):
    Image.fromarray(io.to_uint8(smooth_image(32, 40))).save(path, **options)
    return path


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("a.png", {}, None),
        ("a.tif", {}, None),
        ("a.bmp", {}, None),
        ("lossless.webp", {"lossless": True}, None),
        ("lossy.webp", {"quality": 90}, 0),
        ("a.avif", {"quality": 90}, 0),
        ("a.heic", {"quality": 90}, 0),
        ("a.jxl", {"quality": 90}, 0),
        ("gray.jpg", {"quality": 80}, 80),
    ],
)
def test_lossy_files_say_so_and_lossless_ones_do_not(tmp_path, name, options, expected):
    path = _saved_in(tmp_path / name, **options)
    if name == "gray.jpg":
        Image.open(path).convert("L").save(path, quality=80)
    image = io.read_image_file(path)
    assert image.stored_quality == expected
    assert image.lossless == (name == "lossless.webp")


def test_the_ijg_table_sum_is_libjpegs(tmp_path):
    # quality 50 is the unscaled table
    path = _saved_in(tmp_path / "q50.jpg", quality=50)
    with Image.open(path) as image:
        assert sum(image.quantization[0]) == io._IJG_LUMA_SUM
