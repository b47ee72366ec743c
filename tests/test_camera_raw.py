"""Camera raw files: developed by LibRaw into 16-bit sRGB, upright, restored into a 16-bit TIFF
of the same stem; unreadable, oversized or unsupported ones are named with their reason."""

from io import BytesIO

import numpy as np
import pytest
import tifffile
from PIL import ImageCms

from keras_resunet import camera_raw, io
from keras_resunet.restore import RestoreOptions, restore_files, summarize
from tests.support import camera_dng


def _scene(height, width):
    """Red rises to the right, green downwards, blue constant."""
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack([columns / width, rows / height, np.full((height, width), 0.4)], -1) * 0.8


@pytest.mark.parametrize("size", [(32, 48), (64, 40)])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_raw_photos_are_developed_upright_in_16_bits(tmp_path, size, orientation):
    camera_dng(tmp_path / "photo.dng", _scene(*size), orientation)
    image = io.read_image_file(tmp_path / "photo.dng")
    height, width = size
    turned = orientation in (6, 8)
    assert image.pixels.shape == ((width, height, 3) if turned else (height, width, 3))
    assert image.bit_depth == 16 and image.alpha is None
    assert image.notes == (camera_raw.DEVELOPED,)
    profile = ImageCms.ImageCmsProfile(BytesIO(image.icc_profile))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
    # the scene's gradients come out where the orientation puts them (away from the border,
    # where demosaicing has fewer neighbours)
    inner = image.pixels[4:-4, 4:-4]
    red_axis, green_axis = (0, 1) if turned else (1, 0)
    red = inner[..., 0].mean(axis=1 - red_axis)
    green = inner[..., 1].mean(axis=1 - green_axis)
    red_sign = 1 if orientation in (1, 6) else -1
    green_sign = 1 if orientation in (1, 8) else -1
    assert np.corrcoef(red, np.arange(red.size))[0, 1] * red_sign > 0.95
    assert np.corrcoef(green, np.arange(green.size))[0, 1] * green_sign > 0.95
    # 16-bit values, not 8-bit ones widened (multiples of 257)
    assert np.mean(np.round(image.pixels * 65535) % 257 != 0) > 0.9


def test_restored_raw_photos_become_16_bit_tiffs(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    camera_dng(folder / "a.dng", _scene(32, 48))
    camera_dng(folder / "b.DNG", _scene(40, 32), orientation=6)
    camera_dng(folder / "c.dng", _scene(32, 32))
    (folder / "c.tif").write_bytes((folder / "c.dng").read_bytes())  # both want c.tif
    (folder / "broken.nef").write_bytes(b"\x00not a raw file" * 64)
    lines = []
    results = {
        r.source.name: r
        for r in restore_files([folder], out, RestoreOptions(model="nlm", sigma=0.03), lines.append)
    }
    for name, shape in (("a", (32, 48, 3)), ("b", (32, 40, 3))):
        assert results[f"{name}.{'DNG' if name == 'b' else 'dng'}"].error is None
        written = tifffile.imread(out / f"{name}.tif")
        assert written.dtype == np.uint16 and written.shape == shape
    assert "same file name" in (results["c.dng"].error or results["c.tif"].error)
    assert "LibRaw" in results["broken.nef"].error
    assert any(camera_raw.DEVELOPED in line for line in lines)
    assert "failed 2," in summarize(list(results.values()))


def test_too_large_and_missing_rawpy_are_refused_by_name(tmp_path, monkeypatch):
    camera_dng(tmp_path / "photo.dng", _scene(32, 48))
    with pytest.raises(io.ImageReadError, match=r"photo\.dng: too large \(48x32"):
        io.read_image_file(tmp_path / "photo.dng", max_pixels=1000)
    with pytest.raises(io.ImageReadError, match="file not found"):
        io.read_image_file(tmp_path / "none.cr2")
    monkeypatch.setattr(io, "RAW_READABLE", False)
    with pytest.raises(io.ImageReadError, match=r"photo\.dng: .*pip install rawpy"):
        io.read_image_file(tmp_path / "photo.dng")


def test_raw_outputs_are_named_as_tiffs():
    assert io.output_name("x/IMG_0001.CR3") == "IMG_0001.tif"
    assert io.output_name("x/photo.png") == "photo.png"
    assert set(camera_raw.SUFFIXES) <= set(io.IMAGE_SUFFIXES)
