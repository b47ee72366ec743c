"""Callbacks of the trainer: checkpoints with progress, a time limit, and image summaries for
TensorBoard."""

import json
import math
import time

import keras
import numpy as np

from keras_resunet import degradations
from keras_resunet.io import to_float01, write_text_atomically
from keras_resunet.training.run_folder import read_progress


class Checkpointer(keras.callbacks.Callback):
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


class TimeLimit(keras.callbacks.Callback):
    """Stops a run at its last checkpoint that ends within `seconds` of `started`: after each
    chunk, when one more (at the mean chunk time so far) would end past the limit. The first
    chunk always runs; the run stays resumable."""

    def __init__(self, seconds, started, clock=time.time):
        super().__init__()
        self.seconds, self.started, self.clock = seconds, started, clock
        self.chunks = 0
        self.stopped = False

    def on_train_begin(self, logs=None):
        self.fit_started = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        self.chunks += 1
        now = self.clock()
        per_chunk = (now - self.fit_started) / self.chunks
        if now + per_chunk > self.started + self.seconds:
            self.model.stop_training = True
            self.stopped = True


class ImageSummaries(keras.callbacks.Callback):
    """After each chunk, writes degraded | restored | clean crops of a few fixed training
    images to TensorBoard, so a run can be watched, not just its loss."""

    def __init__(
        self, folder, images, degradation, steps_per_chunk, seed, noise_map, count=3, size=96
    ):
        super().__init__()
        crops = []
        for image in images[:count]:
            image = to_float01(image)  # training images may be held as uint8
            top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
            crops.append(image[max(top, 0) : top + size, max(left, 0) : left + size])
        side = min(min(c.shape[0], c.shape[1]) for c in crops)
        self.clean = np.stack([c[:side, :side] for c in crops])
        import tensorflow as tf

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
        import tensorflow as tf

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
