"""DnCNN: a plain deep CNN that predicts the noise (residual learning) with batch norm.

Reference: Zhang, Zuo, Chen, Meng, Zhang, "Beyond a Gaussian Denoiser: Residual Learning of
Deep CNN for Image Denoising", IEEE TIP 2017.
"""

import keras

from keras_resunet.models import blocks


def build_dncnn(*, in_channels=3, depth=17, filters=64, normalization="batch", name="dncnn"):
    """Builds DnCNN: conv+ReLU, (depth - 2) x (conv+BN+ReLU), conv; output = input - noise.

    With the paper's depth 17 and 64 features the model has 560,323 parameters for RGB
    (558,017 for grayscale), batch-norm moving statistics included. Any H x W works (no
    downsampling). Images are float32 NHWC in [0, 1].

    Args:
        in_channels: int, 1 or 3. Default 3.
        depth: int >= 3, convolution layers. Default 17 (the paper's for known sigma).
        filters: int >= 1, features per layer. Default 64.
        normalization: "batch" (the paper), None, "group" or "layer".
        name: model name.

    Returns:
        A functional `keras.Model` with input shape (None, None, in_channels).

    Example:
        >>> model = build_dncnn(in_channels=1)
        >>> model.compile("adam", "mse")
    """
    _positive_int(in_channels=in_channels, filters=filters)
    if not isinstance(depth, int) or depth < 3:
        raise ValueError(f"`depth` must be an int >= 3. Received: depth={depth!r}")
    inputs = keras.Input(shape=(None, None, in_channels), name="image")
    x = blocks.apply_conv(inputs, filters, f"{name}_first", activation="relu")
    for index in range(depth - 2):
        x = blocks.apply_conv(
            x, filters, f"{name}_mid{index}", normalization=normalization, activation="relu"
        )
    noise = keras.layers.Conv2D(in_channels, 3, padding="same", name=f"{name}_noise")(x)
    outputs = keras.layers.Subtract(name=f"{name}_residual")([inputs, noise])
    return keras.Model(inputs, outputs, name=name)


def _positive_int(**values):
    for arg, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
