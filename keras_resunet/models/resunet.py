"""ResUNet: a UNet whose encoder levels are stacks of ResNet residual blocks.

Reference: "Leveraging Residual Neural Network for UNet Image Denoising with Perceptual Loss"
(poster); He et al., "Deep Residual Learning", CVPR 2016.
"""

import keras

from keras_resunet.models import blocks


def build_resunet(
    *,
    in_channels=3,
    out_channels=None,
    base_filters=16,
    depth=4,
    filters=None,
    blocks_per_level=2,
    bottleneck=4,
    upsampling="bilinear",
    skip_join="add",
    normalization=None,
    global_residual=True,
    noise_level_map=False,
    name="resunet",
):
    """Builds the poster's ResUNet.

    A 3x3 stem conv, then per down level `blocks_per_level` residual blocks (the first one
    strided by 2; each branch 3x3 conv -> ReLU -> 3x3 conv with a middle width of
    out // `bottleneck`, shortcut a strided 3x3 conv, sum through LeakyReLU 0.2). The decoder
    upsamples (bilinear x2 + 3x3 conv), adds the encoder feature and applies a 3x3 conv; a
    linear 3x3 conv gives the output, added to the input (global residual).

    Images are float32 NHWC in [0, 1]; any height and width of at least
    `2**(depth - 1) + 1` pixels works, and the output has the input's shape.

    With the defaults (16 -> 256 features over 4 levels, RGB) the model has 1,667,683
    parameters (1,667,105 for grayscale).

    Args:
        in_channels: int, 1 (gray) or 3 (RGB) usually. Default 3.
        out_channels: int or None (= in_channels).
        base_filters: int, features at the top level, doubled per level, capped at 256.
        depth: int >= 1, number of x2 downsamplings. Default 4.
        filters: optional tuple of depth + 1 ints overriding base_filters.
        blocks_per_level: int >= 1, residual blocks per encoder level. Default 2.
        bottleneck: int >= 1, width divisor of each residual branch's middle conv. Default 4.
        upsampling: "bilinear" (default), "nearest" or "transpose".
        skip_join: "add" (default) or "concat".
        normalization: None (default), "batch", "group" or "layer".
        noise_level_map: bool, take one extra input channel holding the noise level sigma
            (constant map, [0, 1] scale) after the image channels; the output has the
            image's channels. Default False.
        global_residual: bool, add the input to the output. Default True.
        name: model name.

    Returns:
        A functional `keras.Model` with input shape (None, None, in_channels).

    Raises:
        ValueError: on an invalid argument, quoting what was received.

    Example:
        >>> model = build_resunet()
        >>> model.compile("adam", "mse")
        >>> restored = model.predict(noisy_batch)  # same shape as noisy_batch
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
    for arg, value in (("blocks_per_level", blocks_per_level), ("bottleneck", bottleneck)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be an int >= 1. Received: {arg}={value!r}")
    inputs = blocks.image_input(in_channels, noise_level_map)
    x = blocks.pad_input(inputs, depth, name)
    x = blocks.apply_conv(x, filters[0], f"{name}_stem", normalization=normalization)
    skips = []
    for level in range(depth):
        skips.append(x)
        for index in range(blocks_per_level):
            x = blocks.apply_residual_block(
                x,
                filters[level + 1],
                f"{name}_down{level}_res{index}",
                strides=2 if index == 0 else 1,
                bottleneck=bottleneck,
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
