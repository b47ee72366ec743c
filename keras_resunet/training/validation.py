"""Validation during training: PSNR on fixed noisy crops of held-out photos, and the best
weights by it.

A noise-map model is scored at sigma 15, 25 and 50 (/255) and ranked by their mean; another
model under its training degradation. Each validation image gives one centre crop, degraded
once with a seed derived from its index, so every measurement of a run sees the same inputs.
"""

import json
import math
from pathlib import Path

import keras
import numpy as np

from keras_resunet import data, data_sources, degradations
from keras_resunet.io import list_images, read_image, write_text_atomically
from keras_resunet.metrics import psnr
from keras_resunet.training.run_folder import BEST_MODEL, BEST_RECORD, read_best, read_progress

NOISE_MAP_SIGMAS = (15, 25, 50)  # /255
CROP = 192  # pixels a side: 84 photos at three levels take seconds on two CPU cores
SEED = 2024


def center_crop(image, size):
    """The central `size` x `size` crop of an (H, W, C) image (the whole side where smaller)."""
    height, width = image.shape[:2]
    top, left = max((height - size) // 2, 0), max((width - size) // 2, 0)
    return image[top : top + size, left : left + size]


def validation_inputs(folder, config, data_root=None, crop=CROP):
    """{log key: [(model inputs (n, h, w, C'), clean (n, h, w, C)), ...]} for the images in
    `folder` (read recursively; relative to the data root), crops of one shape batched.

    Keys: `val_psnr_15`, `val_psnr_25`, `val_psnr_50` for a noise-map model (its input carries
    the noise-level channel), else `val_psnr`.

    Raises:
        FileNotFoundError: the folder does not exist.
    """
    folder = data_sources.resolve_folder(folder, data_root)
    if not folder.is_dir():
        raise FileNotFoundError(f"Validation image folder not found: {folder}")
    crops = [
        center_crop(read_image(path, config.channels), crop)
        for path in list_images(folder, recursive=True)
    ]
    if config.noise_map:
        levels = {f"val_psnr_{s}": s / 255 for s in NOISE_MAP_SIGMAS}
        kinds = {key: degradations.GaussianNoise(sigma=sigma) for key, sigma in levels.items()}
    else:
        levels, kinds = {"val_psnr": None}, {"val_psnr": config.degradation()}
    groups = {}
    for key, degradation in kinds.items():
        degraded, clean = data.evaluation_pairs(crops, degradation, seed=SEED)
        if levels[key] is not None:
            degraded = [
                np.concatenate([d, np.full((*d.shape[:2], 1), levels[key], np.float32)], -1)
                for d in degraded
            ]
        groups[key] = _batches(degraded, clean)
    return groups


def _batches(degraded, clean, size=8):
    """(inputs, cleans) batches of up to `size` crops of one shape: a few compiled calls
    instead of one eager call per crop."""
    by_shape = {}
    for pair in zip(degraded, clean, strict=True):
        by_shape.setdefault(pair[0].shape, []).append(pair)
    batches = []
    for pairs in by_shape.values():
        for start in range(0, len(pairs), size):
            chunk = pairs[start : start + size]
            batches.append((np.stack([p[0] for p in chunk]), np.stack([p[1] for p in chunk])))
    return batches


def score(model, groups):
    """{key: mean PSNR (dB) over images} of `model` on `validation_inputs` (output clipped to
    [0, 1]), and `val_psnr`, the mean over the keys, when there are several."""
    scores = {}
    for key, batches in groups.items():
        values = []
        for inputs, clean in batches:
            restored = keras.ops.convert_to_numpy(model.predict_on_batch(inputs))
            values.extend(np.atleast_1d(psnr(restored.astype(np.float32), clean)))
        scores[key] = float(np.mean(values))
    if "val_psnr" not in scores:
        scores["val_psnr"] = float(np.mean(list(scores.values())))
    return scores


class Validation(keras.callbacks.Callback):
    """Scores the model every `every` steps (at chunk ends) into the epoch logs, so log.csv and
    TensorBoard get the numbers; chunks in between log NaN. When the mean beats the run's best so
    far, `save_best(path)` writes the weights to best.keras and best.json records the scores.

    Put it after the checkpointer and before the loggers in the callback list.
    """

    def __init__(self, groups, every, steps_per_chunk, out_dir, save_best, log=print):
        super().__init__()
        self.groups, self.every, self.steps_per_chunk = groups, every, steps_per_chunk
        self.out_dir, self.save_best, self.log = Path(out_dir), save_best, log
        best = read_best(out_dir)
        self.best = best["val_psnr"] if best else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        steps = (epoch + 1) * self.steps_per_chunk
        if steps % self.every or getattr(self.model, "stop_training", False):
            logs.update({key: math.nan for key in self._keys()})
            return
        scores = score(self.model, self.groups)
        logs.update(scores)
        line = ", ".join(f"{key} {value:.3f}" for key, value in scores.items())
        if scores["val_psnr"] > self.best:
            self.best = scores["val_psnr"]
            self.save_best(self.out_dir / BEST_MODEL)
            # the checkpointer ran first: progress.json holds this step's training time
            seconds = read_progress(self.out_dir)["train_seconds"]
            record = {"steps": steps, "train_seconds": seconds}
            record.update({k: round(v, 4) for k, v in scores.items()})
            write_text_atomically(self.out_dir / BEST_RECORD, json.dumps(record, indent=1))
            line += " (best so far: kept as best.keras)"
        self.log(f"validation at step {steps}: {line}")

    def _keys(self):
        keys = list(self.groups)
        return keys if "val_psnr" in keys else [*keys, "val_psnr"]
