"""What int8 calibration and export checks feed a model: its input as an artifact takes it (the
noise-level channel, float32 or uint8 I/O), the photos (`check_images`) and the seeded crops
(`representative`). Shared by export and by quantization-aware training.
"""

from pathlib import Path

import numpy as np

from keras_resunet import data, data_sources, degradations

# Calibration crops spread over noise levels; a noise-map model sees 0 ... 75/255.
CALIBRATION_SIGMAS = (0.0, 5 / 255, 15 / 255, 25 / 255, 0.1, 50 / 255, 75 / 255)

FLOAT_TOLERANCE = 1e-4


def takes_noise_map(model):
    return model.input_shape[-1] == model.output_shape[-1] + 1


def model_input(degraded, sigma, noise_map):
    """`degraded` (H, W, C) as the model's input: with a noise-level channel when it takes one."""
    if not noise_map:
        return degraded
    level = np.full((*degraded.shape[:-1], 1), sigma, np.float32)
    return np.concatenate([degraded, level], axis=-1)


class Codec:
    """How float32 images in [0, 1] become an artifact's input and its output becomes float32
    again, and how far from Keras a float artifact may then be (one level for uint8 I/O)."""

    def __init__(self, io):
        self.io = io
        self.tolerance = FLOAT_TOLERANCE if io == "float32" else 1 / 255 + 1e-6

    def encode(self, batch):
        if self.io == "float32":
            return np.asarray(batch, np.float32)
        return np.round(np.clip(batch, 0, 1) * 255).astype(np.uint8)

    def decode(self, batch):
        batch = np.asarray(batch)
        return batch.astype(np.float32) / 255 if batch.dtype == np.uint8 else batch


def check_images(folder=None, limit=16):
    """Images for verification and int8 calibration: the given folder, else BSDS300 train when
    a data root is found, else scikit-image's sample photographs."""
    root = None
    if folder is None:
        try:
            root = data_sources.resolve_data_root()
            folder = root / "BSDS300" / "images" / "train"
        except FileNotFoundError:
            folder = None
    if folder is not None and Path(folder).is_dir():
        rgb, _ = data.load_images(folder, channels=3, limit=limit)
        # named without the machine's absolute path: reports and sidecars travel
        name = Path(folder).relative_to(root) if root else Path(folder).name
        source = f"the first {len(rgb)} images of {name}"
    else:
        from keras_resunet.demo import TRAIN_IMAGES, sample_image

        rgb = [sample_image(name) for name in TRAIN_IMAGES]
        source = f"scikit-image samples {', '.join(TRAIN_IMAGES)}"
    gray = [image.mean(axis=-1, keepdims=True) for image in rgb]
    return rgb + gray, source


def representative(
    images, spec, noise_map, codec, degradation=None, count=128, size=96, sigmas=CALIBRATION_SIGMAS
):
    """Calibration samples: seeded crops of `images` (the fixed size when there is one), noisy
    at the levels `sigmas` in turn for a noise-level-map model, else cut from the image degraded by
    `degradation`, what the model restores (default: Gaussian noise at sigma 0.1). A deblurring model
    calibrated on sharp crops gets ranges its inputs do not have: 0.35 dB more int8 loss."""
    degradation = degradation or degradations.GaussianNoise(0.1)
    # `spec`: an input TensorSpec, or the fixed (height, width), or None for any size
    if spec is not None and hasattr(spec, "shape"):
        spec = (spec.shape[1], spec.shape[2]) if spec.shape[1] else None
    fixed = tuple(spec) if spec else None
    if fixed:
        images = [
            image for image in images if image.shape[0] >= fixed[0] and image.shape[1] >= fixed[1]
        ]
        if not images:
            raise ValueError(f"int8 calibration at {fixed[0]}x{fixed[1]} needs images that large")

    def generate():
        rng = np.random.default_rng(0)
        for index in range(count):
            image = images[index % len(images)]
            height, width = fixed or (min(size, image.shape[0]), min(size, image.shape[1]))
            top = rng.integers(0, image.shape[0] - height + 1)
            left = rng.integers(0, image.shape[1] - width + 1)
            window = (slice(top, top + height), slice(left, left + width))
            if noise_map:
                crop = image[window]
                sigma = sigmas[index % len(sigmas)]
                degraded = crop + rng.normal(0, sigma, crop.shape).astype(np.float32)
            else:
                # the whole photo degraded, then cropped: a crop blurred on its own wraps its
                # edges around (circular convolution), edges no photo has
                sigma = None
                degraded = degradations.apply(degradation, image, [1, index])[window]
            yield [codec.encode(model_input(degraded, sigma, noise_map)[None])]

    return generate
