"""Checkpoints for the non-TensorFlow backends, atomic model saves, and warm starts."""

from pathlib import Path

import keras

from keras_resunet.io import atomic_write, write_text_atomically
from keras_resunet.training.run_folder import TrainingError


class KerasCheckpoints:
    """Checkpoints for the JAX and PyTorch backends, whose variables `tf.train.Checkpoint`
    cannot track: `ckpt-<step>.keras` files holding model and optimizer state, each written
    under a temporary name and renamed, the two newest kept. Same interface as the
    `tf.train.CheckpointManager` the TensorFlow backend uses."""

    def __init__(self, folder, model, max_to_keep=2):
        self.folder = Path(folder)
        self.model = model
        self.max_to_keep = max_to_keep

    def _existing(self):
        found = [(int(p.stem.split("-")[1]), p) for p in self.folder.glob("ckpt-*.keras")]
        return [path for _, path in sorted(found)]

    @property
    def latest_checkpoint(self):
        existing = self._existing()
        return str(existing[-1]) if existing else None

    def save(self, checkpoint_number):
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"ckpt-{checkpoint_number}.keras"
        with atomic_write(path) as temporary:
            self.model.save(temporary)
        for old in self._existing()[: -self.max_to_keep]:
            old.unlink()
        return str(path)


def warm_start(model, path):
    """Copies the weights of the `.keras` model at `path` into `model`, layer by layer by name.

    `model` may be wider than the source (more input channels: a noise-level-map channel; more
    filters in some convs): a conv or dense kernel gets the source kernel in its leading input
    and output channels, zeros for the extra inputs, and keeps its fresh initial values for the
    extra outputs (biases likewise). Every extra feature is then read with zero weights, so the
    warm-started model at first computes exactly what the source did, and the extra features
    still learn (their own weights are random, so the zero weights that read them get
    gradients).

    Raises:
        TrainingError: a missing file, or layers that do not correspond.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"`init_from` model not found: {path}")
    import keras_resunet.models  # noqa: F401  registers the custom layers

    source = keras.models.load_model(path, compile=False)
    layers = {layer.name: layer for layer in source.layers}
    for layer in model.layers:
        targets = layer.get_weights()
        if not targets:
            continue
        origin = layers.get(layer.name)
        weights = origin.get_weights() if origin is not None else []
        if len(weights) != len(targets):
            raise TrainingError(f"{path} has no layer matching {layer.name!r}: not the same model")
        adapted = []
        for target, weight in zip(targets, weights):
            if target.shape != weight.shape:
                weight = _grown(layer, target, weight, path)
            adapted.append(weight)
        layer.set_weights(adapted)


INIT_BUDGET = "init_budget.json"


def record_init_budget(out_dir, init_from):
    """Keeps the training budget of the `init_from` model (its `<name>.json`) in the run folder,
    as it was when the run started: shipping the run later replaces that file."""
    record = Path(init_from).with_suffix(".json")
    if record.is_file():
        write_text_atomically(Path(out_dir) / INIT_BUDGET, record.read_text())


def _grown(layer, target, weight, path):
    """`weight` placed in the leading slice of `target` (see `warm_start`)."""
    growable = type(layer).__name__ in ("Conv2D", "Dense")  # kernels laid out (..., in, out)
    if (
        not growable
        or target.ndim != weight.ndim
        or target.shape[:-2] != weight.shape[:-2]
        or any(t < w for t, w in zip(target.shape, weight.shape))
    ):
        raise TrainingError(
            f"{path}: layer {layer.name!r} has shape {weight.shape}, the model needs {target.shape}"
        )
    grown = target.copy()
    if grown.ndim >= 2:  # a kernel: extra inputs read nothing
        grown[..., weight.shape[-2] :, :] = 0
    grown[tuple(slice(0, n) for n in weight.shape)] = weight
    return grown


def save_atomically(model, path):
    with atomic_write(path) as temporary:
        model.save(temporary)
