"""The one trainer every model and experiment uses.

`train(config, out_dir)` builds the model, optimizer and loss inside a `tf.distribute` strategy
scope and runs Keras `fit` on the on-the-fly degradation pipeline, in chunks of
`checkpoint_every` steps (one Keras "epoch" each). After each chunk it writes a checkpoint
(model + optimizer state through `tf.train.CheckpointManager`, whose index file is replaced
atomically), so a run killed at any moment resumes from its last checkpoint and loses at most
`checkpoint_every` steps. A non-finite loss stops the run with an error and keeps the last good
checkpoint. The run folder keeps the resolved config, the command, a CSV log, TensorBoard
summaries and the final model (`model.keras`, written atomically).

We use `fit` rather than a hand-written loop: Keras `Loss` objects already scale by the number
of replicas under a strategy, and `fit` also runs on the JAX and PyTorch backends. We do not use
`BackupAndRestore`: it writes its file in place and resumes only at epoch boundaries that it
chooses, while we need atomic checkpoints at a step interval of our choosing.
"""

import contextlib
import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import yaml

from keras_resunet import data, degradations, torch_conv
from keras_resunet.io import atomic_write, write_text_atomically
from keras_resunet.losses import RestorationLoss
from keras_resunet.models import MODELS, build_model
from keras_resunet.precision import check_precision, resolve_precision


class TrainingError(RuntimeError):
    """Training cannot continue (non-finite loss, bad config found late)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on. Parsed once from YAML; unknown keys are rejected."""

    model: str = "resunet"
    model_args: dict = field(default_factory=dict)
    task: str = "denoise"
    sigma: float = 0.1
    sigma_range: tuple | None = None
    kernel: str = "gaussian"
    # Clip the degraded training inputs to [0, 1], as noisy photos saved in 8 bits are. The
    # reference protocol does not; models trained without it lose about 0.5 dB on clipped
    # inputs (README, `resunet evaluate --clip`).
    clip: bool = False
    # Share of training inputs clipped to [0, 1] and rounded to 8 bits (the rest unclipped).
    clip_fraction: float = 0.0
    channels: int = 3
    train_data: str = "BSDS300/images/train"
    data_root: str | None = None
    patch_size: int = 32
    batch_size: int = 64
    steps: int = 1000
    checkpoint_every: int = 100
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # "constant" or "cosine"
    clipnorm: float | None = None
    # Keras dtype policy while training; "auto" picks bfloat16 where the hardware computes it
    # natively and float32 elsewhere (keras_resunet.precision). The weights stay float32 and
    # the saved model.keras is float32 whatever the training precision.
    precision: str = "auto"
    # XLA measured slower on CPU for these models (results/training/throughput.json)
    jit_compile: bool = False
    alpha: float = 1.0
    beta: float = 0.0
    perceptual: dict = field(default_factory=dict)
    seed: int = 0
    # A `.keras` model whose weights start a run that has no checkpoint yet (a shipped model,
    # so a campaign whose run folder is lost goes on from what shipped). Layers are matched by
    # name; a first conv that gains a noise-level-map channel gets zero weights for it.
    init_from: str | None = None

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"Unknown model {self.model!r}. Valid names: {sorted(MODELS)}")
        positive = ("patch_size", "batch_size", "steps", "checkpoint_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"`lr_schedule` must be 'constant' or 'cosine'. Received: {self.lr_schedule!r}"
            )
        check_precision(self.precision)
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0. Received: {self.learning_rate!r}")
        if self.steps % self.checkpoint_every:
            raise ValueError(
                f"`steps` must be a multiple of `checkpoint_every`. "
                f"Received: steps={self.steps}, checkpoint_every={self.checkpoint_every}"
            )
        self.degradation()
        _check_model_args(self.model, self.model_args)
        if self.noise_map and self.task != "denoise":
            raise ValueError("`noise_level_map` models are trained on the denoise task")

    @property
    def noise_map(self):
        """Whether the model takes a noise-level map (`model_args: {noise_level_map: true}`)."""
        return bool(self.model_args.get("noise_level_map", False))

    def degradation(self):
        """The training degradation this config describes."""
        return degradations.make_degradation(
            self.task,
            sigma=self.sigma,
            sigma_range=self.sigma_range,
            kernel=None if self.task == "denoise" else degradations.make_kernel(self.kernel),
            clip=self.clip,
            clip_fraction=self.clip_fraction,
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
    import inspect

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


def make_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else MirroredStrategy
    over every local GPU, else over every logical CPU device when there are several.

    With a single device it returns TensorFlow's default strategy: MirroredStrategy over one
    CPU made the poster ResUNet's training 2.3x slower here (55 vs 128 patches/s, batch 64,
    32x32), for nothing to mirror.
    """
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    if len(tf_config.get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def _training_images(config):
    folder = Path(config.train_data)
    if not folder.is_absolute():
        folder = data.resolve_data_root(config.data_root) / folder
    images, _ = data.load_images(folder, channels=config.channels)
    return images


def _learning_rate(config):
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, config.steps)
    return config.learning_rate


class _Checkpointer(keras.callbacks.Callback):
    """Saves model + optimizer after every chunk when the loss is finite; stops on NaN/Inf.

    Beside each checkpoint, progress.json keeps the steps done and the training seconds spent
    over every process that trained the run (a resumed run adds to them).
    """

    def __init__(self, manager, steps_per_chunk, progress_path):
        super().__init__()
        self.manager = manager
        self.steps_per_chunk = steps_per_chunk
        self.failed = None
        self.progress_path = progress_path
        self.seconds_before = read_progress(progress_path.parent)["train_seconds"]
        self.start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failed = float(loss)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.failed is None:
            steps = (epoch + 1) * self.steps_per_chunk
            self.manager.save(checkpoint_number=steps)
            seconds = self.seconds_before + time.time() - self.start
            progress = {"steps": steps, "train_seconds": round(seconds, 1)}
            write_text_atomically(self.progress_path, json.dumps(progress))


@keras.saving.register_keras_serializable(package="keras_resunet")
def psnr_metric(y_true, y_pred):
    """Per-patch PSNR (dB, peak 1) of the clipped prediction: the progress bar's `psnr`."""
    y_true, y_pred = keras.ops.cast(y_true, "float32"), keras.ops.cast(y_pred, "float32")
    error = keras.ops.mean(keras.ops.square(keras.ops.clip(y_pred, 0, 1) - y_true), axis=(1, 2, 3))
    return 10.0 * keras.ops.log(1.0 / keras.ops.maximum(error, 1e-10)) / math.log(10.0)


class _ImageSummaries(keras.callbacks.Callback):
    """After each chunk, writes degraded | restored | clean crops of a few fixed training
    images to TensorBoard, so a run can be watched, not just its loss."""

    def __init__(
        self, folder, images, degradation, steps_per_chunk, seed, noise_map, count=3, size=96
    ):
        super().__init__()
        crops = []
        for image in images[:count]:
            top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
            crops.append(image[max(top, 0) : top + size, max(left, 0) : left + size])
        side = min(min(c.shape[0], c.shape[1]) for c in crops)
        self.clean = np.stack([c[:side, :side] for c in crops])
        seed = tf.constant([seed, 7], tf.int64)
        if noise_map:
            degraded, sigma = degradation.sample(tf.constant(self.clean), seed)
            self.inputs = np.asarray(degradations.with_noise_map(degraded, sigma))
        else:
            degraded = degradation(tf.constant(self.clean), seed)
            self.inputs = np.asarray(degraded)
        self.degraded = np.asarray(degraded)
        self.writer = tf.summary.create_file_writer(str(folder))
        self.steps_per_chunk = steps_per_chunk

    def on_epoch_end(self, epoch, logs=None):
        restored = keras.ops.convert_to_numpy(self.model(self.inputs, training=False))
        restored = restored.astype(np.float32)  # a mixed-precision model outputs 16 bits
        restored = tf.clip_by_value(restored, 0, 1)
        panels = tf.concat([tf.clip_by_value(self.degraded, 0, 1), restored, self.clean], axis=2)
        with self.writer.as_default():
            tf.summary.image(
                "degraded | restored | clean",
                panels,
                step=(epoch + 1) * self.steps_per_chunk,
                max_outputs=len(self.clean),
            )
        self.writer.flush()


class _KerasCheckpoints:
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


def read_progress(out_dir):
    """{"steps", "train_seconds"} of a run so far (zeros before its first checkpoint)."""
    path = Path(out_dir) / "progress.json"
    if not path.is_file():
        return {"steps": 0, "train_seconds": 0.0}
    return json.loads(path.read_text())


class _RunLock:
    """A lock file holding the training process id: two processes must never train the same
    run folder (their checkpoints would interleave). A lock left by a dead process is taken
    over."""

    def __init__(self, out_dir):
        self.path = Path(out_dir) / ".lock"

    def __enter__(self):
        try:
            owner = int(self.path.read_text())
        except (OSError, ValueError):
            owner = None
        if owner and owner != os.getpid() and _process_alive(owner):
            raise TrainingError(f"{self.path.parent} is being trained by process {owner}")
        self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def train(config, out_dir, images=None, strategy=None, log=print):
    """Trains (or resumes) a run in `out_dir`; returns the trained Keras model.

    Args:
        config: `TrainConfig`.
        out_dir: the run folder; an existing run with a checkpoint resumes automatically
            (its saved config must match `config`).
        images: optional list of training images (float32 (H, W, C) in [0, 1]); default: read
            `config.train_data` under the data root.
        strategy: optional `tf.distribute.Strategy` (default: `make_strategy()`).
        log: where progress lines go.

    Raises:
        TrainingError: when another live process is training `out_dir`; on a non-finite loss
            (the last good checkpoint is kept); or on a config that
            differs from the one the run started with.
    """
    if images is None:  # before touching out_dir: a missing data folder must cost nothing
        images = _training_images(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(config.precision)
    if config.precision == "auto":
        log(f"precision auto: training in {precision} on this machine")
    with _RunLock(out_dir), _global_dtype_policy(precision):
        return _train_locked(config, out_dir, images, strategy, log, precision)


@contextlib.contextmanager
def _global_dtype_policy(name):
    # Keras' policy is process-wide: restore it, or a later model in the same process
    # (an evaluation, the next run of an experiment script) would inherit it.
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _train_locked(config, out_dir, images, strategy, log, precision):
    with _global_dtype_policy("float32"):
        try:  # a model that cannot be built must not leave a run folder behind
            build_model(config.model, in_channels=config.channels, **config.model_args)
        except (TypeError, ValueError) as error:
            raise ValueError(f"model_args {config.model_args}: {error}") from None
    _check_or_write_config(config, out_dir)
    final = out_dir / "model.keras"
    if final.is_file() and read_progress(out_dir)["steps"] >= config.steps:
        log(f"{out_dir} is finished ({config.steps} steps): loading {final}")
        return keras.models.load_model(final, compile=False)
    keras.utils.set_random_seed(config.seed)
    tensorflow_backend = keras.backend.backend() == "tensorflow"
    if tensorflow_backend:
        strategy = strategy or make_strategy()
        scope = strategy.scope()
    elif strategy is not None:
        raise ValueError(
            f"tf.distribute needs the TensorFlow backend, not {keras.backend.backend()}"
        )
    else:
        scope = contextlib.nullcontext()
        torch_conv.enable()  # same numbers, fewer copies (keras_resunet/torch_conv.py)
    with scope:
        model = build_model(config.model, in_channels=config.channels, **config.model_args)
        optimizer = keras.optimizers.Adam(_learning_rate(config), clipnorm=config.clipnorm)
        loss = RestorationLoss(config.alpha, config.beta, config.perceptual)
        model.compile(
            optimizer=optimizer, loss=loss, metrics=[psnr_metric], jit_compile=config.jit_compile
        )
        model.optimizer.build(model.trainable_variables)
    # A run keeps the checkpoint format it started with: TensorFlow's (tf.train) on the
    # TensorFlow backend, .keras files on the others; .keras files load on every backend.
    folder = out_dir / "checkpoints"
    tf_format = (folder / "checkpoint").is_file()
    if tf_format and not tensorflow_backend:
        raise TrainingError(
            f"{out_dir} has TensorFlow checkpoints: resume it with KERAS_BACKEND=tensorflow"
        )
    if tensorflow_backend and (tf_format or not any(folder.glob("ckpt-*.keras"))):
        checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        manager = tf.train.CheckpointManager(checkpoint, folder, max_to_keep=2)
        restore = lambda path: checkpoint.restore(path).expect_partial()
    else:
        manager = _KerasCheckpoints(folder, model)
        restore = model.load_weights
    done = 0
    if manager.latest_checkpoint:
        restore(manager.latest_checkpoint)
        done = int(Path(manager.latest_checkpoint).stem.rsplit("-", 1)[1])
        log(f"resuming {out_dir} at step {done}")
    elif config.init_from:
        warm_start(model, config.init_from)
        log(f"starting {out_dir} from the weights of {config.init_from}")
    chunk = config.checkpoint_every
    total_chunks = math.ceil(config.steps / chunk)
    if done < config.steps:
        degradation = config.degradation()
        dataset = data.patch_dataset(
            images,
            degradation,
            config.patch_size,
            config.batch_size,
            seed=config.seed + done,  # a resumed run draws fresh patches, not a replay
            noise_map=config.noise_map,
        )
        checkpointer = _Checkpointer(manager, chunk, out_dir / "progress.json")
        callbacks = [
            checkpointer,
            keras.callbacks.CSVLogger(str(out_dir / "log.csv"), append=True),
            keras.callbacks.TensorBoard(str(out_dir / "tensorboard"), update_freq="epoch"),
            _ImageSummaries(
                out_dir / "tensorboard" / "images",
                images,
                degradation,
                chunk,
                config.seed,
                config.noise_map,
            ),
        ]
        start = time.time()
        if tensorflow_backend and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            _fit_multi_worker(
                model, dataset, strategy, chunk, done // chunk, total_chunks, callbacks, config
            )
        else:
            model.fit(
                dataset,
                steps_per_epoch=chunk,
                epochs=total_chunks,
                initial_epoch=done // chunk,
                callbacks=callbacks,
                # a live progress bar on a terminal, one line per chunk in a log file
                verbose=1 if sys.stdout.isatty() else 2,
                shuffle=False,  # the dataset draws random patches itself
            )
        if checkpointer.failed is not None:
            raise TrainingError(
                f"loss became {checkpointer.failed}; stopped. The last good checkpoint is kept: "
                f"{manager.latest_checkpoint}"
            )
        seconds = time.time() - start
        steps_run = config.steps - done
        log(
            f"{steps_run} steps in {seconds:.0f} s "
            f"({steps_run * config.batch_size / seconds:.0f} patches/s)"
        )
    if precision != "float32":
        model = _float32_copy(model, config)
    _save_atomically(model, out_dir / "model.keras")
    return model


def warm_start(model, path):
    """Copies the weights of the `.keras` model at `path` into `model`, layer by layer by name.

    A conv kernel that has more input channels in `model` (a noise-level-map channel added)
    gets the source kernel in its first channels and zeros in the rest, so the warm-started
    model at first computes exactly what the source model did.

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
                widened = target.ndim == 4 and target.shape[2] > weight.shape[2]
                if (
                    not widened
                    or target.shape[:2] + target.shape[3:] != weight.shape[:2] + weight.shape[3:]
                ):
                    raise TrainingError(
                        f"{path}: layer {layer.name!r} has shape {weight.shape}, "
                        f"the model needs {target.shape}"
                    )
                grown = np.zeros_like(target)
                grown[:, :, : weight.shape[2], :] = weight
                weight = grown
            adapted.append(weight)
        layer.set_weights(adapted)


def _float32_copy(model, config):
    """The trained model with float32 layers: under a mixed policy only the computation is
    in 16 bits, the variables are float32, so they carry over unchanged."""
    with _global_dtype_policy("float32"):
        copy = build_model(config.model, in_channels=config.channels, **config.model_args)
    copy.set_weights(model.get_weights())
    return copy


def _fit_multi_worker(
    model, dataset, strategy, steps_per_chunk, first_chunk, chunks, callbacks, config
):
    """`fit` for MultiWorkerMirroredStrategy, which Keras 3's own `fit` does not run (it fails
    converting a PerReplica batch: keras-team/keras#20585, open for TF 2.16 to 2.21).

    The same compiled model, optimizer, loss and callbacks, driven by a small distributed step:
    each replica computes its per-patch losses, scales them once by the global batch
    (`tf.nn.compute_average_loss`), and the optimizer all-reduces the gradients across workers.
    """
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    loss_function = model.loss

    def replica_step(batch):
        degraded, clean = batch
        with tf.GradientTape() as tape:
            restored = model(degraded, training=True)
            per_patch = loss_function.call(clean, restored)
            loss = tf.nn.compute_average_loss(per_patch, global_batch_size=config.batch_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        psnr = tf.nn.compute_average_loss(
            psnr_metric(clean, restored), global_batch_size=config.batch_size
        )
        return loss, psnr

    @tf.function
    def train_step(iterator):
        loss, psnr = strategy.run(replica_step, args=(next(iterator),))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", psnr, axis=None)

    callback_list.on_train_begin()
    for chunk in range(first_chunk, chunks):
        callback_list.on_epoch_begin(chunk)
        losses, psnrs = [], []
        for step in range(steps_per_chunk):
            loss, psnr = train_step(iterator)
            losses.append(float(loss))
            psnrs.append(float(psnr))
            callback_list.on_train_batch_end(step, {"loss": losses[-1]})
            if model.stop_training:
                break
        callback_list.on_epoch_end(
            chunk, {"loss": float(np.mean(losses)), "psnr_metric": float(np.mean(psnrs))}
        )
        if model.stop_training:
            break
    callback_list.on_train_end()


_RESUMABLE_KEYS = ("steps", "init_from")


def _check_or_write_config(config, out_dir):
    """A resumed run must have the config it started with, except `steps` (extending a run is
    allowed) and `init_from`; the stored config is updated to the new step count. Keys added to `TrainConfig`
    after a run started count as their defaults."""
    path = out_dir / "config.json"
    resolved = json.loads(json.dumps(config.to_dict()))
    resolved["precision"] = resolve_precision(resolved["precision"])  # what this run trains in
    if path.is_file():
        defaults = json.loads(json.dumps(TrainConfig().to_dict()))
        previous = {**defaults, **json.loads(path.read_text())}
        if "mixed_precision" in previous:  # runs started before `precision` replaced it
            legacy = previous.pop("mixed_precision")
            previous["precision"] = "mixed_float16" if legacy else "float32"
        # `steps` may grow (extending a run); `init_from` only matters before the first checkpoint
        for values in (previous, resolved):
            # what "auto" means on this machine, so a run may switch between it and its value
            values["precision"] = resolve_precision(values.get("precision", "float32"))
            # the same folder however it was spelled
            if values.get("data_root"):
                values["data_root"] = str(Path(values["data_root"]).expanduser().resolve())
        changed = sorted(
            k for k in resolved if k not in _RESUMABLE_KEYS and previous.get(k) != resolved[k]
        )
        if changed:
            raise TrainingError(
                f"{out_dir} holds a run with a different config ({changed}); use a new folder"
            )
    write_text_atomically(path, json.dumps(resolved, indent=2))
    if (out_dir / "run.json").is_file():
        return
    write_text_atomically(out_dir / "run.json", json.dumps(provenance(), indent=2))


def command_line():
    """This process's command as a user would type it (`python -m pkg.mod` for modules,
    the console script's name for `resunet`)."""
    program = Path(sys.argv[0])
    if program.suffix == ".py" and program.parent.name == "experiments":
        first = f"python -m experiments.{program.stem}"
    elif program.suffix == ".py" and program.name == "__main__.py":
        first = f"python -m {program.parent.name}"
    else:
        first = program.name
    return " ".join([first, *sys.argv[1:]])


def provenance():
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "command": command_line(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": commit,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
    }


def _save_atomically(model, path):
    with atomic_write(path) as temporary:
        model.save(temporary)


def final_loss(out_dir):
    """The last logged training loss of a run (from log.csv)."""
    with open(Path(out_dir) / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return float(rows[-1]["loss"])


class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def measure_throughput(
    model_name,
    images,
    batch_size=64,
    patch_size=32,
    steps=60,
    warmup=10,
    jit_compile=True,
    fast_torch_conv=True,
    precision="float32",
    **model_args,
):
    """Training patches per second of `fit` on the real input pipeline, after a warm-up.

    `fast_torch_conv` picks `keras_resunet.torch_conv` or Keras's own conv on the PyTorch backend
    (what the trainer uses vs plain Keras); other backends ignore it. `precision`: a Keras
    dtype policy, as `TrainConfig.precision`.

    Returns:
        dict: model, parameters, batch, patch, jit, precision, patches_per_second (median over
        steps).
    """
    requested, precision = precision, resolve_precision(precision)
    keras.utils.set_random_seed(0)
    if fast_torch_conv:
        torch_conv.enable()
    else:
        torch_conv.disable()
    dataset = data.patch_dataset(
        images, degradations.GaussianNoise(0.1), patch_size, batch_size, seed=0
    )
    timer = _StepTimer()
    with _global_dtype_policy(precision):
        model = build_model(model_name, **model_args)
        model.compile(keras.optimizers.Adam(1e-3), RestorationLoss(), jit_compile=jit_compile)
        model.fit(dataset, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer])
    durations = np.diff(timer.times[warmup:])
    return {
        "model": model_name,
        "parameters": model.count_params(),
        "batch_size": batch_size,
        "patch_size": patch_size,
        "jit_compile": jit_compile,
        "fast_torch_conv": bool(fast_torch_conv and keras.backend.backend() == "torch"),
        "precision": precision,
        "precision_requested": requested,
        "patches_per_second": float(batch_size / np.median(durations)),
    }
