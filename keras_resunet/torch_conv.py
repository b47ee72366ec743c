"""A faster 2D convolution for Keras's PyTorch backend, enabled by the trainer.

Keras 3's torch `conv` turns an NHWC input into NCHW with `permute(...).contiguous()` and then
back into channels-last memory with `.contiguous(memory_format=torch.channels_last)`: two full
copies of every activation (and two more in the backward pass) that end with the bytes the
input already had. A permuted *view* of an NHWC tensor already is an NCHW tensor in
channels-last memory, which oneDNN convolves directly. `enable()` swaps in a conv that passes
that view; outputs are the same numbers (tested against Keras's own conv). Measured on this
2-core CPU: `experiments.throughput` (README).

This replaces a function inside `keras.src.backend.torch.nn` (private Keras API), so it only
touches 2D channels-last convolutions and leaves every other case, and every other backend,
to Keras.
"""

import keras

_original = None


def enable():
    """Uses the copy-free conv on the PyTorch backend (a no-op on other backends). Idempotent.

    Returns:
        bool: whether the fast conv is active.
    """
    global _original
    if keras.backend.backend() != "torch":
        return False
    from keras.src.backend.torch import nn

    if _original is None:
        _original = nn.conv
        nn.conv = _conv
    return True


def disable():
    """Restores Keras's own conv (for comparisons and tests)."""
    global _original
    if _original is not None:
        from keras.src.backend.torch import nn

        nn.conv = _original
        _original = None


def _conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    import torch.nn.functional as F
    from keras.src.backend.torch import nn

    inputs = nn.convert_to_tensor(inputs)
    kernel = nn.convert_to_tensor(kernel)
    channels_last = nn.backend.standardize_data_format(data_format) == "channels_last"
    if inputs.ndim != 4 or not channels_last or inputs.shape[-1] % kernel.shape[2]:
        return _original(inputs, kernel, strides, padding, data_format, dilation_rate)
    groups = inputs.shape[-1] // kernel.shape[2]  # > 1 for depthwise (Upsample2x)
    strides = nn.standardize_tuple(strides, 2, "strides")
    x = inputs.permute(0, 3, 1, 2)  # a view: NCHW shape, channels-last memory
    w = kernel.permute(3, 2, 0, 1)  # HWIO -> OIHW
    pad = 0
    if padding == "same":
        x, pad = nn._apply_same_padding(
            x, w.shape[2:], strides, "channels_first", "conv", dilation_rate
        )
    outputs = F.conv2d(x, w, stride=strides, padding=pad, dilation=dilation_rate, groups=groups)
    return outputs.permute(0, 2, 3, 1)
