"""The embedded end-to-end demo: no download, no GPU, about a minute on 2 CPU cores.

Until shipped pretrained models exist, it trains a small ResUNet for a few hundred steps on
patches of photographs that scikit-image ships, then restores other shipped photographs degraded
with the task's degradation, and prints PSNR/SSIM of the degraded input and of the restoration.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_resunet import data, degradations, io, metrics
from keras_resunet.models import build_resunet

TRAIN_IMAGES = ("rocket", "immunohistochemistry", "coffee")
TEST_IMAGES = ("astronaut", "chelsea")


@dataclass(frozen=True)
class DemoConfig:
    task: str = "denoise"
    sigma: float = 0.1
    steps: int = 300
    batch_size: int = 16
    patch_size: int = 48
    base_filters: int = 8
    seed: int = 0
    output: str = "demo_output"
    save_model: str | None = None


def sample_image(name):
    """A photograph shipped with scikit-image, as float32 RGB in [0, 1]."""
    from skimage import data as skdata

    return io.to_float01(getattr(skdata, name)())[..., :3]


def run_demo(config=DemoConfig(), log=print):
    """Runs the demo; returns a dict with per-image PSNR/SSIM of degraded and restored images."""
    keras.utils.set_random_seed(config.seed)
    degradation = degradations.make_degradation(config.task, sigma=config.sigma)
    train = [sample_image(name) for name in TRAIN_IMAGES]
    dataset = data.patch_dataset(
        train,
        degradation,
        patch_size=config.patch_size,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    model = build_resunet(base_filters=config.base_filters)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=False)
    start = time.time()
    log(f"training a {model.count_params():,}-parameter ResUNet for {config.steps} steps ...")
    model.fit(dataset, steps_per_epoch=config.steps, epochs=1, verbose=0)
    log(f"trained in {time.time() - start:.0f} s")
    if config.save_model:
        Path(config.save_model).parent.mkdir(parents=True, exist_ok=True)
        model.save(config.save_model)
        log(f"model saved to {config.save_model}")

    clean = [sample_image(name) for name in TEST_IMAGES]
    degraded, _ = data.evaluation_pairs(clean, degradation, seed=config.seed)
    restored = [model.predict(image[None], verbose=0)[0] for image in degraded]
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    rows = {}
    log(f"{'image':<12} {'degraded PSNR':>14} {'restored PSNR':>14} {'SSIM in':>8} {'SSIM out':>9}")
    for name, noisy, result, reference in zip(TEST_IMAGES, degraded, restored, clean):
        row = {
            "psnr_degraded": float(metrics.psnr(noisy, reference)),
            "psnr_restored": float(metrics.psnr(result, reference)),
            "ssim_degraded": float(metrics.ssim(noisy, reference)),
            "ssim_restored": float(metrics.ssim(result, reference)),
        }
        rows[name] = row
        log(
            f"{name:<12} {row['psnr_degraded']:>14.2f} {row['psnr_restored']:>14.2f} "
            f"{row['ssim_degraded']:>8.3f} {row['ssim_restored']:>9.3f}"
        )
        io.save_image(output / f"{name}.png", np.concatenate([reference, noisy, result], axis=1))
    log(f"side-by-side images (clean | degraded | restored) written to {output.resolve()}/")
    return rows
