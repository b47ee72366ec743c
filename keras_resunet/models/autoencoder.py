"""A convolutional denoising autoencoder: encoder and decoder with no skip connections.

Reference: Vincent et al., "Extracting and Composing Robust Features with Denoising
Autoencoders", ICML 2008; Gondara, "Medical Image Denoising Using Convolutional Denoising
Autoencoders", ICDM Workshops 2016 (the convolutional form).
"""

import keras

from keras_resunet.models import blocks
from keras_resunet.models.layers import CropToMatch


def build_autoencoder(
    *, in_channels=3, base_filters=32, depth=3, upsampling="bilinear", name="autoencoder"
):
    """Builds a denoising autoencoder: per level a 3x3 conv and a 4x4 stride-2 conv (width
    doubled), mirrored by x2 upsampling + 3x3 convs, then a sigmoid 3x3 conv to the image.

    Everything the output knows passes through the 1 / 2**depth bottleneck: that is what
    separates it from a UNet, and why it blurs fine detail. Any H x W of at least
    `2**(depth - 1) + 1` pixels works (reflect-padded to a multiple of 2**depth, cropped back).
    With the defaults (RGB) the model has 1,455,907 parameters.

    Args:
        in_channels: int, 1 or 3. Default 3.
        base_filters: int, features at full resolution, doubled per level. Default 32.
        depth: int >= 1, x2 downsamplings. Default 3.
        upsampling: "bilinear" (default), "nearest" or "transpose".
        name: model name.

    Returns:
        A functional `keras.Model` with input shape (None, None, in_channels).

    Example:
        >>> model = build_autoencoder(base_filters=16)
        >>> model.compile("adam", "mse")
    """
    filters = blocks.validate_common(
        in_channels=in_channels,
        out_channels=in_channels,
        base_filters=base_filters,
        filters=None,
        depth=depth,
        upsampling=upsampling,
        skip_join="add",
        normalization=None,
        global_residual=False,
    )
    inputs = keras.Input(shape=(None, None, in_channels), name="image")
    x = blocks.pad_input(inputs, depth, name)
    for level in range(depth):
        x = blocks.apply_conv(x, filters[level], f"{name}_enc{level}")
        x = blocks.apply_conv(
            x, filters[level + 1], f"{name}_down{level}", kernel_size=4, strides=2
        )
    for level in reversed(range(depth)):
        x = blocks.apply_upsample(x, filters[level], upsampling, f"{name}_dec{level}")
        x = blocks.apply_conv(x, filters[level], f"{name}_dec{level}_fuse")
    x = keras.layers.Conv2D(in_channels, 3, padding="same", name=f"{name}_out_conv")(x)
    x = CropToMatch(name=f"{name}_crop")([x, inputs])
    outputs = keras.layers.Activation("sigmoid", name=f"{name}_sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)
