"""A tour of the command line under bad input, interruptions and awkward photos, case by case.

Each case is one a demanding user hit: the tool must name the problem, exit non-zero where it
failed, and never delete, overwrite or half-write what it did not create.
"""

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from keras_resunet import io
from keras_resunet.cli import main
from keras_resunet.models import build_resunet
from tests.conftest import smooth_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_resunet(base_filters=4, depth=2).save(path)
    return path


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        image = io.to_uint8(smooth_image(40, 48, seed=index))
        Image.fromarray(image).save(folder / f"img{index:02d}.png")
    return folder


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def test_1_export_overwrite_keeps_foreign_folders(tiny_model, tmp_path, monkeypatch, capsys):
    userdata = tmp_path / "userdata"
    (userdata / "sub").mkdir(parents=True)
    (userdata / "precious.txt").write_text("keep")
    (userdata / "sub" / "thesis.tex").write_text("keep")
    args = ["export", "--model", str(tiny_model), "--formats", "onnx", "--overwrite"]
    assert main([*args, "--out", str(userdata)]) == 1
    assert _files(userdata) == ["precious.txt", "sub", "sub/thesis.tex"]
    monkeypatch.chdir(userdata)
    assert main([*args, "--out", "."]) == 1
    assert "Refusing" in capsys.readouterr().err
    assert _files(userdata) == ["precious.txt", "sub", "sub/thesis.tex"]


def test_2_outputs_follow_the_umask(photos, tmp_path):
    previous = os.umask(0o022)
    try:
        assert (
            main(["denoise", str(photos), "--output", str(tmp_path / "o"), "--model", "nlm"]) == 0
        )
    finally:
        os.umask(previous)
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "o").iterdir()} == {0o644}


def test_3_orientation_is_applied(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(io.to_uint8(smooth_image(40, 64))).save(folder / "p.jpg", exif=exif)
    assert main(["denoise", str(folder), "--output", str(tmp_path / "o"), "--model", "nlm"]) == 0
    with Image.open(tmp_path / "o" / "p.jpg") as out:
        assert out.size == (40, 64) and out.getexif().get(0x0112, 1) == 1


def test_4_unsupported_inputs_are_refused_not_garbled(tiny_model, tmp_path, capsys):
    import keras

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(smooth_image(40, 40, channels=1)[..., 0]).save(folder / "float.tif")
    frames = [Image.fromarray(io.to_uint8(smooth_image(40, 40, seed=i))) for i in range(3)]
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    out = tmp_path / "o"
    assert main(["denoise", str(folder), "--output", str(out), "--model", str(tiny_model)]) == 1
    printed = capsys.readouterr()
    assert "32-bit float" in printed.out and "3 pages" in printed.out
    assert list(out.iterdir()) == []
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(10)(pooled)).save(tmp_path / "classifier.keras")
    photo = tmp_path / "photo.png"
    frames[0].save(photo)
    args = ["denoise", str(photo), "--output", str(tmp_path / "c")]
    assert main([*args, "--model", str(tmp_path / "classifier.keras")]) == 1
    assert "not an image-to-image model" in capsys.readouterr().err


def test_5_one_bad_file_does_not_end_the_batch(photos, tmp_path, monkeypatch, capsys):
    import keras_resunet.restore as restore_module

    Image.fromarray(io.to_uint8(smooth_image(160, 160))).save(photos / "huge.png")
    monkeypatch.setattr(restore_module, "MAX_PIXELS", 10_000)
    assert main(["denoise", str(photos), "--output", str(tmp_path / "o"), "--model", "nlm"]) == 1
    printed = capsys.readouterr()
    assert "huge.png: FAILED: too large" in printed.out
    assert "restored 3, failed 1, skipped 0 of 4 inputs" in printed.out


def test_6_a_bad_config_leaves_no_run_folder_behind(tmp_path, capsys):
    config = ROOT / "experiments" / "configs" / "resunet_denoise_poster.yaml"
    out = tmp_path / "run"
    args = ["train", "--config", str(config), "--out", str(out)]
    assert main([*args, "--set", "model_args={foo: 1}"]) == 1
    assert "foo" in capsys.readouterr().err and not out.exists()
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: resunet\nsteps: [1,\n")
    assert main(["train", "--config", str(broken), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "not valid YAML" in error and len(error.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--method", "nlm", "--data", "x", "--sigma", "nan"],
        ["evaluate", "--method", "nlm", "--data", "x", "--sigma", "-0.1"],
        ["denoise", "x", "--output", "o", "--tile", "-5"],
        ["denoise", "x", "--output", "o", "--tile", "64", "--overlap", "80"],
    ],
)
def test_7_arguments_are_checked_before_any_work(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and "error" in capsys.readouterr().err


def test_8_errors_say_what_is_wrong_with_a_model_file(tmp_path, capsys):
    random_file = tmp_path / "random.keras"
    random_file.write_bytes(os.urandom(256))
    no_config = tmp_path / "empty.keras"
    with zipfile.ZipFile(no_config, "w") as archive:
        archive.writestr("metadata.json", "{}")
    for path in (random_file, no_config):
        args = ["denoise", str(tmp_path), "--output", str(tmp_path / "o"), "--model", str(path)]
        assert main(args) == 1
        error = capsys.readouterr().err
        assert "is not a loadable Keras model" in error and "not found" not in error
        assert len(error.strip().splitlines()) == 1


def test_9_sigterm_ends_with_a_summary_and_no_hidden_file(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(40):
        Image.fromarray(io.to_uint8(smooth_image(96, 96, seed=index))).save(folder / f"{index}.png")
    out = tmp_path / "o"
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_resunet.cli", "denoise", str(folder), "--output", str(out)]
        + ["--model", "nlm", "--sigma", "0.1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and any(out.glob("[0-9]*.png"))):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-2000:]
    assert "terminated" in stderr and "restored " in stdout and "failed" in stdout
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert 0 < len(list(out.iterdir())) < 40


def test_10_noisy_demo_names_never_collide(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("x.png", "x_degraded.png"):
        Image.fromarray(io.to_uint8(smooth_image(40, 40))).save(folder / name)
    args = ["denoise", str(folder), "--output", str(tmp_path / "o"), "--model", "nlm"]
    assert main([*args, "--noisy-demo"]) == 1
    assert "would be lost" in capsys.readouterr().out
    before = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    assert main([*args, "--noisy-demo", "--skip-existing"]) == 1  # the clash is still reported
    assert {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before
    assert sorted(before) == ["x.png", "x_degraded.png"]  # x's two outputs; the clash wrote none
