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
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import keras

from keras_resunet import data, torch_conv
from keras_resunet.io import to_float01, write_text_atomically
from keras_resunet.losses import RestorationLoss
from keras_resunet.metrics import psnr_metric
from keras_resunet.models import build_model
from keras_resunet.precision import resolve_precision, tensorflow_available
from keras_resunet.training import validation
from keras_resunet.training.callbacks import Checkpointer, ImageSummaries, TimeLimit
from keras_resunet.training.checkpoints import (
    KerasCheckpoints,
    record_init_budget,
    save_atomically,
    warm_start,
)
from keras_resunet.training.run_folder import (
    RunLock,
    TrainingError,
    check_or_write_config,
    read_progress,
)


def make_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else MirroredStrategy
    over every local GPU, else over every logical CPU device when there are several.

    With a single device it returns TensorFlow's default strategy: MirroredStrategy over one
    CPU made the poster ResUNet's training 2.3x slower here (55 vs 128 patches/s, batch 64,
    32x32), for nothing to mirror.
    """
    import tensorflow as tf

    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    if len(tf_config.get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def _training_set(config, log):
    sources = data.parse_sources(config.train_data)
    training_set = data.load_training_set(
        sources, config.data_root, config.channels, config.patch_size
    )
    log(training_set.report)
    return training_set


def learning_rate(config):
    """The optimizer's learning rate: a float, or a schedule of the step."""
    warmup = config.warmup_steps
    if config.lr_schedule == "constant" and not warmup:
        return config.learning_rate
    # a constant schedule is a cosine that decays to all of itself (alpha 1)
    alpha = 1.0 if config.lr_schedule == "constant" else 0.0
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, config.steps, alpha)
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        config.steps - warmup,
        alpha,
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
    )


def train(config, out_dir, images=None, strategy=None, log=print, time_limit=None):
    """Trains (or resumes) a run in `out_dir`; returns the trained Keras model.

    Args:
        config: `TrainConfig`.
        out_dir: the run folder; an existing run with a checkpoint resumes automatically
            (its saved config must match `config`).
        images: optional list of training images ((H, W, C), float32 in [0, 1] or uint8),
            drawn equally often; default: read `config.train_data` under the data root.
        strategy: optional `tf.distribute.Strategy` (default: `make_strategy()`).
        log: where progress lines go.
        time_limit: optional seconds from this call: the run stops at the last checkpoint
            that ends within them (at least one chunk runs) and writes `model.keras`;
            training the same run again continues it.

    Raises:
        TrainingError: when another live process is training `out_dir`; on a non-finite loss
            (the last good checkpoint is kept); or on a config that
            differs from the one the run started with.
    """
    started = time.time()
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit must be a positive number of seconds, not {time_limit}")
    # before touching out_dir: a missing data folder must cost nothing
    probabilities = None
    if images is None:
        training_set = _training_set(config, log)
        images, probabilities = training_set.images, training_set.probabilities
    validation_groups = None
    if config.val_data is not None:
        validation_groups = validation.validation_inputs(config.val_data, config, config.data_root)
    _check_model(config)
    data.check_patch_source(images, config.patch_size, probabilities)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(config.precision)
    if config.precision == "auto":
        log(f"precision auto: training in {precision} on this machine")
    with RunLock(out_dir), global_dtype_policy(precision):
        limit = None if time_limit is None else TimeLimit(time_limit, started)
        inputs = _Inputs(images, probabilities, validation_groups)
        return _train_locked(config, out_dir, inputs, strategy, log, precision, limit)


@contextlib.contextmanager
def global_dtype_policy(name):
    # Keras' policy is process-wide: restore it, or a later model in the same process
    # (an evaluation, the next run of an experiment script) would inherit it.
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _check_model(config):
    """Builds the model and runs it on one training patch: a model that cannot be built, or a
    patch below its smallest input, is refused before the run folder exists."""
    import numpy as np

    with global_dtype_policy("float32"):
        try:
            model = build_model(config.model, in_channels=config.channels, **config.model_args)
        except (TypeError, ValueError) as error:
            raise ValueError(f"model_args {config.model_args}: {error}") from None

        def runs_at(side):
            try:
                model(np.zeros((1, side, side, model.input_shape[-1]), "float32"), training=False)
            except Exception:  # noqa: BLE001  the backend's own shape error, whichever it is
                return False
            return True

        if not runs_at(config.patch_size):
            smallest = next(
                (side for side in range(config.patch_size + 1, 257) if runs_at(side)), None
            )
            raise ValueError(
                f"patch_size {config.patch_size} is below the smallest input of {config.model} "
                f"with {config.model_args} ({smallest or 'over 256'} pixels a side)"
            )


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What a run trains on and is validated with (see `train`)."""

    images: list
    probabilities: object = None
    validation_groups: object = None


def _train_locked(config, out_dir, inputs, strategy, log, precision, limit=None):
    check_or_write_config(config, out_dir)
    images = inputs.images
    final = out_dir / "model.keras"
    if final.is_file() and read_progress(out_dir)["steps"] >= config.steps:
        log(f"{out_dir} is finished ({config.steps} steps): loading {final}")
        return keras.models.load_model(final, compile=False)
    keras.utils.set_random_seed(config.seed)
    tensorflow_backend = keras.backend.backend() == "tensorflow"
    strategy, scope = _distribution(strategy, config, tensorflow_backend)
    with scope:
        model, trained = _compiled_models(config, out_dir, images)
    manager, restore = _checkpoints(out_dir / "checkpoints", trained, tensorflow_backend)
    done = 0
    if manager.latest_checkpoint:
        restore(manager.latest_checkpoint)
        done = int(Path(manager.latest_checkpoint).stem.rsplit("-", 1)[1])
        log(f"resuming {out_dir} at step {done}")
    elif config.init_from:
        warm_start(model, config.init_from)
        record_init_budget(out_dir, config.init_from)
        log(f"starting {out_dir} from the weights of {config.init_from}")
    chunk = config.checkpoint_every
    total_chunks = math.ceil(config.steps / chunk)
    if done < config.steps:
        degradation = config.degradation()
        dataset = data.training_batches(
            images,
            degradation,
            config.patch_size,
            config.batch_size,
            seed=config.seed + done,  # a resumed run draws fresh patches, not a replay
            steps_per_epoch=chunk,
            workers=config.data_workers,
            noise_map=config.noise_map,
            probabilities=inputs.probabilities,
        )
        checkpointer = Checkpointer(manager, chunk, out_dir / "progress.json")

        def save_best(path):
            copy = model if precision == "float32" else _float32_copy(model, config)
            save_atomically(copy, path)

        callbacks = [checkpointer] + _callbacks(
            config, out_dir, images, degradation, inputs.validation_groups, save_best, log
        )
        callbacks += [limit] if limit is not None else []  # last: sees the chunk's checkpoint
        start = time.time()
        if tensorflow_backend and _multi_worker(strategy):
            from keras_resunet.training.multi_worker import fit_multi_worker

            fit_multi_worker(
                trained, dataset, strategy, chunk, done // chunk, total_chunks, callbacks, config
            )
        else:
            trained.fit(
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
        reached = read_progress(out_dir)["steps"]
        steps_run = reached - done
        log(
            f"{steps_run} steps in {seconds:.0f} s "
            f"({steps_run * config.batch_size / seconds:.0f} patches/s)"
        )
        if reached < config.steps:
            log(
                f"time limit: stopped at step {reached} of {config.steps}; training the run "
                "again (`resunet train ... --resume`) continues it"
            )
    if precision != "float32":
        model = _float32_copy(model, config)
    save_atomically(model, out_dir / "model.keras")
    return model


def _distribution(strategy, config, tensorflow_backend):
    """(strategy, the scope models are built in): a tf.distribute strategy on the TensorFlow
    backend, none on the others."""
    if tensorflow_backend:
        strategy = strategy or make_strategy()
        return strategy, strategy.scope()
    if strategy is not None:
        raise ValueError(
            f"tf.distribute needs the TensorFlow backend, not {keras.backend.backend()}"
        )
    if config.quantization_aware:
        raise ValueError("`quantization_aware` runs on the TensorFlow backend (TFLite's own)")
    torch_conv.enable()  # same numbers, fewer copies (keras_resunet/torch_conv.py)
    return None, contextlib.nullcontext()


def _compiled_models(config, out_dir, images):
    """(the model that gets saved, the model fit trains: itself, or with int8 rounding around
    its layers for quantization-aware training, the same weights), compiled, optimizer built."""
    model = build_model(config.model, in_channels=config.channels, **config.model_args)
    trained = model
    if config.quantization_aware:
        from keras_resunet.int8_simulation import with_int8_rounding

        trained = with_int8_rounding(model, _int8_ranges(config, out_dir, images))
    optimizer = keras.optimizers.Adam(learning_rate(config), clipnorm=config.clipnorm)
    loss = RestorationLoss(config.alpha, config.beta, config.perceptual, config.pixel_loss)
    trained.compile(
        optimizer=optimizer, loss=loss, metrics=[psnr_metric], jit_compile=config.jit_compile
    )
    trained.optimizer.build(trained.trainable_variables)
    return model, trained


def _checkpoints(folder, trained, tensorflow_backend):
    """(checkpoint manager, restore function) of the run's checkpoint folder. A run keeps the
    format it started with: TensorFlow's (tf.train) on the TensorFlow backend, .keras files on
    the others; .keras files load on every backend."""
    tf_format = (folder / "checkpoint").is_file()
    if tf_format and not tensorflow_backend:
        raise TrainingError(
            f"{folder.parent} has TensorFlow checkpoints: resume it with KERAS_BACKEND=tensorflow"
        )
    if tensorflow_backend and (tf_format or not any(folder.glob("ckpt-*.keras"))):
        import tensorflow as tf

        checkpoint = tf.train.Checkpoint(model=trained, optimizer=trained.optimizer)
        manager = tf.train.CheckpointManager(checkpoint, folder, max_to_keep=2)
        return manager, lambda path: checkpoint.restore(path).expect_partial()
    return KerasCheckpoints(folder, trained), trained.load_weights


def _callbacks(config, out_dir, images, degradation, validation_groups, save_best, log):
    """Validation (when the run has validation photos), the CSV log and, where TensorFlow is
    installed, TensorBoard scalars and image summaries."""
    chunk = config.checkpoint_every
    callbacks = []
    if validation_groups is not None:
        every = config.val_every or chunk
        callbacks.append(
            validation.Validation(validation_groups, every, chunk, out_dir, save_best, log)
        )
    callbacks.append(keras.callbacks.CSVLogger(str(out_dir / "log.csv"), append=True))
    if tensorflow_available():  # TensorBoard's writers are TensorFlow's
        callbacks += [
            keras.callbacks.TensorBoard(str(out_dir / "tensorboard"), update_freq="epoch"),
            ImageSummaries(
                out_dir / "tensorboard" / "images",
                images,
                degradation,
                chunk,
                config.seed,
                config.noise_map,
            ),
        ]
    return callbacks


def _int8_ranges(config, out_dir, images):
    """The activation ranges a quantization-aware run rounds to: measured once on the start
    model (`init_from`) over int8 calibration crops of the training images, degraded as in
    training, and kept in the run folder so a resumed run rounds alike."""
    path = out_dir / "int8_ranges.json"
    if path.is_file():
        return json.loads(path.read_text())
    import tensorflow as tf

    from keras_resunet.calibration import Codec, representative
    from keras_resunet.int8_simulation import activation_ranges

    start = build_model(config.model, in_channels=config.channels, **config.model_args)
    warm_start(start, config.init_from)
    spec = tf.TensorSpec((None, None, None, start.input_shape[-1]), tf.float32)
    degradation = None if config.noise_map else config.degradation()
    float_images = [to_float01(image) for image in images[:16]]
    crops = representative(float_images, spec, config.noise_map, Codec("float32"), degradation)
    ranges = activation_ranges(start, (sample[0] for sample in crops()))
    write_text_atomically(path, json.dumps(ranges, indent=1))
    return ranges


def _multi_worker(strategy):
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _float32_copy(model, config):
    """The trained model with float32 layers: under a mixed policy only the computation is
    in 16 bits, the variables are float32, so they carry over unchanged."""
    with global_dtype_policy("float32"):
        copy = build_model(config.model, in_channels=config.channels, **config.model_args)
    copy.set_weights(model.get_weights())
    return copy
