"""RDUNet: a U-Net whose levels are residual dense blocks.

Reference: Gurrola-Ramos, Dalmau, Alarcon, "A Residual Dense U-Net Neural Network for Image
Denoising", IEEE Access 2021. The paper's widths (64 -> 512) are too slow to train on a CPU;
`base_filters` scales the whole network.
"""

import keras

from keras_resunet.models import blocks


def apply_residual_dense_block(x, filters, name, layers=3, growth=None):
    """Residual dense block: `layers` 3x3 convs with LeakyReLU (the paper: PReLU), each fed the
    concatenation of the block input and every earlier conv output; a 1x1 conv fuses them
    back to `filters` channels and the block input is added (local residual learning)."""
    growth = growth or max(1, filters // 2)
    features = [x]
    for index in range(layers):
        joined = (
            features[0]
            if index == 0
            else keras.layers.Concatenate(name=f"{name}_cat{index}")(features)
        )
        features.append(blocks.apply_conv(joined, growth, f"{name}_dense{index}"))
    fused = keras.layers.Concatenate(name=f"{name}_cat{layers}")(features)
    fused = keras.layers.Conv2D(filters, 1, name=f"{name}_fuse_conv")(fused)
    return keras.layers.Add(name=f"{name}_add")([x, fused])


def build_rdunet(
    *, in_channels=3, base_filters=16, depth=3, blocks_per_level=2, dense_layers=3, name="rdunet"
):
    """Builds RDUNet: input convs, then per level residual dense blocks and a 2x2 stride-2
    downsampling conv (width doubled); the decoder upsamples with a stride-2 transposed conv,
    concatenates the encoder feature, fuses with a 1x1 conv and applies residual dense blocks;
    a 3x3 conv gives the output, added to the input.

    With the defaults (RGB) the model has 1,465,891 parameters. Any H x W of at least
    `2**(depth - 1) + 1` pixels works. Images are float32 NHWC in [0, 1].

    Args:
        in_channels: int, 1 or 3. Default 3.
        base_filters: int, features at full resolution, doubled per level. Default 16 (the
            paper: 64).
        depth: int >= 1, x2 downsamplings. Default 3 (the paper: 3).
        blocks_per_level: int >= 1, residual dense blocks per level and side. Default 2.
        dense_layers: int >= 1, convs per residual dense block. Default 3.
        name: model name.

    Returns:
        A functional `keras.Model` with input shape (None, None, in_channels).

    Example:
        >>> model = build_rdunet(base_filters=8)
        >>> model.compile("adam", "mse")
    """
    filters = blocks.validate_common(
        in_channels=in_channels,
        out_channels=in_channels,
        base_filters=base_filters,
        filters=None,
        depth=depth,
        upsampling="transpose",
        skip_join="concat",
        normalization=None,
        global_residual=True,
    )
    for arg, value in (("blocks_per_level", blocks_per_level), ("dense_layers", dense_layers)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be an int >= 1. Received: {arg}={value!r}")

    def level_blocks(x, width, prefix):
        for index in range(blocks_per_level):
            x = apply_residual_dense_block(x, width, f"{prefix}_rdb{index}", dense_layers)
        return x

    inputs = keras.Input(shape=(None, None, in_channels), name="image")
    x = blocks.pad_input(inputs, depth, name)
    x = blocks.apply_conv(x, filters[0], f"{name}_in0")
    x = blocks.apply_conv(x, filters[0], f"{name}_in1")
    skips = []
    for level in range(depth):
        x = level_blocks(x, filters[level], f"{name}_enc{level}")
        skips.append(x)
        x = blocks.apply_conv(
            x, filters[level + 1], f"{name}_down{level}", kernel_size=2, strides=2
        )
    x = level_blocks(x, filters[depth], f"{name}_bottom")
    for level in reversed(range(depth)):
        x = blocks.apply_upsample(x, filters[level], "transpose", f"{name}_up{level}")
        x = keras.layers.Concatenate(name=f"{name}_up{level}_join")([x, skips[level]])
        x = blocks.apply_conv(x, filters[level], f"{name}_up{level}_fuse", kernel_size=1)
        x = level_blocks(x, filters[level], f"{name}_dec{level}")
    outputs = blocks.apply_head(inputs, x, in_channels, True, name)
    return keras.Model(inputs, outputs, name=name)
