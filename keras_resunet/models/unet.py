"""Plain UNet, the poster's baseline.

Reference: "Leveraging Residual Neural Network for UNet Image Denoising with Perceptual Loss"
(poster); Ronneberger et al., "U-Net", MICCAI 2015.
"""

import keras

from keras_resunet.models import blocks


def build_unet(
    *,
    in_channels=3,
    out_channels=None,
    base_filters=16,
    depth=4,
    filters=None,
    upsampling="bilinear",
    skip_join="concat",
    normalization=None,
    global_residual=True,
    noise_level_map=False,
    name="unet",
):
    """Builds the poster's UNet: 3x3 conv + 4x4 stride-2 conv per down level, concat skips.

    Images are float32 NHWC in [0, 1]; any height and width of at least
    `2**(depth - 1) + 1` pixels works (the model reflect-pads to a multiple of `2**depth`
    and crops back), and the output has the input's shape.

    With the defaults (16 -> 256 features over 4 levels, RGB) the model has 1,675,283
    parameters (1,674,705 for grayscale).

    Args:
        in_channels: int, 1 (gray) or 3 (RGB) usually. Default 3.
        out_channels: int or None (= in_channels).
        base_filters: int, features at the top level, doubled per level, capped at 256.
        depth: int >= 1, number of x2 downsamplings. Default 4.
        filters: optional tuple of depth + 1 ints overriding base_filters.
        upsampling: "bilinear" (default), "nearest" or "transpose".
        skip_join: "concat" (default) or "add".
        normalization: None (default), "batch", "group" or "layer".
        noise_level_map: bool, take one extra input channel holding the noise level sigma
            (constant map, [0, 1] scale) after the image channels; the output has the
            image's channels. Default False.
        global_residual: bool, add the input to the output (predict the residual). Default True.
        name: model name.

    Returns:
        A functional `keras.Model` with input shape (None, None, in_channels).

    Raises:
        ValueError: on an invalid argument, quoting what was received.

    Example:
        >>> model = build_unet(in_channels=1)
        >>> model.compile("adam", "mse")
        >>> model.output_shape
        (None, None, None, 1)
    """
    out_channels = in_channels if out_channels is None else out_channels
    filters = blocks.validate_common(
        in_channels=in_channels,
        out_channels=out_channels,
        base_filters=base_filters,
        filters=filters,
        depth=depth,
        upsampling=upsampling,
        skip_join=skip_join,
        normalization=normalization,
        global_residual=global_residual,
    )
    inputs = blocks.image_input(in_channels, noise_level_map)
    x = blocks.pad_input(inputs, depth, name)
    skips = []
    for level in range(depth):
        prefix = f"{name}_down{level}"
        x = blocks.apply_conv(x, filters[level], f"{prefix}_a", normalization=normalization)
        skips.append(x)
        x = blocks.apply_conv(
            x,
            filters[level + 1],
            f"{prefix}_b",
            kernel_size=4,
            strides=2,
            normalization=normalization,
        )
    for level in reversed(range(depth)):
        x = blocks.apply_decoder_block(
            x,
            skips[level],
            filters[level],
            f"{name}_up{level}",
            upsampling=upsampling,
            skip_join=skip_join,
            normalization=normalization,
        )
    outputs = blocks.apply_head(inputs, x, out_channels, global_residual, name)
    return keras.Model(inputs, outputs, name=name)
