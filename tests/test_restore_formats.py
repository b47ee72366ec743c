"""Every mode and format a camera or editor writes, generated with Pillow (and tifffile, for
16-bit colour and a camera raw file): each file is restored
faithfully (format, mode, size, bit depth, a colour profile that fits its pixels, readable by
Pillow again) or named with its reason, and the summary counts every file given."""

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from keras_resunet.restore import RestoreOptions, restore_files, summarize
from tests.support import camera_dng, png_16_bit, smooth_image

FORMATS = {
    "png": "PNG", "jpg": "JPEG", "tif": "TIFF", "webp": "WEBP", "bmp": "BMP", "gif": "GIF",
    "avif": "AVIF", "heic": "HEIF", "jxl": "JXL", "jfif": "JPEG",
}  # fmt: skip
MODES = ["1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "CMYK", "I;16"]


def _shown_mode(image):
    """The mode a file comes back in: what it holds, palettes and other colour spaces expanded
    to what they show, 1-bit as 8-bit gray."""
    if image.mode in ("P", "PA"):
        shown = image.convert("RGB")
        gray = shown == shown.convert("L").convert("RGB")  # a gray palette shows gray
        return ("L" if gray else "RGB") + ("A" if "transparency" in image.info else "")
    return {"1": "L", "CMYK": "RGB", "I": "I;16", "I;16B": "I;16"}.get(image.mode, image.mode)


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _picture(mode):
    rgb = (smooth_image(32, 40, seed=5) * 255).round().astype(np.uint8)
    picture = Image.fromarray(rgb)
    if mode == "P+transparency":
        picture = picture.convert("P", palette=Image.Palette.ADAPTIVE)
        picture.info["transparency"] = 0
        return picture
    if mode == "I;16":
        return Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    if mode in ("LA", "RGBA"):
        base = picture.convert(mode[:-1])
        base.putalpha(Image.fromarray(np.full(rgb.shape[:2], 180, np.uint8)))
        return base
    return picture.convert(mode)


def _write(folder, mode, suffix):
    """The file, or None where Pillow cannot write this mode in this format."""
    picture = _picture(mode)
    path = folder / f"{mode.replace(';', '').replace('+', '_')}.{suffix}"
    try:
        picture.save(path, FORMATS[suffix])
        with Image.open(path) as check:
            check.load()
    except (OSError, ValueError, KeyError, NotImplementedError):  # the JPEG XL plugin's refusal
        path.unlink(missing_ok=True)
        return None
    return path


@pytest.fixture(scope="module")
def restored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    written = {}
    for mode in MODES:
        for suffix in FORMATS:
            path = _write(folder, mode, suffix)
            if path is not None:
                written[path.name] = mode
    # an animated GIF, 16-bit RGB(A) PNG and TIFF, a camera raw file, a CMYK JPEG carrying an
    # RGB profile, a stray file
    frames = [_picture("RGB").convert("P"), _picture("L").convert("P")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    deep = np.round(smooth_image(32, 40, channels=4, seed=6) * 65535).astype(np.uint16)
    png_16_bit(folder / "deep_rgb.png", deep[..., :3])
    tifffile.imwrite(folder / "deep_rgba.tif", deep, photometric="rgb", extrasamples=["unassalpha"])
    camera_dng(folder / "camera.dng", smooth_image(32, 40, seed=7))
    _picture("CMYK").save(folder / "cmyk_profile.jpg", icc_profile=SRGB)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path_factory.mktemp("out")
    lines = []
    results = restore_files([folder], out, RestoreOptions(model="nlm", sigma=0.03), lines.append)
    return folder, out, written, {r.source.name: r for r in results}, lines


def test_the_matrix_covers_the_usual_cases(restored):
    _, _, written, _, _ = restored
    assert len(written) >= 30
    for mode in MODES:
        assert any(m == mode for m in written.values()), mode
    for suffix in FORMATS:
        assert any(name.endswith(suffix) for name in written), suffix


def test_each_file_is_restored_faithfully(restored):
    folder, out, written, results, _ = restored
    for name, mode in written.items():
        result = results[name]
        assert result.error is None, (name, result.error)
        with Image.open(folder / name) as source, Image.open(out / name) as output:
            output.load()
            assert output.format == source.format, name
            assert output.size == source.size, name
            expected = _shown_mode(source)
            got = _shown_mode(output) if source.format == "GIF" else output.mode
            assert got == expected, (name, mode, got, expected)
            profile = output.info.get("icc_profile")
            if profile:
                space = profile[16:20]
                assert space == (b"GRAY" if output.mode in ("L", "LA", "I;16") else b"RGB "), name


def test_conversions_are_said_and_fixed(restored):
    _, out, _, results, lines = restored
    cmyk = results["cmyk_profile.jpg"]
    assert cmyk.error is None and any("CMYK" in note for note in cmyk.notes)
    with Image.open(out / "cmyk_profile.jpg") as output:
        assert output.mode == "RGB"
        profile = output.info.get("icc_profile")
        assert profile is None or profile[16:20] == b"RGB "
    for name, written, channels in (
        ("deep_rgb.png", "deep_rgb.png", 3),
        ("deep_rgba.tif", "deep_rgba.tif", 4),
        ("camera.dng", "camera.tif", 3),
    ):
        assert results[name].error is None, (name, results[name].error)
        pixels = tifffile.imread(out / written) if written.endswith("tif") else None
        if pixels is None:
            pixels = imagecodecs.png_decode((out / written).read_bytes())
        assert pixels.dtype == np.uint16 and pixels.shape == (32, 40, channels), name
    assert "frames" in results["animated.gif"].error
    assert results["notes.txt"].skipped.startswith("not an image file")
    assert any("note: developed by LibRaw" in line for line in lines)


def test_the_summary_counts_every_file_given(restored):
    folder, _, _, results, _ = restored
    given = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert len(results) == len(given)
    summary = summarize(list(results.values()))
    assert f"of {len(given)} inputs" in summary and "failed 1," in summary
