"""Blur kernels: NumPy float32 arrays (kh, kw), normalized to sum 1 (Gaussian, box, motion,
handwritten digit, or read from a file)."""

from pathlib import Path

import numpy as np

from keras_resunet.data_sources import resolve_data_root


def normalize_kernel(kernel):
    """Returns `kernel` as float32 scaled to sum 1.

    Raises:
        ValueError: if the kernel is not 2-D, has negative or non-finite entries, or sums to 0.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or min(kernel.shape) < 1:
        raise ValueError(
            f"A blur kernel must be a non-empty 2-D array. Received shape {kernel.shape}"
        )
    if not np.all(np.isfinite(kernel)) or np.any(kernel < 0):
        raise ValueError("A blur kernel must have finite, non-negative entries.")
    total = kernel.sum()
    if total <= 0:
        raise ValueError("A blur kernel must have a positive sum.")
    return (kernel / total).astype(np.float32)


def gaussian_kernel(size=7, sigma=1.6):
    """Isotropic Gaussian kernel of odd `size` and standard deviation `sigma` (pixels)."""
    _check_size(size)
    if sigma <= 0:
        raise ValueError(f"`sigma` must be > 0. Received: sigma={sigma}")
    radius = np.arange(size) - (size - 1) / 2
    profile = np.exp(-0.5 * (radius / sigma) ** 2)
    return normalize_kernel(np.outer(profile, profile))


def box_kernel(size=5):
    """Uniform `size` x `size` kernel."""
    _check_size(size)
    return normalize_kernel(np.ones((size, size)))


def motion_kernel(length=7, angle=0.0, size=None):
    """Linear motion blur: a line of `length` pixels at `angle` degrees through the centre.

    The line is drawn with 4x supersampling so that oblique angles are smooth.
    """
    size = size or (length if length % 2 else length + 1)
    _check_size(size)
    if length < 1:
        raise ValueError(f"`length` must be >= 1. Received: length={length}")
    kernel = np.zeros((size, size))
    centre = (size - 1) / 2
    theta = np.deg2rad(angle)
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length):
        row = round(centre - t * np.sin(theta))
        col = round(centre + t * np.cos(theta))
        if 0 <= row < size and 0 <= col < size:
            kernel[row, col] += 1
    return normalize_kernel(kernel)


def digit_kernel(digit=7, size=7, index=0):
    """A handwritten-digit shaped PSF (the poster's kind), from scikit-learn's 8x8 digits.

    Args:
        digit: int 0-9, which digit.
        size: odd int, kernel side; the 8x8 digit is resampled to it.
        index: which sample of that digit (0 = first in the data set).
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    _check_size(size)
    digits = load_digits()
    samples = digits.images[digits.target == digit]
    if not 0 <= index < len(samples):
        raise ValueError(f"`index` must be in [0, {len(samples)}). Received: index={index}")
    image = Image.fromarray(samples[index].astype(np.float32))
    resized = np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.float64)
    return normalize_kernel(np.clip(resized, 0, None))


def load_kernel(path):
    """Loads a kernel from `.npy`, a text file of numbers (`np.loadtxt`) or a grayscale image,
    normalized to sum 1."""
    return normalize_kernel(read_kernel(path))


def read_kernel(path):
    """A kernel file's values as they are (float64): `.npy`, text (`np.loadtxt`) or an image.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Kernel file not found: {path}")
    try:
        if path.suffix == ".npy":
            kernel = np.load(path)
        elif path.suffix in (".txt", ".csv"):
            kernel = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)
        else:
            from PIL import Image

            with Image.open(path) as image:
                kernel = np.asarray(image.convert("F"))
    except (OSError, ValueError) as error:
        raise ValueError(f"Could not read a kernel from {path}: {error}") from error
    return np.asarray(kernel, dtype=np.float64)


LEVIN_FILE = "kernels/levin09.npz"


def parse_kernel_spec(spec, data_root=None):
    """The kernel a command line names, as given (not normalized; `operators.check_kernel`
    checks and normalizes it):

    - `gaussian:STD`: an isotropic Gaussian of that standard deviation (pixels), 6 STD + 1 wide;
    - `motion:LENGTH[:ANGLE]`: a straight motion blur (degrees);
    - `levin:N`: camera-shake kernel N (0-7) of Levin et al. (CVPR 2009), from
      `kernels/levin09.npz` under the data root;
    - a file: `.npy`, text, or a grayscale image.

    Raises:
        ValueError: a malformed spec; FileNotFoundError: a missing file or data root.
    """
    kind, _, rest = str(spec).partition(":")
    try:
        if kind == "gaussian" and rest:
            std = float(rest)
            if not 0 < std <= 25:
                raise ValueError(f"a Gaussian STD in (0, 25] pixels. Received: {rest}")
            return gaussian_kernel(2 * int(np.ceil(3 * std)) + 1, std).astype(np.float64)
        if kind == "motion" and rest:
            length, _, angle = rest.partition(":")
            return motion_kernel(int(length), float(angle or 0)).astype(np.float64)
        if kind == "levin" and rest:
            index = int(rest)
            with np.load(resolve_data_root(data_root) / LEVIN_FILE) as kernels:
                if f"kernel_{index}" not in kernels:
                    raise ValueError(f"Levin kernels are numbered 0-{len(kernels) - 1}: {index}")
                return np.asarray(kernels[f"kernel_{index}"], dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"--kernel {spec!r}: {error}") from None
    if Path(spec).suffix:
        return read_kernel(spec)
    raise ValueError(
        f"--kernel {spec!r}: give gaussian:STD, motion:LENGTH[:ANGLE], levin:N or a kernel file "
        "(.npy, .txt, .csv or a grayscale image)"
    )


KERNELS = {
    "gaussian": gaussian_kernel,
    "box": box_kernel,
    "motion": motion_kernel,
    "digit": digit_kernel,
}


def make_kernel(name, **kwargs):
    """Builds a named kernel ("gaussian", "box", "motion", "digit") or loads `name` as a file."""
    if name in KERNELS:
        return KERNELS[name](**kwargs)
    if Path(name).suffix:
        return load_kernel(name)
    raise ValueError(f"Unknown kernel {name!r}. Valid names: {sorted(KERNELS)} or a file path")


def _check_size(size):
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"Kernel `size` must be a positive odd int. Received: size={size!r}")
