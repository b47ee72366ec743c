import json

import keras
import numpy as np
import pytest

from keras_resunet import build_resunet, build_unet
from keras_resunet.cli import main
from keras_resunet.export import ExportError, ExportOptions, export_model, parse_size
from keras_resunet.export.runtimes import Runner
from tests.support import smooth_image

TINY = {"base_filters": 4, "depth": 3}
CHECK_IMAGES = [smooth_image(64, 80, seed=i) for i in range(3)]


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    keras.utils.set_random_seed(7)
    build_resunet(**TINY).save(path)
    return path


@pytest.fixture(scope="module")
def full_export(tiny_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "all"
    options = ExportOptions(quantizations=("none", "fp16", "dynamic", "int8", "int8_selective"))
    report = export_model(tiny_model_path, out, options, check_images=CHECK_IMAGES, log=lambda _: 0)
    return out, report


def test_every_format_and_quantization_is_written_with_a_sidecar(full_export):
    out, report = full_export
    names = {a["path"] for a in report["artifacts"]}
    assert names == {
        "savedmodel",
        "model.onnx",
        "model_float32.tflite",
        "model_fp16.tflite",
        "model_dynamic.tflite",
        "model_int8.tflite",
        "model_int8_selective.tflite",
    }
    for name in names:
        sidecar = json.loads((out / f"{name}.json").read_text())
        assert sidecar["input"]["shape"] == [-1, -1, -1, 3]
        assert sidecar["input"]["range"] == [0.0, 1.0]
        assert len(sidecar["source_sha256"]) == 64
        assert sidecar["tools"]["tensorflow"].startswith("2.")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no scratch left


def test_float_artifacts_match_keras_and_quantized_report_psnr(full_export):
    _, report = full_export
    for artifact in report["artifacts"]:
        checks = artifact["checks"]
        assert [1, 37, 53, 3] in checks["input_shapes"]
        if artifact["quantization"] == "none":
            assert checks["max_abs_diff"] <= 1e-4
        else:
            assert np.isfinite(checks["psnr_change_db"])
    fp16 = next(a for a in report["artifacts"] if a["quantization"] == "fp16")
    assert abs(fp16["checks"]["psnr_change_db"]) < 0.05
    # the layers whose rounding costs most kept in float: closer to Keras than full int8
    by_name = {a["quantization"]: a["checks"] for a in report["artifacts"]}
    selective, int8 = by_name["int8_selective"], by_name["int8"]
    assert abs(selective["psnr_change_db"]) < abs(int8["psnr_change_db"]) / 2


def test_tflite_files_hold_builtin_ops_only(full_export):
    out, _ = full_export
    for path in out.glob("*.tflite"):
        assert b"Flex" not in path.read_bytes(), path.name


def test_runtimes_accept_dynamic_odd_sizes(full_export, tiny_model_path):
    out, _ = full_export
    model = keras.models.load_model(tiny_model_path)
    batch = np.random.default_rng(3).random((2, 29, 43, 3), dtype=np.float32)
    expected = model.predict(batch, verbose=0)
    for name in ("savedmodel", "model.onnx", "model_float32.tflite"):
        np.testing.assert_allclose(Runner(out / name)(batch), expected, atol=1e-4)
    import onnx

    graph = onnx.load(out / "model.onnx")
    assert {o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")} == {18}
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [0, 0, 0, 3]  # batch, H, W symbolic; C fixed


def test_fixed_size_tflite_gray_unet(tmp_path):
    path = tmp_path / "gray.keras"
    build_unet(in_channels=1, **TINY).save(path)
    options = ExportOptions(formats=("tflite",), fixed_size=(48, 64))
    gray = [image.mean(axis=-1, keepdims=True) for image in CHECK_IMAGES]
    report = export_model(path, tmp_path / "out", options, check_images=gray, log=lambda _: 0)
    (artifact,) = report["artifacts"]
    assert artifact["checks"]["input_shapes"] == [[1, 48, 64, 1]]
    sidecar = json.loads((tmp_path / "out" / "model_float32.tflite.json").read_text())
    assert sidecar["input"]["shape"] == [1, 48, 64, 1]
    with pytest.raises((ValueError, RuntimeError)):
        Runner(tmp_path / "out" / "model_float32.tflite")(np.zeros((1, 32, 32, 1), np.float32))


def test_parity_failure_is_loud_and_leaves_nothing(tiny_model_path, tmp_path, monkeypatch):
    from keras_resunet import calibration

    monkeypatch.setattr(calibration, "FLOAT_TOLERANCE", 0.0)
    monkeypatch.setattr(Runner, "__call__", lambda self, batch: self._run(batch) + 1e-3)
    with pytest.raises(ExportError, match="exceeds"):
        export_model(
            tiny_model_path, tmp_path / "out", ExportOptions(formats=("onnx",)), log=lambda _: 0
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--formats", "coreml"], "Unknown format"),
        (["--quantize", "int4"], "Unknown quantization"),
        (["--fixed-size", "big"], "HxW"),
        (["--quantize", "int8", "--noise-bands", "0:2"], "0 <= low < high <= 1"),
        (["--quantize", "int8", "--noise-bands", "0.1"], "LOW:HIGH"),
        (["--quantize", "int8", "--noise-bands", "0:0.1,0:0.1"], "must differ"),
        (["--quantize", "int8", "--noise-bands", "0:0.2,0.1:0.3"], "overlap between 0.2 and 0.1"),
        (["--quantize", "int8", "--noise-bands", "0.1:0.3,0:0.05"], "leave a gap"),
        (["--noise-bands", "0:0.1"], "need --quantize"),
        (["--quantize", "int8", "--float-layers", "3"], "int8_selective"),
        (["--quantize", "int8", "--noise-bands", "0:0.1"], "no noise-level-map input"),
    ],
)
def test_cli_rejects_bad_options(tiny_model_path, tmp_path, capsys, argv, message):
    code = main(["export", "--model", str(tiny_model_path), "--out", str(tmp_path / "o"), *argv])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_rejects_bad_model_files_and_existing_output(tiny_model_path, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["export", "--model", str(tmp_path / "missing.keras"), "--out", out]) == 1
    assert "not found" in capsys.readouterr().err
    junk = tmp_path / "junk.keras"
    junk.write_text("not a zip")
    assert main(["export", "--model", str(junk), "--out", out]) == 1
    assert "not a loadable Keras model" in capsys.readouterr().err
    weights = tmp_path / "model.h5"
    weights.write_text("x")
    assert main(["export", "--model", str(weights), "--out", out]) == 1
    assert ".keras" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()  # an empty folder: nothing to lose, it is used
    args = [
        "export",
        "--model",
        str(tiny_model_path),
        "--out",
        str(tmp_path / "exists"),
        "--formats",
        "onnx",
    ]
    assert main(args) == 0
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert (tmp_path / "exists" / "model.onnx").is_file()
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("formats", "module"), [("onnx", "onnx"), ("tflite", "ai_edge_litert")])
def test_a_missing_export_module_names_the_extra_before_any_work(
    tiny_model_path, tmp_path, capsys, monkeypatch, formats, module
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    out = tmp_path / "o"
    assert (
        main(["export", "--model", str(tiny_model_path), "--out", str(out), "--formats", formats])
        == 1
    )
    assert "pip install 'keras-resunet[export]'" in capsys.readouterr().err
    assert not out.exists()


def test_export_says_what_it_checked_on_and_records_no_local_paths(
    tiny_model_path, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("KERAS_RESUNET_DATA", str(tmp_path / "no-data"))  # no data root
    out = tmp_path / "o"
    assert (
        main(["export", "--model", str(tiny_model_path), "--out", str(out), "--formats", "onnx"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "checks and int8 calibration on scikit-image samples" in printed
    assert "warning: no --representative-data" in printed
    for sidecar in out.glob("*.json"):
        text = sidecar.read_text()
        assert str(tmp_path) not in text and str(tiny_model_path.parent) not in text, sidecar
        assert json.loads(text)["check_images"].startswith("scikit-image samples")


def test_parse_size():
    assert parse_size("256x320") == (256, 320)


def test_benchmark_times_every_runtime_and_writes_results(tiny_model_path, tmp_path):
    from keras_resunet.export.timing import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig(
        model=str(tiny_model_path),
        height=40,
        width=56,
        repeats=1,
        out=str(tmp_path / "bench"),
        quantizations=("none", "fp16"),
    )
    result = run_benchmark(config, CHECK_IMAGES, command="test", log=lambda _: 0)
    runtimes = [row["runtime"] for row in result["rows"]]
    assert runtimes == ["keras predict", "savedmodel", "tflite", "tflite", "onnx", "tflite 40x56"]
    assert result["rows"][-1]["max_abs_diff"] <= 1e-4  # the fixed-size file matches Keras
    shares = result["onnx_time_by_op"]
    assert "Conv" in shares and sum(shares.values()) == pytest.approx(1, abs=0.01)
    assert "ONNX Runtime's profiler" in (tmp_path / "bench" / "README.md").read_text()
    assert all(row["megapixels_per_s"] > 0 for row in result["rows"])
    assert result["rows"][0]["speedup_vs_keras"] == 1.0
    saved = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert saved["rows"] == result["rows"]
    assert "| onnx | model.onnx |" in (tmp_path / "bench" / "README.md").read_text()


def test_benchmark_times_noise_map_models_on_four_channel_inputs(tmp_path):
    from keras_resunet.export.timing import BenchmarkConfig, run_benchmark

    build_resunet(**TINY, noise_level_map=True).save(tmp_path / "nm.keras")
    config = BenchmarkConfig(
        model=str(tmp_path / "nm.keras"),
        height=32,
        width=48,
        repeats=1,
        out=str(tmp_path / "bench"),
        quantizations=("none",),
        fixed_size_variant=False,
    )
    result = run_benchmark(config, CHECK_IMAGES, command="test", log=lambda _: 0)
    assert [row["runtime"] for row in result["rows"]] == [
        "keras predict", "savedmodel", "tflite", "onnx"
    ]  # fmt: skip
    assert all(row["max_abs_diff"] <= 1e-4 for row in result["rows"][1:])


def test_overwrite_never_deletes_what_the_export_did_not_write(tiny_model_path, tmp_path, capsys):
    userdata = tmp_path / "userdata"
    (userdata / "sub").mkdir(parents=True)
    (userdata / "precious.txt").write_text("keep")
    (userdata / "sub" / "thesis.tex").write_text("keep too")
    args = ["export", "--model", str(tiny_model_path), "--formats", "onnx", "--overwrite"]
    assert main([*args, "--out", str(userdata)]) == 1
    assert "not an export" in capsys.readouterr().err
    assert (userdata / "precious.txt").read_text() == "keep"
    assert (userdata / "sub" / "thesis.tex").read_text() == "keep too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userdata"]


def test_the_current_folder_and_its_parents_are_refused(
    tiny_model_path, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep")
    monkeypatch.chdir(work)
    for out in (".", str(tmp_path)):
        args = ["export", "--model", str(tiny_model_path), "--out", out, "--formats", "onnx"]
        assert main([*args, "--overwrite"]) == 1
        assert "Refusing to export into" in capsys.readouterr().err
    assert [p.name for p in work.iterdir()] == ["notes.txt"]


def test_an_earlier_export_is_replaced_only_with_overwrite(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "exported"
    options = ExportOptions(formats=("onnx",))
    export_model(tiny_model_path, out, options, log=lambda _: 0)
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_model(tiny_model_path, out, options, log=lambda _: 0)
    (out / "extra.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="extra.txt"):
        export_model(
            tiny_model_path, out, ExportOptions(("onnx",), overwrite=True), log=lambda _: 0
        )
    (out / "extra.txt").unlink()
    export_model(tiny_model_path, out, ExportOptions(("onnx",), overwrite=True), log=lambda _: 0)
    assert sorted(p.name for p in out.iterdir()) == [
        "export_report.json",
        "model.onnx",
        "model.onnx.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_export_folders_and_files_get_normal_permissions(tiny_model_path, tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        export_model(tiny_model_path, tmp_path / "e", ExportOptions(("onnx",)), log=lambda _: 0)
    finally:
        os.umask(previous)
    assert (tmp_path / "e").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "e" / "model.onnx").stat().st_mode & 0o777 == 0o644


def test_shipped_names_and_noise_map_models_export(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    build_resunet(**TINY, noise_level_map=True).save(models / "resunet-denoise.keras")
    monkeypatch.setenv("KERAS_RESUNET_MODELS", str(models))
    report = export_model(
        "resunet-denoise",
        tmp_path / "e",
        ExportOptions(("onnx", "tflite")),
        check_images=CHECK_IMAGES,
        log=lambda _: 0,
    )
    for artifact in report["artifacts"]:
        assert artifact["checks"]["max_abs_diff"] < 1e-4
        assert artifact["checks"]["input_shapes"][-1][-1] == 4
    sidecar = json.loads((tmp_path / "e" / "model.onnx.json").read_text())
    assert "noise-level map" in sidecar["input"]["channels"]


def test_noise_band_files_are_calibrated_on_their_band_only(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(2)
    build_resunet(**TINY, noise_level_map=True).save(tmp_path / "nm.keras")
    bands = ((0.0, 0.05), (0.05, 0.3))
    options = ExportOptions(("tflite",), ("none", "int8"), noise_bands=bands)
    report = export_model(
        tmp_path / "nm.keras", tmp_path / "e", options, check_images=CHECK_IMAGES, log=lambda _: 0
    )
    names = [artifact["path"] for artifact in report["artifacts"]]
    assert names == ["model_float32.tflite", "model_int8_sigma0-0.05.tflite", "model_int8_sigma0.05-0.3.tflite"]  # fmt: skip
    assert [artifact["noise_band"] for artifact in report["artifacts"]] == [None, [0, 0.05], [0.05, 0.3]]  # fmt: skip
    sidecar = json.loads((tmp_path / "e" / "model_int8_sigma0.05-0.3.tflite.json").read_text())
    assert "sigma 0.05 to 0.3" in sidecar["input"]["noise_levels"]
    assert "psnr_change_db" in sidecar["checks"]

    def input_step(name):  # the int8 step of the quantized input: its calibrated range / 255
        interpreter = Interpreter(model_path=str(tmp_path / "e" / name))
        first = interpreter._get_ops_details()[0]
        assert first["op_name"] == "QUANTIZE"
        return interpreter.get_tensor_details()[first["outputs"][0]]["quantization"][0]

    # noisier crops spread wider: the high band's input steps are coarser than the low band's
    low, high = input_step(names[1]), input_step(names[2])
    assert high > 1.3 * low


def test_non_restoration_models_are_refused(tmp_path):
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(10)(pooled)).save(tmp_path / "classifier.keras")
    with pytest.raises(ValueError, match="not an image-to-image model"):
        export_model(tmp_path / "classifier.keras", tmp_path / "e", ExportOptions(("onnx",)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier.keras"]


def test_uint8_io_takes_and_gives_camera_bytes(tmp_path):
    build_resunet(**TINY, noise_level_map=True).save(tmp_path / "nm.keras")
    options = ExportOptions(("savedmodel", "tflite", "onnx"), ("none", "dynamic"), io="uint8")
    report = export_model(
        tmp_path / "nm.keras", tmp_path / "e", options, check_images=CHECK_IMAGES, log=lambda _: 0
    )
    assert report["io"] == "uint8"
    for artifact in report["artifacts"]:
        limit = 1 / 255 + 1e-6 if artifact["quantization"] == "none" else 4 / 255
        assert artifact["checks"]["max_abs_diff"] <= limit, artifact
    pixels = np.random.default_rng(0).integers(0, 256, (1, 37, 53, 4), dtype=np.uint8)
    for name in ("model_float32.tflite", "model.onnx", "savedmodel"):
        out = Runner(tmp_path / "e" / name)(pixels)
        assert out.dtype == np.uint8 and out.shape == (1, 37, 53, 3), name
    sidecar = json.loads((tmp_path / "e" / "model.onnx.json").read_text())
    assert sidecar["input"]["dtype"] == "uint8" and "sigma * 255" in sidecar["input"]["channels"]
    with pytest.raises(ValueError, match="int8 quantization with uint8 I/O"):
        ExportOptions(quantizations=("int8",), io="uint8")


def test_overwrite_never_empties_a_folder_of_other_files(
    tiny_model_path, tmp_path, monkeypatch, capsys
):
    userdata = tmp_path / "userdata"
    (userdata / "sub").mkdir(parents=True)
    (userdata / "precious.txt").write_text("keep")
    (userdata / "sub" / "thesis.tex").write_text("keep")
    args = ["export", "--model", str(tiny_model_path), "--formats", "onnx", "--overwrite"]
    assert main([*args, "--out", str(userdata)]) == 1
    assert sorted(str(p.relative_to(userdata)) for p in userdata.rglob("*")) == [
        "precious.txt",
        "sub",
        "sub/thesis.tex",
    ]
    monkeypatch.chdir(userdata)
    assert main([*args, "--out", "."]) == 1
    assert "Refusing" in capsys.readouterr().err
    assert sorted(str(p.relative_to(userdata)) for p in userdata.rglob("*")) == [
        "precious.txt",
        "sub",
        "sub/thesis.tex",
    ]
