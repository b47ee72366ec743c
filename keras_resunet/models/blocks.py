"""Building blocks shared by the UNet-family builders.

Every block is a plain function `apply_<block>(x, ..., name=prefix)` that names each layer it
creates, so weights load by name and exported graphs stay readable.
"""

import keras

from keras_resunet.models.layers import CropToMatch, ImageChannels, PadToMultiple, Upsample2x

NORMALIZATIONS = (None, "batch", "group", "layer")
UPSAMPLINGS = ("bilinear", "nearest", "transpose")
SKIP_JOINS = ("add", "concat")
LEAKY_SLOPE = 0.2


def apply_normalization(x, normalization, name):
    """Applies the named normalization (None leaves `x` unchanged)."""
    if normalization is None:
        return x
    if normalization == "batch":
        return keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if normalization == "group":
        groups = min(8, x.shape[-1])
        return keras.layers.GroupNormalization(groups=groups, name=f"{name}_gn")(x)
    if normalization == "layer":
        return keras.layers.LayerNormalization(name=f"{name}_ln")(x)
    raise ValueError(
        f"`normalization` must be one of {NORMALIZATIONS}. Received: {normalization!r}"
    )


def apply_conv(x, filters, name, kernel_size=3, strides=1, normalization=None, activation="leaky"):
    """Conv -> optional normalization -> activation ("leaky", "relu" or None)."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=normalization is None,
        name=f"{name}_conv",
    )(x)
    x = apply_normalization(x, normalization, name)
    return apply_activation(x, activation, name)


def apply_activation(x, activation, name):
    if activation is None:
        return x
    if activation == "leaky":
        return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_lrelu")(x)
    if activation == "relu":
        return keras.layers.ReLU(name=f"{name}_relu")(x)
    raise ValueError(f"Unknown activation {activation!r}")


def apply_residual_block(x, filters, name, strides=1, bottleneck=4, normalization=None):
    """ResNet basic block with a narrowed middle, as in the poster's ResUNet encoder.

    Branch: 3x3 conv (stride `strides`, width filters // bottleneck) -> ReLU -> 3x3 conv
    (width `filters`). Shortcut: identity, or a strided 3x3 conv when the shape changes.
    The sum goes through LeakyReLU(0.2).
    """
    middle = max(1, filters // bottleneck)
    branch = apply_conv(
        x, middle, f"{name}_a", strides=strides, normalization=normalization, activation="relu"
    )
    branch = apply_conv(branch, filters, f"{name}_b", normalization=normalization, activation=None)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = apply_conv(
            x,
            filters,
            f"{name}_skip",
            strides=strides,
            normalization=normalization,
            activation=None,
        )
    else:
        shortcut = x
    x = keras.layers.Add(name=f"{name}_add")([branch, shortcut])
    return apply_activation(x, "leaky", name)


def apply_upsample(x, filters, mode, name):
    """x2 upsampling then a 3x3 conv to `filters` (a 4x4 stride-2 transposed conv for "transpose")."""
    if mode == "transpose":
        x = keras.layers.Conv2DTranspose(
            filters, 4, strides=2, padding="same", name=f"{name}_tconv"
        )(x)
        return apply_activation(x, "leaky", name)
    x = Upsample2x(interpolation=mode, name=f"{name}_up")(x)
    return apply_conv(x, filters, f"{name}_upconv")


def apply_decoder_block(
    x, skip, filters, name, upsampling="bilinear", skip_join="add", normalization=None
):
    """Upsample + 3x3 conv, join with the encoder feature (add or concat), 3x3 conv."""
    x = apply_upsample(x, filters, upsampling, name)
    if skip_join == "add":
        x = keras.layers.Add(name=f"{name}_join")([x, skip])
    else:
        x = keras.layers.Concatenate(name=f"{name}_join")([x, skip])
    return apply_conv(x, filters, f"{name}_fuse", normalization=normalization)


def apply_head(inputs, features, out_channels, global_residual, name):
    """Crops the decoder output back to the input size, projects to the output channels and
    adds the input image (without a noise-level map channel) when the model predicts a
    residual."""
    x = keras.layers.Conv2D(out_channels, 3, padding="same", name=f"{name}_out_conv")(features)
    x = CropToMatch(name=f"{name}_crop")([x, inputs])
    if global_residual:
        image = inputs
        if inputs.shape[-1] != out_channels:
            image = ImageChannels(out_channels, name=f"{name}_image")(inputs)
        x = keras.layers.Add(name=f"{name}_global_residual")([x, image])
    return x


def image_input(in_channels, noise_level_map):
    """The model input: the image, plus one channel holding the noise level (sigma on the
    [0, 1] scale, constant over the image) when `noise_level_map` (FFDNet's convention)."""
    if not isinstance(noise_level_map, bool):
        raise ValueError(f"`noise_level_map` must be a bool. Received: {noise_level_map!r}")  # noqa: TRY004
    channels = in_channels + int(noise_level_map)
    return keras.Input(shape=(None, None, channels), name="image")


def pad_input(inputs, depth, name):
    return PadToMultiple(2**depth, name=f"{name}_pad")(inputs)


def validate_common(
    *,
    in_channels,
    out_channels,
    base_filters,
    filters,
    depth,
    upsampling,
    skip_join,
    normalization,
    global_residual,
):
    """Checks the arguments every UNet-family builder shares; returns the per-level `filters`
    tuple (from `base_filters` when `filters` is None)."""
    for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"`depth` must be an int >= 1. Received: depth={depth!r}")
    filters = default_filters(base_filters, depth) if filters is None else tuple(filters)
    if len(filters) != depth + 1 or any(not isinstance(f, int) or f < 1 for f in filters):
        raise ValueError(
            f"`filters` needs one positive int per level (depth + 1 = {depth + 1} entries). "
            f"Received: filters={filters}"
        )
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"`upsampling` must be one of {UPSAMPLINGS}. Received: {upsampling!r}")
    if skip_join not in SKIP_JOINS:
        raise ValueError(f"`skip_join` must be one of {SKIP_JOINS}. Received: {skip_join!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"`normalization` must be one of {NORMALIZATIONS}. Received: {normalization!r}"
        )
    if global_residual and in_channels != out_channels:
        raise ValueError(
            "A global residual needs in_channels == out_channels. "
            f"Received: in_channels={in_channels}, out_channels={out_channels}"
        )
    return filters


def default_filters(base, depth, cap=256):
    """(base, 2*base, 4*base, ...) capped at `cap`: the poster's 16 -> 256 over 4 levels."""
    return tuple(min(base * 2**level, cap) for level in range(depth + 1))
