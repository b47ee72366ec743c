"""Training, evaluation and restoration on the PyTorch backend with TensorFlow absent."""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import os, sys
    if sys.argv[3] == "without":
        sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
    os.environ["KERAS_BACKEND"] = "torch"
    sys.path.insert(0, {root!r})
    from keras_resunet.cli import main
    root, out = sys.argv[1], sys.argv[2]
    common = ["--data-root", root, "--set", "steps=20", "--set", "batch_size=8",
              "--set", "patch_size=16", "--set", "precision=float32",
              "--set", "model_args={{base_filters: 4, depth: 2}}"]
    config = {root!r} + "/experiments/configs/resunet_denoise_poster.yaml"
    assert main(["train", "--config", config, "--out", out, *common]) == 0
    if sys.argv[3] == "without":  # with TensorFlow, tf.data draws the batches
        assert main(["train", "--config", config, "--out", out + "_workers", *common,
                     "--set", "data_workers=2"]) == 0
    test = root + "/BSDS300/images/test"
    assert main(["evaluate", "--model", out + "/model.keras", "--data", test,
                 "--json", out + "/eval.json"]) == 0
    assert main(["denoise", test, "--output", out + "/restored", "--model",
                 out + "/model.keras", "--sigma", "0.1"]) == 0
    assert main(["denoise", test, "--output", out + "/demo", "--model",
                 out + "/model.keras", "--noisy-demo"]) == 0
    print("tensorflow imported:", sys.modules.get("tensorflow") is not None)
    """
)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from PIL import Image

    from tests.support import smooth_image

    root = tmp_path_factory.mktemp("data")
    for folder, count in (("BSDS300/images/train", 4), ("BSDS300/images/test", 2)):
        (root / folder).mkdir(parents=True)
        for index in range(count):
            image = smooth_image(48, 56, seed=index + 10 * count)
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(
                root / folder / f"{index}.png"
            )
    return root


def _run(data_root, out, mode):
    pytest.importorskip("torch")
    script = out.parent / f"{mode}.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    result = subprocess.run(
        [sys.executable, str(script), str(data_root), str(out), mode],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout, _losses(out)


def _losses(run):
    with open(run / "log.csv", newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def test_train_evaluate_and_restore_without_tensorflow(data_root, tmp_path):
    import keras

    output, losses = _run(data_root, tmp_path / "without", "without")
    assert "tensorflow imported: False" in output
    assert len(losses) == 2 and losses[1] < losses[0]
    # batches drawn by worker processes are of the same kind (Keras' prefetching decides which
    # seeded batches train): the loss curves agree in size
    np.testing.assert_allclose(_losses(tmp_path / "without_workers"), losses, rtol=0.5)
    assert sorted(p.name for p in (tmp_path / "without" / "restored").iterdir()) == [
        "0.png",
        "1.png",
    ]
    demo = sorted(p.name for p in (tmp_path / "without" / "demo").iterdir())
    assert demo == ["0.png", "0_degraded.png", "1.png", "1_degraded.png"]
    evaluated = json.loads((tmp_path / "without" / "eval.json").read_text())
    assert evaluated["n_images"] == 2 and np.isfinite(evaluated["psnr"])
    # the model trained without TensorFlow loads with it (for export)
    import keras_resunet.models  # noqa: F401

    model = keras.models.load_model(tmp_path / "without" / "model.keras", compile=False)
    assert model.predict(np.zeros((1, 24, 24, 3), np.float32), verbose=0).shape == (1, 24, 24, 3)
    # the NumPy pipeline draws other patches than tf.data with the same seed, of the same kind:
    # the loss curves agree in size, not in value
    _, with_tf = _run(data_root, tmp_path / "with", "with")
    assert losses != with_tf
    np.testing.assert_allclose(losses, with_tf, rtol=0.5)


def test_the_readmes_keras_block_runs_as_written_without_tensorflow(tmp_path):
    pytest.importorskip("torch")
    from PIL import Image

    from tests.support import smooth_image

    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Use it from Keras")[1].split("```python\n")[1].split("```")[0]
    folder = tmp_path / "train"
    folder.mkdir()
    for index in range(3):
        image = np.round(smooth_image(48, 56, seed=index) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{index}.png")
    # the block as written; only its scale shrinks to a test's (folder, model, steps)
    replacements = {
        '"path/to/train_images"': repr(str(folder)),
        "build_resunet()": "build_resunet(base_filters=4, depth=2)",
        "steps_per_epoch=1000": "steps_per_epoch=3",
        "epochs=15": "epochs=1",
        '"resunet.keras"': repr(str(tmp_path / "resunet.keras")),
    }
    for old, new in replacements.items():
        assert old in block, old
        block = block.replace(old, new)
    script = tmp_path / "block.py"
    script.write_text(
        'import os, sys\nsys.modules["tensorflow"] = None\nos.environ["KERAS_BACKEND"] = "torch"\n'
        f"sys.path.insert(0, {str(ROOT)!r})\n" + block
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "resunet.keras").is_file()
