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
from tests.support import smooth_image

ROOT = Path(__file__).resolve().parents[1]


def test_download_into_existing_folder_fails_cleanly(tmp_path, capsys):
    (tmp_path / "BSDS300").mkdir()
    assert main(["download-bsds300", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "error" in error and "already exists" in error and len(error.splitlines()) == 1


def test_unknown_subcommand_exits_non_zero():
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code != 0


@pytest.mark.slow
def test_demo_restores_sample_photographs(tmp_path, capsys):
    assert main(["demo", "--train-steps", "150", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "astronaut" in out and (tmp_path / "astronaut.png").is_file()


def test_demo_uses_the_shipped_model_and_compares_with_nlm(tmp_path, monkeypatch):
    from keras_resunet import pretrained
    from keras_resunet.demo import DemoConfig, run_demo
    from keras_resunet.models import build_resunet

    monkeypatch.setenv("KERAS_RESUNET_MODELS", str(tmp_path / "models"))
    (tmp_path / "models").mkdir()
    default = pretrained.DEFAULT_FOR_TASK["denoise"]
    noise_map = pretrained.PRETRAINED[default].sigma is None
    build_resunet(base_filters=4, depth=2, noise_level_map=noise_map).save(
        tmp_path / "models" / f"{default}.keras"
    )
    lines = []
    table = run_demo(DemoConfig(output=str(tmp_path / "out")), log=lines.append)
    assert f"shipped model {default} " in lines[0]
    assert set(table) == {"astronaut", "chelsea", "coffee"}
    for row in table.values():
        assert list(row) == ["degraded", "NLM", "ResUNet"]
        assert row["NLM"][0] > row["degraded"][0] + 3  # PSNR
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
    ]


def _image_folder(folder):
    from PIL import Image

    from keras_resunet.io import to_uint8
    from tests.support import smooth_image

    folder.mkdir()
    for index in range(3):
        Image.fromarray(to_uint8(smooth_image(40, 48, seed=index))).save(folder / f"{index}.png")
    return folder


def test_train_then_evaluate_from_the_command_line(tmp_path, capsys):
    import json

    images = _image_folder(tmp_path / "images")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model: resunet\nmodel_args: {base_filters: 4, depth: 2}\npatch_size: 16\n"
        "batch_size: 4\nsteps: 10\ncheckpoint_every: 5\njit_compile: false\n"
        f"train_data: {images}\n"
    )
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    assert (run / "model.keras").is_file()
    assert main(["train", "--config", str(config), "--out", str(run)]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--out", str(run), "--resume"]) == 0

    out = tmp_path / "eval.json"
    args = [
        "evaluate",
        "--model",
        str(run / "model.keras"),
        "--data",
        str(images),
        "--json",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["n_images"] == 3 and len(result["images"]) == 3
    assert 19.5 < result["psnr_degraded"] < 20.6  # sigma 0.1 is 20 dB
    assert result["seconds_per_megapixel"] > 0
    assert f"{result['psnr']:.2f}" in printed


def test_bad_config_fails_before_any_work(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model: resunet\nlearning_rat: 0.1\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 1
    assert "learning_rat" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    config.write_text("model: resunet\ntrain_data: nowhere\n")
    code = main(
        [
            "train",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "run2"),
            "--data-root",
            str(tmp_path),
        ]
    )
    assert code == 1 and "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()
    assert main(["evaluate", "--model", str(tmp_path / "no.keras"), "--data", str(tmp_path)]) == 1


def test_evaluate_a_classical_method_from_the_command_line(tmp_path, capsys):
    import json

    folder = _image_folder(tmp_path / "images")
    out = tmp_path / "nlm.json"
    assert main(["evaluate", "--method", "nlm", "--data", str(folder), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["method"] == "nlm" and result["n_images"] == 3
    assert result["psnr"] > result["psnr_degraded"] + 3
    # --clip reaches the degradation: the same noise draw, clipped, restores differently (the
    # input PSNR is the same: metrics clip before scoring).
    clipped = tmp_path / "nlm_clip.json"
    args = ["evaluate", "--method", "nlm", "--data", str(folder), "--clip", "--json", str(clipped)]
    assert main(args) == 0
    clipped = json.loads(clipped.read_text())
    assert clipped["clip"] and not result["clip"]
    assert clipped["psnr_degraded"] == pytest.approx(result["psnr_degraded"])
    assert abs(clipped["psnr"] - result["psnr"]) > 1e-3
    with pytest.raises(SystemExit):  # --method and --model exclude each other
        main(["evaluate", "--method", "nlm", "--model", "x.keras", "--data", str(folder)])


def test_models_lists_every_shipped_model_and_where_it_is(tmp_path, monkeypatch, capsys):
    from keras_resunet import pretrained

    monkeypatch.setenv("KERAS_RESUNET_MODELS", str(tmp_path))
    monkeypatch.setattr(pretrained, "_CHECKOUT", tmp_path / "no-checkout")
    monkeypatch.setattr(pretrained, "_PACKAGED", tmp_path / "no-package")
    (tmp_path / "unet-denoise.keras").write_bytes(b"")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.count("not installed") == len(pretrained.PRETRAINED) - 1
    assert str(tmp_path / "unet-denoise.keras") in out
    assert "resunet-noise-map [default for denoise]" in out


def test_demo_without_its_model_fails_with_the_fix_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    from keras_resunet import pretrained

    monkeypatch.setenv("KERAS_RESUNET_MODELS", str(tmp_path / "empty"))
    monkeypatch.setattr(pretrained, "_CHECKOUT", tmp_path / "no-checkout")
    monkeypatch.setattr(pretrained, "_PACKAGED", tmp_path / "no-package")
    assert main(["demo", "--output", str(tmp_path / "out")]) == 1
    assert "KERAS_RESUNET_MODELS" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_missing_optional_module_names_the_extra_that_installs_it():
    from keras_resunet.cli import missing_dependency

    message = missing_dependency(ModuleNotFoundError("No module named 'onnx'", name="onnx"))
    assert "pip install 'keras-resunet[export]'" in message
    message = missing_dependency(ModuleNotFoundError("x", name="bm3d.profiles"))
    assert "keras-resunet[baselines]" in message
    assert "pip install frob" in missing_dependency(ModuleNotFoundError("x", name="frob"))


def test_a_bad_training_config_is_one_line_and_leaves_no_run_folder(tmp_path, capsys):
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
        *(
            ["train", "--config", "c.yaml", "--out", "o", "--time-limit", minutes]
            for minutes in ("0", "-5", "inf", "ten")
        ),
    ],
)
def test_arguments_are_checked_before_any_work(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and "error" in capsys.readouterr().err


def test_a_broken_model_file_is_named_in_one_line(tmp_path, capsys):
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


def test_sigterm_ends_with_a_summary_and_no_hidden_file(tmp_path):
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
