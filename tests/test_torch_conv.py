"""keras_resunet.torch_conv: the copy-free conv gives Keras's numbers (values and gradients)."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs under KERAS_BACKEND=torch in a child process (the backend is fixed at import).
SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "torch"
    sys.path.insert(0, {root!r})
    import numpy as np, torch
    from keras.src.backend.torch import nn
    from keras_resunet import torch_conv

    cases = [  # (input NHWC, kernel HWIO, strides, padding, dilation)
        ((2, 9, 11, 3), (3, 3, 3, 8), 1, "same", 1),
        ((2, 16, 16, 8), (3, 3, 8, 4), 2, "same", 1),
        ((1, 15, 10, 4), (3, 3, 4, 6), 2, "same", 1),
        ((2, 12, 12, 4), (4, 4, 4, 5), 2, "same", 1),
        ((2, 12, 13, 5), (3, 3, 5, 2), 1, "valid", 1),
        ((1, 14, 14, 3), (3, 3, 3, 4), 1, "same", 2),
        ((2, 7, 9, 6), (1, 1, 6, 3), 1, "same", 1),
        ((2, 8, 8, 6), (3, 3, 3, 4), 1, "same", 1),  # 2 groups
        ((2, 8, 8, 6), (3, 3, 1, 6), 1, "valid", 1),  # depthwise
        ((2, 8, 8, 6), (3, 3, 4, 4), 1, "same", 1),  # 6 % 4: Keras raises, so must we
    ]
    rng = np.random.default_rng(0)
    for shape, kshape, strides, padding, dilation in cases[:-1]:
        x0 = torch.tensor(rng.standard_normal(shape, dtype=np.float32))
        k0 = torch.tensor(rng.standard_normal(kshape, dtype=np.float32))
        found = []
        for fast in (False, True):
            torch_conv.enable() if fast else torch_conv.disable()
            assert (nn.conv is torch_conv._conv) == fast
            x, k = x0.clone().requires_grad_(), k0.clone().requires_grad_()
            y = nn.conv(x, k, strides, padding, "channels_last", dilation)
            (y * torch.arange(y.numel()).reshape(y.shape).sin()).sum().backward()
            found.append((y.detach(), x.grad, k.grad))
        for a, b in zip(*found):
            assert a.shape == b.shape, (shape, a.shape, b.shape)
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
        assert found[1][0].is_contiguous(), "NHWC output should be contiguous"
    shape, kshape, strides, padding, dilation = cases[-1]
    torch_conv.enable()
    try:
        nn.conv(torch.zeros(shape), torch.zeros(kshape), strides, padding, "channels_last")
        raise SystemExit("no error for 6 input channels and a 4-channel kernel")
    except ValueError as error:
        assert "divisible" in str(error), error
    torch_conv.disable()
    assert nn.conv is not torch_conv._conv
    print("OK", len(cases))
    """
)


def test_fast_conv_matches_keras_values_and_gradients(tmp_path):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    script = tmp_path / "conv.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    result = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK 10" in result.stdout


def test_enable_is_a_no_op_on_other_backends():
    from keras_resunet import torch_conv

    assert keras.backend.backend() != "torch"
    assert torch_conv.enable() is False
