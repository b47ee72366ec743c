"""The embedded end-to-end demo: no download, no GPU, about a minute on 2 CPU cores.

Photographs that scikit-image ships are degraded with the task's degradation and restored by
NLM and by the shipped ResUNet for the task (`saved_models/`); a PSNR/SSIM table is printed and
a side-by-side figure per photograph is written. With `train_steps` (or when no model for the
task is shipped) a small ResUNet is first trained for that many steps on other shipped photos.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import keras

from keras_resunet import data, degradations, io, metrics, pretrained, results
from keras_resunet.baselines import NLMDenoiser
from keras_resunet.denoisers import KerasDenoiser
from keras_resunet.inference import load_denoiser, restore_image
from keras_resunet.models import build_resunet

TRAIN_IMAGES = ("rocket", "immunohistochemistry", "colorwheel")
TEST_IMAGES = ("astronaut", "chelsea", "coffee")


@dataclass(frozen=True)
class DemoConfig:
    """Attributes:
    task: "denoise" or "deblur_denoise".
    sigma: noise sigma on [0, 1].
    train_steps: 0 = use the shipped model; > 0 = train a small ResUNet that long instead.
    batch_size, patch_size, base_filters: the small ResUNet's training (train_steps > 0).
    seed: degradation and training seed.
    output: folder for the figures.
    save_model: also save the trained model here (train_steps > 0).
    """

    task: str = "denoise"
    sigma: float = 0.1
    train_steps: int = 0
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


def train_small_model(config, degradation, log=print):
    """A small ResUNet trained for `config.train_steps` on scikit-image photographs."""
    keras.utils.set_random_seed(config.seed)
    train = [sample_image(name) for name in TRAIN_IMAGES]
    dataset = data.patch_dataset(
        train, degradation, config.patch_size, config.batch_size, seed=config.seed
    )
    model = build_resunet(base_filters=config.base_filters)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=False)
    start = time.time()
    log(f"training a {model.count_params():,}-parameter ResUNet for {config.train_steps} steps ...")
    model.fit(dataset, steps_per_epoch=config.train_steps, epochs=1, verbose=0, shuffle=False)
    log(f"trained in {time.time() - start:.0f} s")
    if config.save_model:
        Path(config.save_model).parent.mkdir(parents=True, exist_ok=True)
        model.save(config.save_model)
        log(f"model saved to {config.save_model}")
    return KerasDenoiser(model, name="resunet (demo-trained)")


def run_demo(config=DemoConfig(), log=print):
    """Runs the demo; returns {image: {method: (PSNR, SSIM)}} with methods degraded/NLM/model."""
    degradation = degradations.make_degradation(config.task, sigma=config.sigma)
    kernel = degradations.blur_kernel(degradation)
    name = pretrained.DEFAULT_FOR_TASK[config.task]
    if config.train_steps > 0:
        model = train_small_model(config, degradation, log)
    else:
        # a missing model is an error that says how to get it, never a stand-in under its name
        model = load_denoiser(name)
        log(f"restoring with the shipped model {name} ({pretrained.locate(name)})")
    methods = {"NLM": NLMDenoiser(config.sigma, kernel=kernel), "ResUNet": model}

    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    table = {}
    log(f"{'image':<10} {'degraded':>16} {'NLM':>16} {'ResUNet':>16}   (PSNR dB / SSIM)")
    for index, image_name in enumerate(TEST_IMAGES):
        clean = sample_image(image_name)
        degraded = degradations.apply(degradation, clean, [config.seed + index, 0])
        images = {"degraded": degraded}
        images.update({title: restore_image(m, degraded) for title, m in methods.items()})
        row = {
            title: (float(metrics.psnr(image, clean)), float(metrics.ssim(image, clean)))
            for title, image in images.items()
        }
        table[image_name] = row
        log(f"{image_name:<10} " + " ".join(f"{p:>9.2f} / {s:.3f}" for p, s in row.values()))
        panels = [("ground truth", clean)]
        panels += [(f"{title} {row[title][0]:.2f} dB", image) for title, image in images.items()]
        results.make_figure(output / f"{image_name}.png", panels)
    log(f"figures (ground truth | degraded | NLM | ResUNet) written to {output.resolve()}/")
    return table
