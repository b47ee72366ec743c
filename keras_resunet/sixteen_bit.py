"""16-bit colour PNG and TIFF files, which Pillow reads and writes only in 8 bits per channel:
PNG through imagecodecs, TIFF through tifffile (whose LZW and other codecs are imagecodecs').
The pixels are uint16 arrays (H, W, 3) or with alpha (H, W, 4); metadata is passed as bytes."""

import struct
import zlib

import numpy as np

FORMATS = ("PNG", "TIFF")


def available():
    """Whether 16-bit colour can be read and written here (imagecodecs and tifffile)."""
    try:
        import imagecodecs  # noqa: F401
        import tifffile  # noqa: F401
    except ImportError:
        return False
    return True


def read(path, image_format):
    """The uint16 (H, W, 3 or 4) pixels of a 16-bit colour PNG or TIFF, as stored (not turned
    upright).

    Raises:
        ValueError: for a TIFF whose first page is not RGB(A) colour of 16 bits per channel.
    """
    if image_format == "PNG":
        import imagecodecs

        with open(path, "rb") as handle:
            array = imagecodecs.png_decode(handle.read())
    else:
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages[0]
            array = page.asarray()
            if page.axes.startswith("S"):  # planar: one plane per channel
                array = np.moveaxis(array, 0, -1)
    if array.dtype != np.uint16 or array.ndim != 3 or array.shape[-1] < 3:
        raise ValueError(f"not 16-bit RGB colour ({array.dtype}, shape {array.shape})")
    return array[..., :4]


def write(path, array, image_format, icc_profile=None, exif=None):
    """Writes uint16 (H, W, 3 or 4) pixels as a 16-bit PNG or TIFF (deflate-compressed), with
    the colour profile, and the EXIF block (PNG) or its description tags (TIFF: tifffile writes
    no EXIF sub-directory)."""
    array = np.ascontiguousarray(array, dtype=np.uint16)
    if image_format == "PNG":
        import imagecodecs

        encoded = imagecodecs.png_encode(array)
        path.write_bytes(_with_chunks(encoded, _png_metadata(icc_profile, exif)))
        return
    import tifffile

    tags = _tiff_description_tags(exif)
    software = next((value for tag, _, _, value, _ in tags if tag == _SOFTWARE), False)
    tifffile.imwrite(
        path,
        array,
        photometric="rgb",
        compression="adobe_deflate",
        extrasamples=("unassalpha",) if array.shape[-1] == 4 else None,
        iccprofile=icc_profile,
        software=software,  # the photo's, not tifffile's name
        extratags=[tag for tag in tags if tag[0] != _SOFTWARE],
        metadata=None,
    )


def _png_chunk(kind, body):
    data = kind + body
    return struct.pack(">I", len(body)) + data + struct.pack(">I", zlib.crc32(data))


def _png_metadata(icc_profile, exif):
    chunks = b""
    if icc_profile:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile))
    if exif:
        chunks += _png_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00"))
    return chunks


def _with_chunks(png, chunks):
    """`png` with `chunks` right after its header chunk (IHDR: 8 + 25 bytes in), where the PNG
    specification wants iCCP."""
    return png[:33] + chunks + png[33:]


# IFD0 text tags of an EXIF block that describe the photo: make, model, software, date, artist,
# description, copyright
_SOFTWARE = 305
_DESCRIPTION_TAGS = (271, 272, _SOFTWARE, 306, 315, 270, 33432)


def _tiff_description_tags(exif):
    if not exif:
        return ()
    from PIL import Image

    tags = Image.Exif()
    tags.load(exif)
    return [
        (tag, "s", 0, str(tags[tag]), True)
        for tag in _DESCRIPTION_TAGS
        if isinstance(tags.get(tag), str) and tags[tag].isascii()
    ]


def has_camera_settings(exif):
    """Whether an EXIF block holds camera settings or a location (its EXIF or GPS
    sub-directory), which a 16-bit colour TIFF written here does not keep."""
    if not exif:
        return False
    from PIL import Image

    tags = Image.Exif()
    tags.load(exif)
    return 0x8769 in tags or 0x8825 in tags


def upright(array, orientation):
    """`array` (H, W, ...) turned as the EXIF orientation (1-8) says, as Pillow's
    `ImageOps.exif_transpose` turns an image."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(turned.get(orientation, lambda a: a)(array))
