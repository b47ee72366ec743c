"""`TrainConfig`: everything a training run depends on, checked before any work."""

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from keras_resunet import data, degradations
from keras_resunet.losses import PIXEL_LOSSES
from keras_resunet.models import MODELS
from keras_resunet.precision import check_precision


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on. Parsed once from YAML; unknown keys are rejected."""

    model: str = "resunet"
    model_args: dict = field(default_factory=dict)
    task: str = "denoise"
    sigma: float = 0.1
    sigma_range: tuple | None = None
    # How the sigma is drawn from `sigma_range` (degradations.GaussianNoise): 1 uniformly,
    # larger powers draw low noise levels more often.
    sigma_power: float = 1.0
    kernel: str = "gaussian"
    # Clip the degraded training inputs to [0, 1], as noisy photos saved in 8 bits are. The
    # reference protocol does not; models trained without it lose about 0.5 dB on clipped
    # inputs (README, `resunet evaluate --clip`).
    clip: bool = False
    # Share of training inputs clipped to [0, 1] and rounded to 8 bits (the rest unclipped).
    clip_fraction: float = 0.0
    channels: int = 3
    # A folder, or a list of folders (each read recursively), each a path or
    # {folder: PATH, weight: W}; relative to the data root (keras_resunet.data.parse_sources)
    train_data: str | list = "BSDS300/images/train"
    data_root: str | None = None
    # Held-out photos scored during training (PSNR of fixed noisy crops: at sigma 15 / 25 / 50
    # for noise-map models, else under the training degradation) every `val_every` steps
    # (default: every checkpoint); the best-scoring weights are kept as best.keras.
    val_data: str | None = None
    val_every: int | None = None
    # Processes that draw the training batches where TensorFlow is absent (the NumPy
    # PyDataset path, e.g. a GPU machine with PyTorch only, whose one-core pipeline draws
    # about 1,400 96x96 patches/s); 0 draws them in the training process. Every batch is
    # seeded, but Keras prefetches across chunk ends, so with workers a rerun may train on
    # other batches of the same kind. tf.data parallelizes itself.
    data_workers: int = 0
    patch_size: int = 32
    batch_size: int = 64
    steps: int = 1000
    checkpoint_every: int = 100
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # "constant" or "cosine"
    # Steps over which the learning rate rises linearly from 0 before the schedule starts:
    # a run warm-started from trained weights with a fresh Adam otherwise takes full-size
    # first steps away from them.
    warmup_steps: int = 0
    clipnorm: float | None = None
    # Keras dtype policy while training; "auto" picks bfloat16 where the hardware computes it
    # natively and float32 elsewhere (keras_resunet.precision). The weights stay float32 and
    # the saved model.keras is float32 whatever the training precision.
    precision: str = "auto"
    # XLA measured slower on CPU for these models (results/training/throughput.json)
    jit_compile: bool = False
    pixel_loss: str = "mse"  # "mse", "l1" or "psnr" (keras_resunet.losses.RestorationLoss)
    alpha: float = 1.0
    beta: float = 0.0
    perceptual: dict = field(default_factory=dict)
    seed: int = 0
    # A `.keras` model whose weights start a run that has no checkpoint yet (a shipped model,
    # so a campaign whose run folder is lost goes on from what shipped). Layers are matched by
    # name; a first conv that gains a noise-level-map channel gets zero weights for it.
    init_from: str | None = None
    # Fine-tune `init_from` with int8 rounding simulated (keras_resunet.int8_simulation), so its
    # int8 TFLite export loses less; float32 only (bfloat16 rounds more coarsely than int8).
    quantization_aware: bool = False

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"Unknown model {self.model!r}. Valid names: {sorted(MODELS)}")
        positive = ("patch_size", "batch_size", "steps", "checkpoint_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        workers = self.data_workers
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise ValueError(f"`data_workers` must be an int >= 0. Received: {workers!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"`lr_schedule` must be 'constant' or 'cosine'. Received: {self.lr_schedule!r}"
            )
        warmup = self.warmup_steps
        if not isinstance(warmup, int) or isinstance(warmup, bool) or not 0 <= warmup < self.steps:
            raise ValueError(
                f"`warmup_steps` must be an int >= 0 and below `steps` ({self.steps}). "
                f"Received: warmup_steps={warmup!r}"
            )
        check_precision(self.precision)
        data.parse_sources(self.train_data)
        if self.val_every is not None:
            if self.val_data is None:
                raise ValueError("`val_every` needs `val_data`: the folder of validation images")
            if (
                not isinstance(self.val_every, int)
                or self.val_every < 1
                or self.val_every % self.checkpoint_every
            ):
                raise ValueError(
                    "`val_every` must be a positive multiple of `checkpoint_every` "
                    f"({self.checkpoint_every}). Received: val_every={self.val_every!r}"
                )
        if self.pixel_loss not in PIXEL_LOSSES:
            raise ValueError(
                f"`pixel_loss` must be one of {list(PIXEL_LOSSES)}. Received: {self.pixel_loss!r}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0. Received: {self.learning_rate!r}")
        if self.steps % self.checkpoint_every:
            raise ValueError(
                f"`steps` must be a multiple of `checkpoint_every`. "
                f"Received: steps={self.steps}, checkpoint_every={self.checkpoint_every}"
            )
        self.degradation()
        if self.quantization_aware and (not self.init_from or self.precision != "float32"):
            raise ValueError(
                "`quantization_aware` fine-tunes a trained model in float32: it needs "
                f"`init_from` and `precision: float32`. Received: init_from={self.init_from!r}, "
                f"precision={self.precision!r}"
            )
        _check_model_args(self.model, self.model_args)
        if self.noise_map and self.task != "denoise":
            raise ValueError("`noise_level_map` models are trained on the denoise task")

    @property
    def noise_map(self):
        """Whether the model takes a noise-level map (`model_args: {noise_level_map: true}`)."""
        return bool(self.model_args.get("noise_level_map", False))

    def degradation(self, clipped=True):
        """The training degradation this config describes (with `clipped` False, without its
        clipping to [0, 1]: what the model restores, at any bit depth)."""
        return degradations.make_degradation(
            self.task,
            sigma=self.sigma,
            sigma_range=self.sigma_range,
            kernel=self.kernel,
            clip=self.clip and clipped,
            clip_fraction=self.clip_fraction if clipped else 0.0,
            sigma_power=self.sigma_power,
        )

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a dict, rejecting unknown keys and values of the wrong type."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"Unknown config keys {unknown}. Valid keys: {sorted(known)}")
        defaults = cls()
        values = dict(values)
        for key, value in values.items():
            expected = getattr(defaults, key)
            if value is None or expected is None:
                continue
            if isinstance(expected, float) and isinstance(value, str):
                # YAML 1.1 reads "1e-3" (no dot) as a string
                try:
                    value = values[key] = float(value)
                except ValueError:
                    pass
            kind = (int, float) if isinstance(expected, float) else type(expected)
            if key == "train_data":  # a folder or a list of them; parse_sources checks entries
                kind = (str, list)
            if isinstance(value, bool) != isinstance(expected, bool) or not isinstance(value, kind):
                raise ValueError(
                    f"Config key `{key}` must be {type(expected).__name__}. "
                    f"Received: {value!r} ({type(value).__name__})"
                )
        if values.get("sigma_range") is not None:
            values = {**values, "sigma_range": tuple(values["sigma_range"])}
        return cls(**values)

    @classmethod
    def from_yaml(cls, path, overrides=()):
        """Reads a YAML config and applies `key=value` overrides (values parsed as YAML)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: the config must be a mapping of keys to values")  # noqa: TRY004
        overridden = set()
        for override in overrides:
            key, sep, text = override.partition("=")
            if not sep:
                raise ValueError(f"Overrides look like key=value. Received: {override!r}")
            try:
                values[key.strip()] = yaml.safe_load(text)
            except yaml.YAMLError:
                raise ValueError(f"--set {override!r}: the value is not valid YAML") from None
            overridden.add(key.strip())
        steps = values.get("steps")
        every = values.get("checkpoint_every", cls.checkpoint_every)
        # a shorter (or longer) run from the command line checkpoints at a step that divides
        # it, rather than being refused
        if (
            "steps" in overridden
            and "checkpoint_every" not in overridden
            and all(isinstance(v, int) and v > 0 for v in (steps, every))
        ):
            values["checkpoint_every"] = math.gcd(steps, every)
        return cls.from_dict(values)

    def to_dict(self):
        return dataclasses.asdict(self)


def _check_model_args(model, model_args):
    """Refuses builder arguments the builder does not take, before any work."""
    if not isinstance(model_args, dict):
        raise ValueError(f"`model_args` must be a mapping. Received: {model_args!r}")  # noqa: TRY004
    reserved = {"in_channels"} & set(model_args)
    if reserved:
        raise ValueError(f"`model_args` cannot set {sorted(reserved)}: use the config's `channels`")
    parameters = inspect.signature(MODELS[model]).parameters
    unknown = sorted(set(model_args) - set(parameters))
    if unknown:
        valid = sorted(set(parameters) - {"in_channels"})
        raise ValueError(f"`model_args` {unknown} are not arguments of {model}. Valid: {valid}")
