"""The `Denoiser` interface every restoration method implements, and its Keras implementations.

A denoiser maps a batch of degraded float32 images (N, H, W, C) in [0, 1] to restored images of
the same shape, and has a `name`. Methods that take the noise level (the classical ones, and
models with a noise-level-map input) give a copy set to another level through `at_sigma`;
models trained for one level ignore it.
"""

import copy
import zipfile
from pathlib import Path

import numpy as np


class Denoiser:
    """Base of every denoiser. Subclasses override `__call__` (batched) or `restore_one`.

    Attributes:
        name: short method name used in tables ("resunet", "nlm", ...).
        channels: the channel count the method needs (1 or 3), or None for any.
        minimum_size: smallest image side the method accepts.
        takes_sigma: whether the method restores for a noise level it is given.
        sigma: the noise level (on the [0, 1] scale) it restores for, when `takes_sigma`.
    """

    takes_sigma = False

    def __init__(self, name, channels=None, minimum_size=1):
        self.name = name
        self.channels = channels
        self.minimum_size = minimum_size
        self.sigma = None

    def __call__(self, images):
        images = np.asarray(images, dtype=np.float32)
        return np.stack([self.restore_one(image) for image in images])

    def restore_one(self, image):
        return self(image[None])[0]

    def at_sigma(self, sigma):
        """This denoiser set to restore noise of level `sigma` (itself if it has one level)."""
        if not self.takes_sigma:
            return self
        other = copy.copy(self)
        other.sigma = float(sigma)
        return other

    def settings(self):
        """The method's parameters (recorded in results, and keys for caches)."""
        return {}


class KerasDenoiser(Denoiser):
    """A Keras image-to-image model as a denoiser (batched `predict_on_batch`).

    A model with one input channel more than it outputs takes a noise-level map (see
    `build_resunet(noise_level_map=True)`): the denoiser appends a constant channel equal to
    its `sigma`.
    """

    def __init__(self, model, name=None, sigma=0.1):
        from keras_resunet.models import model_minimum_size

        inputs, outputs = model.input_shape, model.output_shape
        if not (isinstance(inputs, tuple) and isinstance(outputs, tuple)):
            raise ValueError(f"{model.name}: a denoiser needs one image input and one output")  # noqa: TRY004
        if len(inputs) != 4 or len(outputs) != 4 or inputs[1:3] != outputs[1:3]:
            raise ValueError(
                f"{model.name} is not an image-to-image model: input {inputs}, output {outputs} "
                "(a restoration model maps (N, H, W, C) to the same H and W)"
            )
        if inputs[-1] not in (outputs[-1], outputs[-1] + 1) or outputs[-1] not in (1, 3):
            raise ValueError(
                f"{model.name}: {inputs[-1]} input and {outputs[-1]} output channels; expected "
                "1 or 3 image channels out and the same in (or one more: a noise-level map)"
            )
        super().__init__(
            name=name or model.name,
            channels=outputs[-1],
            minimum_size=model_minimum_size(model),
        )
        self.model = model
        self.takes_sigma = inputs[-1] == outputs[-1] + 1
        self.sigma = float(sigma) if self.takes_sigma else None

    def __call__(self, images):
        images = np.asarray(images, dtype=np.float32)
        if self.takes_sigma:
            level = np.full((*images.shape[:-1], 1), self.sigma, np.float32)
            images = np.concatenate([images, level], axis=-1)
        return np.asarray(self.model.predict_on_batch(images), dtype=np.float32)

    def settings(self):
        settings = {"params": int(self.model.count_params())}
        if self.takes_sigma:
            settings["sigma"] = self.sigma
        return settings


def load_model(path):
    """Loads a `.keras` model for inference: uncompiled training state, XLA off.

    Models trained with `jit_compile=True` store it in their compile config, and `predict`
    would then run through XLA, which on CPU is about 3x slower than plain TensorFlow for
    these convolutional models at photo sizes (481x321 images, ResUNet, 2 threads).

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if it is not a loadable Keras model.
    """
    import keras

    import keras_resunet.models  # noqa: F401  registers the custom layers

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    if path.suffix != ".keras":
        raise ValueError(f"Expected a Keras model file ending in .keras. Received: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a loadable Keras model: not a .keras (zip) archive")
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise ValueError(
                f"{path} is not a loadable Keras model: the archive has no config.json"
            )
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001  Keras raises several unrelated types here
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, (FileNotFoundError, KeyError)):
            reason = f"not a Keras model archive ({type(error).__name__}: {reason})"
        raise ValueError(f"{path} is not a loadable Keras model: {reason}") from None
    model.compile(jit_compile=False)
    return model


def _dihedral(images, index):
    """The `index`-th (0..7) flip/rotation of a batch (N, H, W, C)."""
    flipped = images[:, :, ::-1] if index >= 4 else images
    return np.rot90(flipped, k=index % 4, axes=(1, 2))


def _undo_dihedral(images, index):
    unrotated = np.rot90(images, k=-(index % 4), axes=(1, 2))
    return unrotated[:, :, ::-1] if index >= 4 else unrotated


def self_ensemble(denoiser, images):
    """Mean of the restorations of the 8 flips/rotations of `images`, each transformed back."""
    images = np.asarray(images, dtype=np.float32)
    total = np.zeros_like(images)
    for index in range(8):
        restored = denoiser(np.ascontiguousarray(_dihedral(images, index)))
        total += _undo_dihedral(restored, index)
    return total / 8


class SelfEnsemble(Denoiser):
    """`denoiser` averaged over the 8 flips/rotations of its input (8x its time), as a denoiser
    of its own: for tables that report a model with and without the ensemble."""

    def __init__(self, denoiser):
        super().__init__(f"{denoiser.name}_x8", denoiser.channels, denoiser.minimum_size)
        self.denoiser = denoiser
        self.takes_sigma = denoiser.takes_sigma
        self.sigma = denoiser.sigma

    def __call__(self, images):
        return self_ensemble(self.denoiser, images)

    def at_sigma(self, sigma):
        return SelfEnsemble(self.denoiser.at_sigma(sigma))

    def settings(self):
        return {**self.denoiser.settings(), "self_ensemble": 8}
