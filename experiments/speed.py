"""Training speed of `fit` on the real input pipeline: `measure_throughput`, used by
`python -m experiments.throughput` in one child process per Keras backend."""

import time

import keras
import numpy as np

from keras_resunet import data, degradations, torch_conv
from keras_resunet.losses import RestorationLoss
from keras_resunet.models import build_model
from keras_resunet.precision import resolve_precision
from keras_resunet.training.trainer import global_dtype_policy


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
    with global_dtype_policy(precision):
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
