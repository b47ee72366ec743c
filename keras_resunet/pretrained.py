"""The trained models shipped in `saved_models/`, referred to by name.

Each shipped model is a `.keras` file with a model card beside it (`<name>.md`). The folder is
the repository's `saved_models/`; an installation outside a source checkout points
`$KERAS_RESUNET_MODELS` at a copy of it.
"""

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pretrained:
    """A shipped model: its file name in the models folder, and what it restores."""

    filename: str
    task: str
    sigma: float
    description: str


PRETRAINED = {
    "resunet-denoise": Pretrained(
        "resunet-denoise.keras", "denoise", 0.1, "ResUNet, RGB, Gaussian noise sigma 0.1"
    ),
    "resunet-deblur-denoise": Pretrained(
        "resunet-deblur-denoise.keras",
        "deblur_denoise",
        0.1,
        "ResUNet, RGB, 7x7 Gaussian blur (sigma 1.6) + noise sigma 0.1",
    ),
    "unet-denoise": Pretrained(
        "unet-denoise.keras", "denoise", 0.1, "UNet, RGB, Gaussian noise sigma 0.1"
    ),
}

DEFAULT_FOR_TASK = {"denoise": "resunet-denoise", "deblur_denoise": "resunet-deblur-denoise"}


def models_dir():
    """`$KERAS_RESUNET_MODELS` if set, else `saved_models/` of this source checkout."""
    configured = os.environ.get("KERAS_RESUNET_MODELS")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1] / "saved_models"


def available():
    """Names of the shipped models whose files are present."""
    return sorted(
        name for name, model in PRETRAINED.items() if (models_dir() / model.filename).is_file()
    )


def resolve(spec):
    """The `.keras` path for a shipped model name or an existing path.

    Raises:
        ValueError: `spec` is neither a known name nor a `.keras` path.
        FileNotFoundError: the named model (or the path) does not exist.
    """
    if spec in PRETRAINED:
        path = models_dir() / PRETRAINED[spec].filename
        if not path.is_file():
            raise FileNotFoundError(
                f"Shipped model {spec!r} is not present at {path}. Present: {available() or 'none'}"
            )
        return path
    if str(spec).endswith(".keras"):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"Model file not found: {path}")
        return path
    raise ValueError(
        f"Unknown model {spec!r}: give a .keras path or a shipped model name "
        f"{sorted(PRETRAINED)} (or a classical method: bm3d, nlm)"
    )
