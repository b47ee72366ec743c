"""Reading and writing images as float32 arrays in [0, 1] (H, W, C)."""

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file."""


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


def list_images(folder, skip_unreadable=False):
    """Sorted image files in `folder` (not recursive), each checked to open as an image.

    Hidden files are ignored. Every other file must be a readable image.

    Args:
        folder: a directory.
        skip_unreadable: if True, files that are not readable images are skipped with a warning;
            if False (default) the first one raises.

    Raises:
        FileNotFoundError: if `folder` is not a directory.
        ImageReadError: naming an unreadable file (unless skipped).
        ValueError: if no image is found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder not found: {folder}")
    paths = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            with Image.open(path) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            message = f"{path}: not a readable image ({error})"
            if not skip_unreadable:
                raise ImageReadError(message) from error
            warnings.warn(f"skipping {message}", stacklevel=2)
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
    suffix = path.suffix or ".png"
    handle, temporary = tempfile.mkstemp(suffix=suffix, dir=path.parent or ".")
    os.close(handle)
    try:
        Image.fromarray(array).save(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path, text):
    """Writes `text` to `path` through a temporary file and a rename: never a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
