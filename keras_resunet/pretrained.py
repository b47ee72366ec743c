"""The trained models shipped in `saved_models/`, referred to by name.

Each shipped model is a `.keras` file with a model card beside it (`<name>.md`). A source
checkout has them all in `saved_models/`; the wheel carries the default model of each task;
`$KERAS_RESUNET_MODELS` points at another copy (`models_dirs`).
"""

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pretrained:
    """A shipped model: its file name in the models folder, and what it restores.

    `sigma` is the one noise level it was trained for, or None for a noise-level-map model,
    which restores the level it is given (or that `resunet denoise` estimates).
    """

    filename: str
    model: str
    task: str
    sigma: float | None
    description: str

    def degradation(self):
        """What it restores, as a degradation (a noise-level-map model: at sigma 0.1)."""
        from keras_resunet import degradations

        return degradations.make_degradation(self.task, sigma=self.sigma or 0.1)


PRETRAINED = {
    "resunet-denoise": Pretrained(
        "resunet-denoise.keras", "resunet", "denoise", 0.1, "ResUNet, RGB, Gaussian noise sigma 0.1"
    ),
    "resunet-deblur-denoise": Pretrained(
        "resunet-deblur-denoise.keras",
        "resunet",
        "deblur_denoise",
        0.1,
        "ResUNet, RGB, 7x7 Gaussian blur (sigma 1.6) + noise sigma 0.1",
    ),
    "resunet-strong-denoise": Pretrained(
        "resunet-strong-denoise.keras",
        "resunet",
        "denoise",
        0.1,
        "ResUNet (our strong config), RGB, Gaussian noise sigma 0.1",
    ),
    "resunet-strong-deblur-denoise": Pretrained(
        "resunet-strong-deblur-denoise.keras",
        "resunet",
        "deblur_denoise",
        0.1,
        "ResUNet (our strong config), RGB, 7x7 Gaussian blur (sigma 1.6) + noise sigma 0.1",
    ),
    "unet-denoise": Pretrained(
        "unet-denoise.keras", "unet", "denoise", 0.1, "UNet, RGB, Gaussian noise sigma 0.1"
    ),
    "resunet-noise-map": Pretrained(
        "resunet-noise-map.keras",
        "resunet",
        "denoise",
        None,
        "ResUNet with a noise-level-map input, RGB, Gaussian noise of any sigma in [0, 75/255]",
    ),
}

# What `resunet denoise` uses when no model is named: a ResUNet, the best shipped one per task.
# For denoising, the noise-level-map model: any sigma, and ahead of the sigma-0.1 model at 0.1
# (results/noise_levels/README.md).
DEFAULT_FOR_TASK = {
    "denoise": "resunet-noise-map",
    "deblur_denoise": "resunet-strong-deblur-denoise",
}


# A source checkout keeps the models in its saved_models/; an installed wheel carries the default
# model of each task as package data (keras_resunet/saved_models/); $KERAS_RESUNET_MODELS names
# another folder (an offline copy of the repository's saved_models/, with every model).
MODELS_ENV = "KERAS_RESUNET_MODELS"
_CHECKOUT = Path(__file__).resolve().parents[1] / "saved_models"
_PACKAGED = Path(__file__).resolve().parent / "saved_models"


def models_dirs():
    """The folders searched for shipped models, first match first: `$KERAS_RESUNET_MODELS`, then
    the source checkout's `saved_models/`, then the models installed with the package."""
    configured = os.environ.get(MODELS_ENV)
    folders = [Path(configured).expanduser()] if configured else []
    return folders + [folder for folder in (_CHECKOUT, _PACKAGED) if folder.is_dir()]


def models_dir():
    """Where shipped models are written (`experiments.ship`): `$KERAS_RESUNET_MODELS` if set,
    else `saved_models/` of this source checkout."""
    configured = os.environ.get(MODELS_ENV)
    return Path(configured).expanduser() if configured else _CHECKOUT


def locate(name):
    """The file of the shipped model `name` in the first folder of `models_dirs` holding it, or
    None."""
    for folder in models_dirs():
        path = folder / PRETRAINED[name].filename
        if path.is_file():
            return path
    return None


def available():
    """Names of the shipped models whose files are present."""
    return sorted(name for name in PRETRAINED if locate(name) is not None)


def resolve(spec):
    """The `.keras` path for a shipped model name or an existing path.

    Raises:
        ValueError: `spec` is neither a known name nor a `.keras` path.
        FileNotFoundError: the named model (or the path) does not exist.
    """
    if spec in PRETRAINED:
        path = locate(spec)
        if path is None:
            searched = ", ".join(str(folder) for folder in models_dirs()) or "no folder"
            raise FileNotFoundError(
                f"Shipped model {spec!r} is not installed (searched {searched}; present: "
                f"{', '.join(available()) or 'none'}). The package carries the default models; "
                f"for the others set ${MODELS_ENV} to a copy of the repository's saved_models/."
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


def entry_for(spec):
    """The `Pretrained` entry of a shipped model name, or of a path to a shipped model file;
    None for anything else."""
    if spec in PRETRAINED:
        return PRETRAINED[spec]
    path = Path(spec).resolve()
    for name, entry in PRETRAINED.items():
        found = locate(name)
        if found is not None and path == found.resolve():
            return entry
    return None
