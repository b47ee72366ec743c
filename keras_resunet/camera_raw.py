"""Camera raw files (DNG, CR2/CR3, NEF, ARW, RAF, ...), developed by LibRaw through rawpy into
16-bit sRGB: the camera's white balance, no brightening (highlights kept), upright. What is
restored from one is written as a 16-bit TIFF (a raw file cannot be written back)."""

import numpy as np

SUFFIXES = (
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
    ".rw2", ".rwl", ".pef", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".erf", ".kdc", ".dcr",
    ".mos", ".mrw",
)  # fmt: skip
OUTPUT_SUFFIX = ".tif"
MISSING = "camera raw files need the rawpy package (pip install rawpy)"
DEVELOPED = "developed by LibRaw (camera white balance, sRGB, 16 bits): written as 16-bit TIFF"


def available():
    try:
        import rawpy  # noqa: F401
    except ImportError:
        return False
    return True


class RawReadError(ValueError):
    """LibRaw could not read or develop the file."""


def develop(path, max_pixels=None):
    """The developed photo: uint16 (H, W, 3), sRGB, upright.

    Raises:
        RawReadError: for a file LibRaw cannot read, or one over `max_pixels`.
    """
    import rawpy

    try:
        with rawpy.imread(str(path)) as raw:
            sizes = raw.sizes
            if max_pixels is not None and sizes.width * sizes.height > max_pixels:
                raise RawReadError(
                    f"too large ({sizes.width}x{sizes.height} pixels; the limit is {max_pixels:,})"
                )
            pixels = raw.postprocess(
                output_bps=16,
                use_camera_wb=True,
                no_auto_bright=True,
                output_color=rawpy.ColorSpace.sRGB,
                gamma=(2.4, 12.92),  # the sRGB curve the output's profile says
            )
    except rawpy.LibRawError as error:
        raise RawReadError(
            f"not a camera raw file LibRaw reads ({type(error).__name__}: {error})"
        ) from error
    return np.asarray(pixels, dtype=np.uint16)
