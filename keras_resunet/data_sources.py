"""Where the datasets come from: the data root (an argument, $KERAS_RESUNET_DATA, or
../shared/datasets beside the checkout) and the BSDS300 downloader, checked by digest."""

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

DATA_ROOT_ENV = "KERAS_RESUNET_DATA"
BSDS300_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/BSDS300-images.tgz"
# SHA-256 over the sorted "relative/path sha256" lines of the 300 extracted images, computed on
# the copy in ../shared/datasets/BSDS300 (see `tree_digest`); it checks what was extracted.
BSDS300_IMAGES_DIGEST = "777515b52731e92d655edee528e2c50a93ba825bd886ec817de84fe13877e5a3"


def default_data_root():
    """`../shared/datasets` beside the project checkout, or None when absent."""
    candidate = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return candidate if candidate.is_dir() else None


def resolve_data_root(data_root=None):
    """The dataset root: the explicit argument, else $KERAS_RESUNET_DATA, else ../shared/datasets.

    Raises:
        FileNotFoundError: if the chosen root does not exist, or no root is found.
    """
    for source, value in (("argument", data_root), (DATA_ROOT_ENV, os.environ.get(DATA_ROOT_ENV))):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"Data root from {source} does not exist: {path}")
            return path
    fallback = default_data_root()
    if fallback is None:
        raise FileNotFoundError(
            f"No dataset root: pass --data-root, set ${DATA_ROOT_ENV}, or place the data in "
            "../shared/datasets (BSDS300 can be fetched with `resunet download-bsds300`)."
        )
    return fallback


def resolve_folder(folder, data_root=None):
    """`folder` as given when absolute, else under the dataset root (`resolve_data_root`, which
    is only looked up for a relative folder)."""
    folder = Path(folder).expanduser()
    return folder if folder.is_absolute() else resolve_data_root(data_root) / folder


def tree_digest(folder, suffixes=(".jpg",)):
    """SHA-256 of the sorted 'relative/path file-sha256' lines of files under `folder`."""
    folder = Path(folder)
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes):
        lines.append(f"{path.relative_to(folder).as_posix()} {_file_sha256(path)}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def download_bsds300(destination, url=BSDS300_URL, expected_digest=BSDS300_IMAGES_DIGEST):
    """Downloads and extracts BSDS300 to `destination/BSDS300`, verifying the image digest.

    Extraction happens in a temporary folder that is renamed into place only after the check,
    so an interrupted or corrupt download leaves nothing behind.

    Returns:
        Path of the extracted `BSDS300` folder.

    Raises:
        FileExistsError: if `destination/BSDS300` already exists.
        ValueError: if the images' digest does not match.
    """
    destination = Path(destination)
    target = destination / "BSDS300"
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination) as scratch:
        archive = Path(scratch) / "BSDS300-images.tgz"
        with urllib.request.urlopen(url) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        extracted = Path(scratch) / "BSDS300"
        digest = tree_digest(extracted / "images")
        if digest != expected_digest:
            raise ValueError(f"BSDS300 digest mismatch: got {digest}, expected {expected_digest}")
        extracted.rename(target)
    return target


def _file_sha256(path):
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()
