"""Small custom layers the builders need, written with `keras.ops` only.

They exist because the stock Keras layers either do not export with dynamic height and width
(`UpSampling2D(interpolation="bilinear")` fails in a SavedModel with unknown H, W: it branches on
a symbolic shape) or have no equivalent (pad to a multiple of 2**depth and crop back).
"""

import keras
import numpy as np
from keras import ops

_PACKAGE = "keras_resunet"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PadToMultiple(keras.layers.Layer):
    """Reflect-pads the bottom and right of NHWC images so H and W are multiples of `multiple`.

    Reflection needs the pad to be smaller than the image side, so sides must be at least
    `multiple // 2 + 1` pixels (see `minimum_size`).

    Args:
        multiple: int >= 1, usually `2**depth` of the UNet.
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        if int(multiple) < 1:
            raise ValueError(f"`multiple` must be >= 1. Received: multiple={multiple}")
        self.multiple = int(multiple)

    def call(self, x):
        if self.multiple == 1:
            return x
        smallest = minimum_size(self.multiple)
        # a known size is checked here (eager calls): a graph's MirrorPad error names no size
        known = [side for side in x.shape[1:3] if isinstance(side, int)]
        if known and min(known) < smallest:
            raise ValueError(
                f"Images must be at least {smallest}x{smallest} pixels for this model (it "
                f"pads them to a multiple of {self.multiple}). Received: shape {tuple(x.shape)}"
            )
        shape = ops.shape(x)
        # (m - h % m) % m rather than (-h) % m: ONNX converters turn the modulo of a negative
        # number into C's remainder, which would give a negative pad.
        pad_h = (self.multiple - shape[1] % self.multiple) % self.multiple
        pad_w = (self.multiple - shape[2] % self.multiple) % self.multiple
        if keras.backend.backend() == "torch":
            # torch reflect-pads only the trailing spatial axes of NCHW tensors, and Keras'
            # torch pad drops zero pads, which leaves a 4D tensor with a pad torch refuses
            # (an all-zero one, or one side only): call torch with both sides' pads instead
            # (sizes are Python ints here)
            if pad_h or pad_w:
                import torch

                x = ops.transpose(x, (0, 3, 1, 2))
                x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
                x = ops.transpose(x, (0, 2, 3, 1))
        else:
            x = ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="reflect")
        return _restore_channels(x, shape[1] + pad_h, shape[2] + pad_w, self._channels)

    def build(self, input_shape):
        self._channels = input_shape[-1]

    def compute_output_shape(self, input_shape):
        def padded(side):
            return None if side is None else side + (-side) % self.multiple

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


def _restore_channels(x, height, width, channels):
    """Re-states the static channel count that dynamic pad / repeat lose in TensorFlow's shape
    inference; TFLite's builtin convolutions need it."""
    return ops.reshape(x, (-1, height, width, channels))


def minimum_size(multiple):
    """Smallest image side `PadToMultiple(multiple)` accepts (reflection must fit in the image)."""
    return 1 if multiple == 1 else multiple // 2 + 1


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CropToMatch(keras.layers.Layer):
    """Crops `x` (first input) to the height and width of `reference` (second input)."""

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Upsample2x(keras.layers.Layer):
    """x2 spatial upsampling, nearest or bilinear, exportable with dynamic H and W.

    Bilinear uses half-pixel centres with edge clamping, identical to `tf.image.resize(...,
    "bilinear")` and PyTorch's `align_corners=False`. It is computed as nearest-neighbour
    repetition followed by a fixed separable [1/4, 1/2, 1/4] filter on an edge-replicated border,
    which needs only repeat, concatenate and a depthwise convolution: ops every exporter knows.

    Args:
        interpolation: "bilinear" (default) or "nearest".
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                "`interpolation` must be 'bilinear' or 'nearest'. "
                f"Received: interpolation={interpolation!r}"
            )
        self.interpolation = interpolation

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("Upsample2x needs a known channel count.")
        self._channels = channels
        if self.interpolation == "bilinear":
            taps = np.array([0.25, 0.5, 0.25], dtype="float32")
            kernel = taps[:, None] * taps[None, :]
            kernel = kernel[:, :, None, None].repeat(channels, axis=2)
            # A constant, not a weight: it is not trained and need not be saved.
            self._kernel = kernel

    def call(self, x):
        shape = ops.shape(x)
        x = ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
        x = _restore_channels(x, 2 * shape[1], 2 * shape[2], self._channels)
        if self.interpolation == "nearest":
            return x
        x = ops.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
        x = ops.concatenate([x[:, :, :1], x, x[:, :, -1:]], axis=2)
        kernel = ops.cast(ops.convert_to_tensor(self._kernel), x.dtype)
        return ops.depthwise_conv(x, kernel, strides=1, padding="valid")

    def compute_output_shape(self, input_shape):
        def doubled(side):
            return None if side is None else 2 * side

        return (input_shape[0], doubled(input_shape[1]), doubled(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ImageChannels(keras.layers.Layer):
    """The first `channels` channels of an NHWC tensor: the image part of an input that also
    carries a noise-level map, which the global residual must not add to the output."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)

    def call(self, x):
        return x[..., : self.channels]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FromUint8(keras.layers.Layer):
    """uint8 pixels (0-255) to float32 in [0, 1]: the front of a model with integer I/O."""

    def call(self, x):
        return ops.cast(x, "float32") / 255.0

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, dtype="float32")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ToUint8(keras.layers.Layer):
    """float32 in [0, 1] to uint8 pixels, clipped and rounded: the back of a model with integer
    I/O."""

    def call(self, x):
        return ops.cast(ops.round(ops.clip(x, 0.0, 1.0) * 255.0), "uint8")

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, dtype="uint8")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NoiseLevelMap(keras.layers.Layer):
    """[image (N, H, W, C), sigma (N, 1)] -> (N, H, W, C + 1): the image with a constant
    noise-level channel, so an exported noise-map model takes a number, not a map."""

    def call(self, inputs):
        image, sigma = inputs
        level = ops.ones_like(image[..., :1]) * ops.cast(sigma, image.dtype)[:, None, None, :]
        return ops.concatenate([image, level], axis=-1)

    def compute_output_shape(self, input_shapes):
        image_shape, _ = input_shapes
        channels = None if image_shape[-1] is None else image_shape[-1] + 1
        return (*image_shape[:-1], channels)
