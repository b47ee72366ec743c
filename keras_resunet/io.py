"""Reading and writing images as float32 arrays in [0, 1] (H, W, C)."""

import contextlib
import dataclasses
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from keras_resunet import camera_raw, sixteen_bit

IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp",
    ".gif", ".avif", ".heic", ".heif", ".jxl", *camera_raw.SUFFIXES,
)  # fmt: skip
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
HEIF_SUFFIXES = (".heic", ".heif")
# Lossy formats, written at a quality; of them HEIF holds 16-bit gray (in 10 bits), JPEG XL in 16
_LOSSY_SUFFIXES = (*JPEG_SUFFIXES, ".avif", *HEIF_SUFFIXES, ".jxl")
_EIGHT_BIT_SUFFIXES = (*JPEG_SUFFIXES, ".avif")


def _heif_plugin():
    """Registers the pillow-heif plugin, through which Pillow reads and writes HEIC/HEIF (the
    format of iPhone photos); False where it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _jxl_plugin():
    """Imports pillow-jxl-plugin, which registers JPEG XL (written by Lightroom, Photoshop and
    GIMP) with Pillow; False where it is not installed."""
    try:
        import pillow_jxl  # noqa: F401  registers on import
    except ImportError:
        return False
    return True


HEIF_READABLE = _heif_plugin()
HEIF_MISSING = "HEIC/HEIF needs the pillow-heif package (pip install pillow-heif)"
JXL_READABLE = _jxl_plugin()
JXL_MISSING = "JPEG XL needs the pillow-jxl-plugin package (pip install pillow-jxl-plugin)"
RAW_READABLE = camera_raw.available()
SIXTEEN_BIT_COLOUR = sixteen_bit.available()
SIXTEEN_BIT_MISSING = (
    "16-bit colour needs the imagecodecs and tifffile packages (pip install imagecodecs tifffile)"
)


def missing_plugin(suffix):
    """Why a file of `suffix` cannot be read or written here (its plugin is not installed), or
    None."""
    suffix = suffix.lower()
    if suffix in HEIF_SUFFIXES and not HEIF_READABLE:
        return HEIF_MISSING
    if suffix == ".jxl" and not JXL_READABLE:
        return JXL_MISSING
    if suffix in camera_raw.SUFFIXES and not RAW_READABLE:
        return camera_raw.MISSING
    return None


def output_name(path):
    """The file name the restored copy of `path` gets: its own, or for a camera raw file (which
    cannot be written) its stem as a TIFF."""
    path = Path(path)
    if path.suffix.lower() in camera_raw.SUFFIXES:
        return path.stem + camera_raw.OUTPUT_SUFFIX
    return path.name


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file."""


class SkippedImageWarning(UserWarning):
    """A file in an image folder that is not a readable image was left out."""


def to_float01(array):
    """uint8 / uint16 / float array -> float32 in [0, 1] (floats are passed through)."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    return array.astype(np.float32)


def to_uint8(array):
    """float array in [0, 1] -> uint8, clipped and rounded."""
    return np.round(np.clip(np.asarray(array, dtype=np.float32), 0, 1) * 255).astype(np.uint8)


def read_image(path, channels=3):
    """Reads an image file as float32 (H, W, channels) in [0, 1].

    Args:
        path: file path.
        channels: 1 (converted to luminance) or 3 (converted to RGB; gray is replicated).

    Raises:
        ImageReadError: if the file is missing, not an image or corrupt (the message names it).
    """
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels!r}")
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float32) / 65535.0
                array = array[..., None]
                return array if channels == 1 else np.repeat(array, 3, axis=-1)
            converted = image.convert("L" if channels == 1 else "RGB")
            array = np.asarray(converted)
    except FileNotFoundError as error:
        raise ImageReadError(f"{path}: file not found") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from error
    if array.ndim == 2:
        array = array[..., None]
    return to_float01(array)


def list_images(folder, skip_unreadable=False, recursive=False):
    """Sorted image files in `folder`, each checked to open as an image.

    Hidden files and folders are ignored. Every other file must be a readable image.

    Args:
        folder: a directory.
        skip_unreadable: if True, files that are not readable images are skipped with a warning;
            if False (default) the first one raises.
        recursive: also list the images of sub-folders (sorted by relative path).

    Raises:
        FileNotFoundError: if `folder` is not a directory.
        ImageReadError: naming an unreadable file (unless skipped).
        ValueError: if no image is found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder not found: {folder}")
    paths = []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    for path in sorted(candidates):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if hidden or not path.is_file():
            continue
        try:
            with Image.open(path) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            message = f"{path}: not a readable image ({error})"
            if not skip_unreadable:
                raise ImageReadError(message) from error
            warnings.warn(f"skipping {message}", SkippedImageWarning, stacklevel=2)
            continue
        paths.append(path)
    if not paths:
        raise ValueError(f"No images found in {folder}")
    return paths


def save_image(path, image):
    """Writes a float [0, 1] (H, W, C) image as 8-bit; atomic (temp file, then rename)."""
    path = Path(path)
    array = to_uint8(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    _save_atomically(Image.fromarray(array), path)


@dataclasses.dataclass
class ImageFile:
    """An image as read from disk, kept in its own mode so it can be written back the same way.

    Attributes:
        pixels: float32 (H, W, 1) for gray or (H, W, 3) for color, in [0, 1], upright (the
            EXIF orientation applied).
        alpha: float32 (H, W, 1) in [0, 1], or None.
        bit_depth: 8 or 16 (16-bit gray through Pillow; 16-bit colour PNG and TIFF through
            `sixteen_bit`, camera raw files through `camera_raw`).
        icc_profile: the embedded colour profile (bytes), or None.
        exif: the EXIF block (bytes, orientation reset to upright), or None.
        notes: what reading changed that the output cannot restore (a colour space converted,
            16-bit colour read as 8 bits), to tell the user.
        lossless: the file was stored losslessly (a WebP): write it back losslessly.
        stored_quality: for a file a lossy codec wrote, its quality (JPEG: 1-100, estimated from
            its quantization tables; 0 where the codec does not say: HEIC, AVIF, lossy WebP,
            JPEG XL); None for lossless files.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    notes: tuple = ()
    lossless: bool = False
    stored_quality: int | None = None

    def with_pixels(self, pixels):
        """The same file description (mode, alpha, metadata) with other pixels."""
        return dataclasses.replace(self, pixels=pixels)


# Modes whose values are not image intensities in a range we can write back faithfully.
_UNSUPPORTED_MODES = {
    "F": "32-bit float images are not supported; save it as 16-bit PNG or TIFF",
}


def read_image_file(path, max_pixels=None):
    """Reads an image keeping its mode: gray stays gray, RGBA keeps its alpha, 16-bit gray and
    colour keep 16 bits. Palette images become RGB(A); CMYK and other modes become RGB. The EXIF
    orientation is applied (the pixels are upright), and the colour profile and EXIF data are
    kept. A camera raw file is developed into 16-bit sRGB (`camera_raw`).

    Args:
        path: the file.
        max_pixels: the largest image accepted (Pillow's own decompression-bomb limit when None).

    Raises:
        ImageReadError: if the file is missing, not an image, corrupt, larger than `max_pixels`,
            has several frames (a multi-page TIFF) or a mode that cannot be restored faithfully
            (the message names the file).
    """
    path = Path(path)
    if missing := missing_plugin(path.suffix):
        raise ImageReadError(f"{path}: {missing}")
    if path.suffix.lower() in camera_raw.SUFFIXES:
        return _read_camera_raw(path, max_pixels)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        if max_pixels is not None:
            Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            # the explicit check below replaces Pillow's decompression-bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ImageReadError(
                    f"{path}: too large ({image.width}x{image.height} pixels; the limit is "
                    f"{max_pixels:,})"
                )
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise ImageReadError(
                    f"{path}: holds {frames} pages or frames; restore them as separate files"
                )
            if image.mode in _UNSUPPORTED_MODES:
                raise ImageReadError(f"{path}: {_UNSUPPORTED_MODES[image.mode]}")
            image.load()
            source_format, notes = image.format, []
            stored_quality = _stored_quality(image, path)
            icc_profile = image.info.get("icc_profile")
            exif = image.getexif()
            if source_format == "TIFF":
                # a TIFF's own layout tags come back as "EXIF"; written into another file they
                # describe the wrong pixels (readers then refuse it)
                for tag in _TIFF_LAYOUT_TAGS & set(exif):
                    del exif[tag]
            deep = _sixteen_bit_pixels(path, image) if _sixteen_bit_colour(path, image) else None
            if deep is not None:
                orientation = exif.get(_ORIENTATION, 1)
                if exif:
                    exif[_ORIENTATION] = 1
                if source_format == "TIFF" and sixteen_bit.has_camera_settings(exif.tobytes()):
                    notes.append(
                        "its EXIF camera settings and location are not written into a 16-bit "
                        "colour TIFF (its make, model, date and description are)"
                    )
                return _sixteen_bit_file(deep, orientation, icc_profile, exif, notes)
            if _sixteen_bit_colour(path, image):
                notes.append("16-bit colour is read as 8 bits per channel: written in 8 bits")
            elif (
                source_format == "HEIF"
                and image.info.get("bit_depth", 8) > 8
                and image.mode != "I;16"
            ):
                depth = image.info["bit_depth"]
                notes.append(f"{depth}-bit colour is read as 8 bits per channel: written in 8 bits")
            upright = ImageOps.exif_transpose(image)
            if upright is not None:
                image = upright
            if exif:
                exif[_ORIENTATION] = 1
            exif = exif.tobytes() if exif else None
            if image.mode not in _KEPT_MODES:
                image, icc_profile, note = _to_srgb(image, icc_profile)
                notes.append(note)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image).astype(np.float64)
                if array.min() < 0 or array.max() > 65535:
                    raise ImageReadError(
                        f"{path}: 32-bit integer values outside 0-65535 are not supported; "
                        "save it as 16-bit PNG or TIFF"
                    )
                array = (array / 65535.0).astype(np.float32)
                icc_profile = _matching_profile(icc_profile, "GRAY", notes)
                return ImageFile(array[..., None], None, 16, icc_profile, exif, tuple(notes))
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            if image.mode in ("1", "L", "LA"):
                array = np.asarray(image.convert("LA"))
                color, alpha = array[..., :1], array[..., 1:]
                has_alpha = image.mode == "LA"
            else:
                has_alpha = image.mode in ("RGBA", "PA", "RGBa", "La")
                array = np.asarray(image.convert("RGBA"))
                color, alpha = array[..., :3], array[..., 3:]
    except FileNotFoundError as error:
        raise ImageReadError(f"{path}: file not found") from error
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"{path}: too large ({error})") from error
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from error
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    alpha = to_float01(alpha) if has_alpha else None
    icc_profile = _matching_profile(icc_profile, "GRAY" if color.shape[-1] == 1 else "RGB ", notes)
    lossless = source_format == "WEBP" and stored_quality is None
    return ImageFile(
        to_float01(color), alpha, 8, icc_profile, exif, tuple(notes), lossless, stored_quality
    )


def _read_camera_raw(path, max_pixels):
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    try:
        pixels = camera_raw.develop(path, max_pixels)
    except camera_raw.RawReadError as error:
        raise ImageReadError(f"{path}: {error}") from error
    profile = _srgb_profile()
    return ImageFile(to_float01(pixels), None, 16, profile, None, (camera_raw.DEVELOPED,))


def _sixteen_bit_pixels(path, image):
    """The uint16 pixels of a 16-bit colour PNG or TIFF, or None where they cannot be read in
    16 bits here (the caller then reads 8 bits through Pillow and says so)."""
    if not SIXTEEN_BIT_COLOUR or image.format not in sixteen_bit.FORMATS:
        return None
    try:
        return sixteen_bit.read(path, image.format)
    except (ValueError, OSError, KeyError, RuntimeError):
        return None


def _sixteen_bit_file(deep, orientation, icc_profile, exif, notes):
    deep = to_float01(sixteen_bit.upright(deep, orientation))
    alpha = deep[..., 3:] if deep.shape[-1] == 4 else None
    icc_profile = _matching_profile(icc_profile, "RGB ", notes)
    exif = exif.tobytes() if exif else None
    return ImageFile(deep[..., :3], alpha, 16, icc_profile, exif, tuple(notes))


def _srgb_profile():
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# Modes read as they are (palette images are expanded; 16-bit gray is read above)
_KEPT_MODES = {
    "1",
    "L",
    "LA",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "La",
    "I;16",
    "I;16B",
    "I;16L",
    "I",
}
# TIFF tags that describe a file's pixel layout, not the photo
_TIFF_LAYOUT_TAGS = {
    254,
    255,
    256,
    257,
    258,
    259,
    262,
    263,
    266,
    273,
    277,
    278,
    279,
    280,
    281,
    284,
    317,
    320,
    322,
    323,
    324,
    325,
    338,
    339,
    340,
    341,
    347,
    529,
    530,
    531,
    532,
}


def _to_srgb(image, icc_profile):
    """An image of another colour space (CMYK, YCbCr, LAB) as RGB: through its embedded profile
    into sRGB where it has one (the output then carries an sRGB profile), else Pillow's own
    conversion. Returns (image, profile, note)."""
    mode = image.mode
    if icc_profile:
        from io import BytesIO

        from PIL import ImageCms

        try:
            source = ImageCms.ImageCmsProfile(BytesIO(icc_profile))
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            return converted, srgb.tobytes(), f"{mode} converted to sRGB through its profile"
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return image.convert("RGB"), None, f"{mode} converted to RGB (its colour profile dropped)"


def _matching_profile(icc_profile, space, notes):
    """`icc_profile` when it describes `space` ("RGB " or "GRAY", the ICC header's colour space),
    else None with a note: a profile of another space mislabels the pixels."""
    if not icc_profile or len(icc_profile) < 20:
        return icc_profile or None
    found = icc_profile[16:20].decode("ascii", "replace")
    if found == space:
        return icc_profile
    notes.append(
        f"its {found.strip()} colour profile does not fit the {space.strip()} pixels: dropped"
    )
    return None


def _sixteen_bit_colour(path, image):
    """Whether the file holds 16-bit colour that Pillow reads as 8 bits (PNG, TIFF)."""
    if image.mode not in ("RGB", "RGBA"):
        return False
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    if image.format == "PNG":
        with open(path, "rb") as handle:
            header = handle.read(26)
        return len(header) == 26 and header[24] == 16
    return False


# The sum of the IJG luminance quantization table (ITU T.81 Annex K), which libjpeg scales by
# (200 - 2q)% for quality q >= 50 and by 5000/q % below.
_IJG_LUMA_SUM = 3688
# Formats a lossy codec wrote whose quality the file does not give.
_LOSSY_FORMATS = {"HEIF", "AVIF", "JXL"}


def jpeg_quality(quantization):
    """The libjpeg quality (1-100) whose luminance table matches the sum of the first table of
    `quantization` (Pillow's `image.quantization`); other encoders' tables get the nearest."""
    scale = 100 * sum(quantization[min(quantization)]) / _IJG_LUMA_SUM
    quality = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return int(np.clip(round(quality), 1, 100))


def _stored_quality(image, path):
    """ImageFile.stored_quality of an open Pillow image."""
    if image.format in ("JPEG", "MPO"):
        tables = getattr(image, "quantization", None)
        return jpeg_quality(tables) if tables else 0
    if image.format in _LOSSY_FORMATS:
        return 0
    if image.format == "WEBP":
        return None if _webp_lossless(path) else 0
    return None


def _webp_lossless(path):
    with open(path, "rb") as handle:
        head = handle.read(4096)
    return b"VP8L" in head and b"VP8 " not in head


_ORIENTATION = 0x0112
# Formats whose Pillow writers take `icc_profile=` and `exif=`.
# (the JPEG XL writer takes EXIF; it writes the colour space as libjxl encodes it, not the
# profile given)
_METADATA_FORMATS = (
    *JPEG_SUFFIXES,
    ".png",
    ".tif",
    ".tiff",
    ".webp",
    ".avif",
    *HEIF_SUFFIXES,
    ".jxl",
)


def save_image_file(path, image, quality=95):
    """Writes an `ImageFile` in its mode (gray/RGB, alpha, 8 or 16 bits) with its colour profile
    and EXIF data where the format holds them, atomically.

    The format follows the suffix of `path`; JPEG has no alpha, JPEG and AVIF hold no 16-bit
    pixels here, and 16-bit colour is written as PNG or TIFF only, so others are refused. Lossy
    formats are written at `quality`.

    Raises:
        ValueError: if the format cannot hold the image's mode, or HEIC/HEIF or JPEG XL is
            asked for without its plugin.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    pixels = np.clip(np.asarray(image.pixels, dtype=np.float32), 0, 1)
    jpeg = suffix in JPEG_SUFFIXES
    if jpeg and image.alpha is not None:
        raise ValueError(f"{path}: JPEG cannot store alpha; use .png or .tif")
    if suffix in _EIGHT_BIT_SUFFIXES and image.bit_depth == 16:
        raise ValueError(
            f"{path}: {suffix[1:].upper()} cannot store 16-bit images; use .png or .tif"
        )
    if missing := missing_plugin(suffix):
        raise ValueError(f"{path}: {missing}")
    if image.bit_depth == 16 and pixels.shape[-1] == 3:
        _save_sixteen_bit_colour(path, image, pixels)
        return
    if image.bit_depth == 16:
        converted = Image.fromarray(np.round(pixels[..., 0] * 65535).astype(np.uint16))
    else:
        array = to_uint8(pixels)
        if image.alpha is not None:
            array = np.concatenate([array, to_uint8(image.alpha)], axis=-1)
        if array.shape[-1] == 1:
            array = array[..., 0]
        converted = Image.fromarray(array)
    options = {"quality": quality} if suffix in _LOSSY_SUFFIXES else {}
    if suffix == ".webp":
        options = {"lossless": True} if image.lossless else {"quality": quality}
    if suffix == ".jxl" and quality >= 100:  # libjxl's quality 100 is its lossless mode
        options = {"lossless": True}
    if suffix in _METADATA_FORMATS:
        if image.icc_profile:
            options["icc_profile"] = image.icc_profile
        if image.exif:
            options["exif"] = image.exif
    _save_atomically(converted, path, options)


def _save_sixteen_bit_colour(path, image, pixels):
    suffix = path.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise ValueError(f"{path}: 16-bit colour is written as PNG or TIFF; use .png or .tif")
    if not SIXTEEN_BIT_COLOUR:
        raise ValueError(f"{path}: {SIXTEEN_BIT_MISSING}")
    deep = np.round(pixels * 65535).astype(np.uint16)
    if image.alpha is not None:
        alpha = np.round(np.clip(image.alpha, 0, 1) * 65535).astype(np.uint16)
        deep = np.concatenate([deep, alpha], axis=-1)
    image_format = "PNG" if suffix == ".png" else "TIFF"
    with atomic_write(path) as temporary:
        sixteen_bit.write(temporary, deep, image_format, image.icc_profile, image.exif)


def _save_atomically(image, path, options=None):
    with atomic_write(path, suffix=path.suffix or ".png") as temporary:
        image.save(temporary, **(options or {}))


def current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(path, suffix=None):
    """Yields a hidden temporary path beside `path`; on success it gets the permissions a new file
    gets under the umask and is renamed to `path`, on any error (or interruption) it is removed.
    So a reader never sees a half-written file, and a failed write leaves none behind.

    Args:
        path: the final file.
        suffix: the temporary file's suffix (writers that pick the format from it need the
            final one); default `path`'s.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent
    )
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomically(path, text):
    """Writes `text` to `path` through a temporary file and a rename: never a truncated file."""
    with atomic_write(path) as temporary:
        temporary.write_text(text)
