"""16-bit colour PNG and TIFF: read and written back at full depth, upright, with their colour
profile and EXIF data; where the codecs are missing, read in 8 bits and said."""

import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from keras_resunet import io, sixteen_bit
from tests.support import png_16_bit, png_chunk, smooth_image

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _pixels(height, width, channels, seed=0):
    values = smooth_image(height, width, channels=channels, seed=seed) * 65535
    values[0, 0] = 1  # odd values: 8 bits would lose them
    return np.round(values).astype(np.uint16)


# name: writes uint16 pixels to a path, each by a writer other than the one under test
WRITERS = {
    "png": lambda path, pixels: png_16_bit(path, pixels),
    "tif": lambda path, pixels: tifffile.imwrite(path, pixels, photometric="rgb"),
    "lzw.tif": lambda path, pixels: tifffile.imwrite(
        path, pixels, photometric="rgb", compression="lzw"
    ),
    "planar.tiff": lambda path, pixels: tifffile.imwrite(
        path, np.moveaxis(pixels, -1, 0), photometric="rgb", planarconfig="separate"
    ),
}


def _exact(image):
    colour = np.round(image.pixels * 65535)
    if image.alpha is not None:
        colour = np.concatenate([colour, np.round(image.alpha * 65535)], axis=-1)
    return colour.astype(np.uint16)


@pytest.mark.parametrize("kind", list(WRITERS))
@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("size", [(20, 24), (33, 17)])
def test_sixteen_bit_colour_round_trips_every_value(tmp_path, kind, channels, size):
    pixels = _pixels(*size, channels)
    source = tmp_path / f"in.{kind}"
    if kind != "png" and channels == 4:
        tifffile.imwrite(source, pixels, photometric="rgb", extrasamples=("unassalpha",))
    else:
        WRITERS[kind](source, pixels)
    image = io.read_image_file(source)
    assert image.bit_depth == 16 and image.notes == ()
    assert (image.alpha is not None) == (channels == 4)
    np.testing.assert_array_equal(_exact(image), pixels)
    out = tmp_path / f"out.{kind}"
    io.save_image_file(out, image)
    np.testing.assert_array_equal(_exact(io.read_image_file(out)), pixels)
    with Image.open(source) as before, Image.open(out) as after:  # Pillow still reads it
        after.load()
        assert after.format == before.format and after.size == before.size


@pytest.mark.parametrize("orientation", range(1, 9))
def test_turned_upright_as_pillow_turns_8_bit_images(orientation):
    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    picture = Image.fromarray(pixels)
    picture.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(picture))
    np.testing.assert_array_equal(sixteen_bit.upright(pixels, orientation), expected)


def test_png_profile_exif_and_orientation_are_kept(tmp_path):
    pixels = _pixels(20, 24, 3)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "TestCam"
    chunks = png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(SRGB))
    chunks += png_chunk(b"eXIf", exif.tobytes().removeprefix(b"Exif\x00\x00"))
    png_16_bit(tmp_path / "in.png", pixels, chunks)
    image = io.read_image_file(tmp_path / "in.png")
    np.testing.assert_array_equal(_exact(image), np.rot90(pixels, -1))  # upright
    io.save_image_file(tmp_path / "out.png", image)
    with Image.open(tmp_path / "out.png") as written:
        assert written.info["icc_profile"] == SRGB
        assert written.getexif()[0x010F] == "TestCam" and written.getexif()[0x0112] == 1
    again = io.read_image_file(tmp_path / "out.png")  # not turned a second time
    np.testing.assert_array_equal(_exact(again), np.rot90(pixels, -1))


def test_tiff_profile_and_description_are_kept_camera_settings_said(tmp_path):
    pixels = _pixels(20, 24, 3)
    tags = [(271, "s", 0, "TestMaker", True)]
    tifffile.imwrite(
        tmp_path / "in.tif",
        pixels,
        photometric="rgb",
        iccprofile=SRGB,
        software="Editor 2",
        extratags=tags,
    )
    image = io.read_image_file(tmp_path / "in.tif")
    assert image.notes == ()
    io.save_image_file(tmp_path / "out.tif", image)
    with tifffile.TiffFile(tmp_path / "out.tif") as written:
        page = written.pages[0]
        assert page.tags["InterColorProfile"].value == SRGB
        assert page.tags["Make"].value == "TestMaker"
        assert page.tags["Software"].value == "Editor 2"
    settings = Image.Exif()
    settings[0x010F] = "TestMaker"
    assert not sixteen_bit.has_camera_settings(settings.tobytes())
    settings.get_ifd(0x8769)[0x829A] = 0.01  # exposure time
    assert sixteen_bit.has_camera_settings(settings.tobytes())


def test_without_the_codecs_colour_is_read_in_8_bits_and_said(tmp_path, monkeypatch):
    pixels = _pixels(20, 24, 3)
    png_16_bit(tmp_path / "in.png", pixels)
    deep = io.read_image_file(tmp_path / "in.png")
    monkeypatch.setattr(io, "SIXTEEN_BIT_COLOUR", False)
    image = io.read_image_file(tmp_path / "in.png")
    assert image.bit_depth == 8 and any("16-bit colour" in note for note in image.notes)
    assert np.abs(image.pixels - pixels / 65535).max() <= 1 / 255
    with pytest.raises(ValueError, match="pip install imagecodecs"):
        io.save_image_file(tmp_path / "out.png", deep)
    assert list(tmp_path.iterdir()) == [tmp_path / "in.png"]


@pytest.mark.parametrize("suffix", ["jpg", "avif", "webp", "bmp", "heic", "jxl"])
def test_sixteen_bit_colour_goes_only_to_png_or_tiff(tmp_path, suffix):
    image = io.ImageFile(_pixels(8, 8, 3) / 65535, bit_depth=16)
    with pytest.raises(ValueError, match=r"use \.png or \.tif"):
        io.save_image_file(tmp_path / f"out.{suffix}", image)
    assert list(tmp_path.iterdir()) == []
