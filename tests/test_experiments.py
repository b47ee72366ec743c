import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiments import common, reproduce
from keras_resunet import datasets, io
from keras_resunet.training import TrainConfig
from tests.support import smooth_image


@pytest.fixture
def data_root(tmp_path):
    return _make_data_root(tmp_path)


def _make_data_root(tmp_path):
    """A miniature data root in the layout of ../shared/datasets."""
    root = tmp_path / "data"
    folders = (
        ("BSDS300/images/train", 4, 3),
        ("BSDS300/images/test", 2, 3),
        ("CBSD68", 2, 3),
        ("Train400", 4, 1),
        ("BSD68", 2, 1),
        ("Set12", 2, 1),
    )
    for folder, count, channels in folders:
        (root / folder).mkdir(parents=True)
        for index in range(count):
            image = io.to_uint8(smooth_image(48, 56, channels, seed=index + 10 * count))
            Image.fromarray(image[..., 0] if channels == 1 else image).save(
                root / folder / f"{index}.png"
            )
    return root


@pytest.fixture(scope="module")
def quick_denoise(tmp_path_factory):
    """The quick denoise reproduction, run once for the tests below: (data root, runs, results)."""
    tmp_path = tmp_path_factory.mktemp("quick")
    root = _make_data_root(tmp_path)
    runs, out = tmp_path / "runs", tmp_path / "results"
    argv = ["--task", "denoise", "--quick", "--data-root", str(root), "--runs", str(runs)]
    argv += ["--results", str(out)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            common,
            "perceptual_weights_problem",
            lambda config: "not run: no weights (test)" if config.beta else None,
        )
        assert reproduce.main(argv) == 0
    return root, runs, out, argv


def test_quick_reproduction_records_what_an_independent_evaluation_measures(quick_denoise):
    from keras_resunet import degradations, evaluation
    from keras_resunet.inference import load_model

    root, runs, out, _ = quick_denoise
    records = json.loads((out / "denoise" / "summary.json").read_text())
    by_key = {(r["method"], r["dataset"]): r for r in records}
    assert set(by_key) == {
        (m, d)
        for m in ("degraded input", "unet", "resunet", "resunet_perceptual")
        for d in ("BSDS300", "CBSD68")
    }
    resunet = by_key[("resunet", "BSDS300")]
    assert resunet["n_images"] == 2 and resunet["train_steps"] == 20 and resunet["commit"] != ""
    assert by_key[("resunet_perceptual", "CBSD68")]["psnr"] is None
    images, _ = datasets.load_test_set("BSDS300", root)
    model = load_model(runs / "quick" / "resunet_denoise_poster" / "model.keras")
    again = evaluation.evaluate_model(model, images, degradations.GaussianNoise(0.1), seed=0)
    assert resunet["psnr"] == pytest.approx(again["psnr"], abs=1e-4)
    assert by_key[("degraded input", "BSDS300")]["psnr"] == pytest.approx(
        again["psnr_degraded"], abs=1e-4
    )
    assert "| unet |" in (out / "denoise" / "README.md").read_text()
    assert (out / "denoise" / "figure.png").is_file()


def test_a_missing_run_keeps_its_rows_and_figure(quick_denoise, tmp_path, capsys):
    _, runs, out, argv = quick_denoise
    # a second call reloads the finished runs instead of training again
    assert reproduce.main(argv + ["--skip-training"]) == 0
    progress = json.loads((runs / "quick" / "resunet_denoise_poster" / "progress.json").read_text())
    assert progress["steps"] == 20
    # without the UNet run (runs/ is not versioned), the table keeps its UNet rows and the
    # figure that shows them is kept instead of redrawn with UNet as not run
    figure = (out / "denoise" / "figure.png").read_bytes()
    shutil.move(runs / "quick" / "unet_denoise_poster", tmp_path / "unet_elsewhere")
    capsys.readouterr()
    try:
        assert reproduce.main(argv + ["--skip-training", "--methods", "resunet"]) == 0
        assert "no finished run of unet on this machine" in capsys.readouterr().out
        assert (out / "denoise" / "figure.png").read_bytes() == figure
        assert "| unet |" in (out / "denoise" / "README.md").read_text()
    finally:
        shutil.move(tmp_path / "unet_elsewhere", runs / "quick" / "unet_denoise_poster")


def test_a_shipped_run_loads_by_name_and_its_card_says_how_it_trained(
    quick_denoise, tmp_path, monkeypatch
):
    from experiments import ship
    from keras_resunet import results
    from keras_resunet.inference import load_denoiser

    _, runs, out, _ = quick_denoise
    records = json.loads((out / "denoise" / "summary.json").read_text())
    resunet = next(r for r in records if (r["method"], r["dataset"]) == ("resunet", "BSDS300"))
    monkeypatch.setenv("KERAS_RESUNET_MODELS", str(tmp_path / "models"))
    run = str(runs / "quick" / "resunet_denoise_poster")
    assert ship.main(["--run", run, "--name", "unet-denoise", "--results", str(out)]) == 1
    assert ship.main(["--run", run, "--name", "resunet-denoise", "--results", str(out)]) == 0
    card = (tmp_path / "models" / "resunet-denoise.md").read_text()
    assert f"| BSDS300 | 2 | one pass | {resunet['psnr']:.2f} |" in card and "20 steps" in card
    trained_in = json.loads((Path(run) / "config.json").read_text())["precision"]
    assert trained_in in ("float32", "mixed_bfloat16")  # "auto", resolved for this machine
    assert "Keras tensorflow backend" in card
    assert ("float32 weights" in card) == (trained_in != "float32")
    assert "sigma 0.1 on [0, 1] images (not clipped)" in card and "loss MSE" in card
    assert load_denoiser("resunet-denoise").channels == 3
    # a run trained in bfloat16 on clipped inputs says so on its card
    bf16_run = tmp_path / "bf16_run"
    shutil.copytree(run, bf16_run)
    config = json.loads((bf16_run / "config.json").read_text())
    bf16 = {**config, "precision": "mixed_bfloat16", "clip": True, "pixel_loss": "psnr"}
    (bf16_run / "config.json").write_text(json.dumps(bf16))
    records = results.load_records(out / "denoise" / "summary.json")
    records = [r for r in records if r.notes.get("run") == run]
    ship.ship(bf16_run, "resunet-denoise", records, "ship it")
    card = (tmp_path / "models" / "resunet-denoise.md").read_text()
    assert "(constant), loss minus each patch's PSNR (capped at 40 dB), mixed_bfloat16 " in card
    assert "training (float32 weights), " in card
    assert "(inputs clipped to [0, 1])" in card
    # so does a quantization-aware fine-tune
    qat = {**config, "precision": "float32", "quantization_aware": True, "init_from": "a.keras"}
    (bf16_run / "config.json").write_text(json.dumps(qat))
    (bf16_run / "init_budget.json").write_text(json.dumps({"steps": 40, "train_seconds": 3.0}))
    ship.ship(bf16_run, "resunet-denoise", records, "ship it")
    card = (tmp_path / "models" / "resunet-denoise.md").read_text()
    assert "loss MSE, through simulated int8 rounding (quantization-aware" in card
    # a run that kept a best-validation checkpoint ships it, with its own budget and scores
    import keras

    from keras_resunet.models import build_resunet

    (bf16_run / "config.json").write_text(
        json.dumps({**config, "train_data": ["a", {"folder": "b"}], "val_data": "val"})
    )
    best = build_resunet(**config["model_args"])
    best.save(bf16_run / "best.keras")
    (bf16_run / "best.json").write_text(
        json.dumps({"steps": 10, "train_seconds": 3.0, "val_psnr": 30.5})
    )
    ship.ship(bf16_run, "resunet-denoise", records, "ship it")
    card = (tmp_path / "models" / "resunet-denoise.md").read_text()
    assert (
        "Checkpoint: the best of the run on `val` (validation crops, seeded noise): step 10 "
        in card
    )
    assert "PSNR 30.50 dB" in card and "Training data: a + b (" in card
    assert json.loads((tmp_path / "models" / "resunet-denoise.json").read_text())["steps"] == 10
    shipped = keras.models.load_model(tmp_path / "models" / "resunet-denoise.keras", compile=False)
    x = np.random.default_rng(0).random((1, 16, 16, 3), np.float32)
    np.testing.assert_allclose(shipped(x), best(x), atol=1e-6)
    # and a noise-map run says how its noise levels were drawn
    noise_map = {**config, "model_args": {"noise_level_map": True}, "sigma_range": [0.0, 0.3]}
    (bf16_run / "config.json").write_text(json.dumps({**noise_map, "sigma_power": 2.0}))
    ship.ship(bf16_run, "resunet-noise-map", records, "ship it")
    card = (tmp_path / "models" / "resunet-noise-map.md").read_text()
    assert "sigma 0-76/255 on [0, 1] images" in card
    assert "drawn as low + (high - low) u^2, u uniform: low levels more often" in card
    # a run resumed with another step count quotes that command too
    made = json.loads((bf16_run / "run.json").read_text())
    more = {"command": "resunet train --resume --set steps=30", "steps": 30, "time": "now"}
    (bf16_run / "run.json").write_text(json.dumps({**made, "extended": [more]}))
    ship.ship(bf16_run, "resunet-noise-map", records, "ship it")
    card = (tmp_path / "models" / "resunet-noise-map.md").read_text()
    assert f"`{made['command']}`, resumed for 30 steps by `{more['command']}`; config" in card


def test_strong_run_is_trained_once_and_also_reported_with_self_ensemble(
    data_root, tmp_path, monkeypatch
):
    runs, out = tmp_path / "runs", tmp_path / "results"
    argv = ["--task", "denoise", "--quick", "--data-root", str(data_root), "--runs", str(runs)]
    argv += ["--results", str(out), "--methods", "resunet_strong,resunet_strong_x8"]
    assert reproduce.main(argv) == 0
    records = json.loads((out / "denoise" / "summary.json").read_text())
    by_key = {(r["method"], r["dataset"]): r for r in records}
    plain, ensembled = (
        by_key[("resunet_strong", "BSDS300")],
        by_key[("resunet_strong_x8", "BSDS300")],
    )
    assert "self_ensemble" in ensembled["notes"] and "self_ensemble" not in plain["notes"]
    assert ensembled["notes"]["run"] == plain["notes"]["run"]
    assert ensembled["train_steps"] == plain["train_steps"] == 20
    # the same 20-step model, restored differently: close, not identical
    assert 0 < abs(ensembled["psnr"] - plain["psnr"]) < 3
    assert "| resunet_strong_x8 |" in (out / "denoise" / "README.md").read_text()
    # the figure keeps the poster's three panels (not run here) beside the two named methods
    assert _panel_count(out / "denoise" / "figure.png", side=48) == 2 + 3 + 2
    # its model card tells the one-pass rows from the self-ensemble ones
    from experiments import ship

    monkeypatch.setenv("KERAS_RESUNET_MODELS", str(tmp_path / "models"))
    run = plain["notes"]["run"]
    assert ship.main(["--run", run, "--name", "resunet-strong-denoise", "--results", str(out)]) == 0
    card = (tmp_path / "models" / "resunet-strong-denoise.md").read_text()
    assert f"| BSDS300 | 2 | one pass | {plain['psnr']:.2f} |" in card
    assert f"| BSDS300 | 2 | 8 flips/rotations (`--ensemble`) | {ensembled['psnr']:.2f} |" in card


def _panel_count(figure, side, gap=4):
    with Image.open(figure) as image:
        return (image.size[0] + gap) // (side + gap)


def test_missing_test_set_fails_before_any_training(data_root, tmp_path, capsys):
    import shutil

    shutil.rmtree(data_root / "CBSD68")
    argv = [
        "--task",
        "denoise",
        "--quick",
        "--data-root",
        str(data_root),
        "--runs",
        str(tmp_path / "runs"),
    ]
    assert reproduce.main(argv) == 1
    assert "CBSD68" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_perceptual_without_real_weights_is_never_run():
    base = TrainConfig()
    assert common.perceptual_weights_problem(base) is None
    random_vgg = TrainConfig.from_dict({"beta": 1.0, "perceptual": {"weights": None}})
    assert "random VGG" in common.perceptual_weights_problem(random_vgg)


def test_quick_budget_shrinks_steps_and_width():
    full = TrainConfig(steps=7000, checkpoint_every=250, patch_size=64)
    config = common.Budget(quick=True).config(full)
    assert (config.steps, config.checkpoint_every, config.batch_size) == (20, 10, 8)
    assert config.patch_size == 32
    assert config.model_args == {"base_filters": 4}


def _quick_baselines(data_root, tmp_path):
    """The arguments of a quick baselines run writing under `tmp_path`."""
    runs, results = str(tmp_path / "runs"), str(tmp_path / "results")
    return ["--quick", "--data-root", str(data_root), "--runs", runs, "--results", results]


def test_quick_baselines_share_the_task_summary(data_root, tmp_path):
    from experiments import baselines

    out = tmp_path / "results"
    quick = _quick_baselines(data_root, tmp_path)
    assert baselines.main(["--task", "denoise", "--methods", "nlm,bm3d,dncnn", *quick]) == 0
    records = json.loads((out / "denoise" / "summary.json").read_text())
    psnr = {(r["method"], r["dataset"]): r["psnr"] for r in records}
    assert psnr[("nlm", "BSDS300")] > psnr[("degraded input", "BSDS300")] + 3
    assert psnr[("bm3d", "CBSD68")] > psnr[("degraded input", "CBSD68")] + 3
    assert ("dncnn", "CBSD68") in psnr
    assert (out / "denoise" / "figure_baselines.png").is_file()
    # BM3D's outputs are cached by input: the two miniature sets hold the same 2 images (as
    # CBSD68 repeats BSDS300 test images), so 2 entries serve all 4 restorations
    assert len(list((tmp_path / "runs" / "quick" / "cache" / "bm3d").glob("*.npz"))) == 2
    # a later call for one method redraws the figure with every method that has a result
    assert baselines.main(["--task", "denoise", "--methods", "nlm", *quick]) == 0
    assert _panel_count(out / "denoise" / "figure_baselines.png", side=48) == 2 + 3


def test_unknown_baseline_is_a_clear_error(data_root, capsys):
    from experiments import baselines

    assert (
        baselines.main(
            ["--task", "denoise", "--methods", "wavelet", "--quick", "--data-root", str(data_root)]
        )
        == 1
    )
    assert "Unknown methods ['wavelet']" in capsys.readouterr().err


def test_quick_gray_baselines_evaluate_on_bsd68_and_set12(data_root, tmp_path):
    from experiments import baselines

    out = tmp_path / "results"
    argv = ["--gray", "--methods", "nlm,dncnn", *_quick_baselines(data_root, tmp_path)]
    assert baselines.main(argv) == 0
    records = json.loads((out / "gray_denoise" / "summary.json").read_text())
    found = {(r["method"], r["dataset"]): r for r in records}
    assert set(found) == {
        (m, d) for m in ("degraded input", "nlm", "dncnn") for d in ("BSD68", "Set12")
    }
    assert found[("dncnn", "BSD68")]["sigma"] == pytest.approx(25 / 255)
    assert found[("nlm", "Set12")]["psnr"] > found[("degraded input", "Set12")]["psnr"] + 3
    assert (
        (out / "gray_denoise" / "README.md")
        .read_text()
        .startswith("# Results: gray denoise (sigma 25/255)\n")
    )


def test_concurrent_throughput_rows_sum_the_copies():
    from experiments import throughput

    row = {"backend": "torch", "model": "unet", "jit_compile": False}
    children = [[{**row, "patches_per_second": 110.0}], [{**row, "patches_per_second": 120.0}]]
    (combined,) = throughput.combine(children)
    assert combined["patches_per_second"] == 230.0
    assert combined["patches_per_second_each"] == [110.0, 120.0]
    assert combined["processes"] == 2 and combined["model"] == "unet"


def test_throughput_refuses_zero_processes(capsys):
    from experiments import throughput

    with pytest.raises(SystemExit) as exit_info:
        throughput.main(["--processes", "0"])
    assert exit_info.value.code != 0
    assert "--processes must be at least 1" in capsys.readouterr().err


def test_throughput_refuses_unknown_models(capsys):
    from experiments import throughput

    with pytest.raises(SystemExit) as exit_info:
        throughput.main(["--models", "resunet,vgg"])
    assert exit_info.value.code != 0
    assert "unknown models ['vgg']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        throughput.main(["--precisions", "float32,int4"])
    assert exit_info.value.code != 0
    assert "unknown precisions ['int4']" in capsys.readouterr().err


def test_method_without_a_config_for_the_task_is_a_clear_error(data_root, tmp_path, capsys):
    argv = ["--task", "denoise", "--methods", "resunet_strong_qat", "--quick"]
    argv += ["--data-root", str(data_root), "--runs", str(tmp_path / "runs")]
    assert reproduce.main(argv) == 1
    assert "resunet_strong_qat has no config for task denoise" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before any work
