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
        assert sidecar["inputs"] == [
            {"name": "image", "shape": [-1, -1, -1, 3], "layout": "NHWC", "channels": "RGB",
             "dtype": "float32", "range": [0.0, 1.0]}
        ]  # fmt: skip
        assert sidecar["output"]["name"] == "restored"
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
    assert sidecar["inputs"][0]["shape"] == [1, 48, 64, 1]
    with pytest.raises((ValueError, RuntimeError)):
        Runner(tmp_path / "out" / "model_float32.tflite")(np.zeros((1, 32, 32, 1), np.float32))


def test_parity_failure_is_loud_and_leaves_nothing(tiny_model_path, tmp_path, monkeypatch):
    from keras_resunet import calibration

    monkeypatch.setattr(calibration, "FLOAT_TOLERANCE", 0.0)
    run = Runner.__call__
    monkeypatch.setattr(Runner, "__call__", lambda self, batch: run(self, batch) + 1e-3)
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


def test_benchmark_times_every_runtime_and_writes_results(tmp_path):
    """On a noise-map model: every runtime is timed on four-channel inputs (image + map)."""
    from keras_resunet.export.timing import BenchmarkConfig, run_benchmark

    build_resunet(**TINY, noise_level_map=True).save(tmp_path / "nm.keras")
    config = BenchmarkConfig(
        model=str(tmp_path / "nm.keras"),
        height=40,
        width=56,
        repeats=1,
        out=str(tmp_path / "bench"),
        quantizations=("none", "fp16"),
    )
    result = run_benchmark(config, CHECK_IMAGES, command="test", log=lambda _: 0)
    runtimes = [row["runtime"] for row in result["rows"]]
    assert runtimes == ["keras predict", "savedmodel", "tflite", "tflite", "onnx", "tflite 40x56"]
    for row in result["rows"][1:]:  # float files match Keras, the fixed-size one included
        assert row["max_abs_diff"] <= (1e-2 if row["quantization"] == "fp16" else 1e-4), row
    shares = result["onnx_time_by_op"]
    assert "Conv" in shares and sum(shares.values()) == pytest.approx(1, abs=0.01)
    assert "ONNX Runtime's profiler" in (tmp_path / "bench" / "README.md").read_text()
    assert all(row["megapixels_per_s"] > 0 for row in result["rows"])
    assert result["rows"][0]["speedup_vs_keras"] == 1.0
    saved = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert saved["rows"] == result["rows"]
    assert "| onnx | model.onnx |" in (tmp_path / "bench" / "README.md").read_text()


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
    listing = sorted(str(p.relative_to(userdata)) for p in userdata.rglob("*"))
    assert listing == ["precious.txt", "sub", "sub/thesis.tex"]
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
    assert [entry["name"] for entry in sidecar["inputs"]] == ["image", "sigma"]
    assert sidecar["inputs"][0]["shape"] == [-1, -1, -1, 3]


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
    assert "sigma 0.05 to 0.3" in sidecar["inputs"][0]["noise_levels"]
    assert "psnr_change_db" in sidecar["checks"]

    def input_step(name):  # the int8 step of the quantized image: its calibrated range / 255
        interpreter = Interpreter(model_path=str(tmp_path / "e" / name))
        tensors = interpreter.get_tensor_details()
        (image,) = [op for op in interpreter._get_ops_details() if op["op_name"] == "QUANTIZE"
                    and tensors[op["inputs"][0]]["name"] == "image"]  # fmt: skip
        return tensors[image["outputs"][0]]["quantization"][0]

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
    image, sigma = sidecar["inputs"]
    assert image["dtype"] == "uint8" and image["range"] == [0, 255]
    assert sigma["dtype"] == "float32" and sigma["range"] == [0, 255]
    with pytest.raises(ValueError, match="int8 quantization with uint8 I/O"):
        ExportOptions(quantizations=("int8",), io="uint8")


@pytest.mark.parametrize("channels", [3, 1])
def test_an_app_reads_the_metadata_and_passes_8_bit_pixels_and_a_sigma(tmp_path, channels):
    """What a phone app does with the uint8 TFLite file: it learns the inputs from the file
    (names, order, types, colour space, ranges) and gets the Keras result within one level."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_resunet.export.describe import read_tflite_metadata

    keras.utils.set_random_seed(3)
    model = build_resunet(**TINY, in_channels=channels, noise_level_map=True)
    model.save(tmp_path / "nm.keras")
    images = [image[..., :channels] for image in CHECK_IMAGES]
    options = ExportOptions(("tflite", "onnx"), ("none",), io="uint8")
    export_model(tmp_path / "nm.keras", tmp_path / "e", options, check_images=images, log=print)
    path = tmp_path / "e" / "model_float32.tflite"

    metadata = read_tflite_metadata(path)
    assert metadata["name"] == "keras_resunet nm" and metadata["license"] == "MIT"
    assert [t["name"] for t in metadata["inputs"]] == ["image", "sigma"]
    image_md, sigma_md = metadata["inputs"]
    assert image_md["content"] == ("RGB image" if channels == 3 else "grayscale image")
    assert image_md["normalization"] == {"mean": [0.0], "std": [1.0]}  # raw 0-255 pixels
    assert (image_md["min"], image_md["max"]) == ([0.0], [255.0])
    assert sigma_md["content"] == "feature" and "0-255" in sigma_md["description"]
    assert [t["name"] for t in metadata["outputs"]] == ["restored"]

    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["image", "sigma"], "outputs": ["restored"]}
    }
    details = {d["name"]: d for d in interpreter.get_input_details()}
    assert details["image"]["dtype"] == np.uint8 and details["sigma"]["dtype"] == np.float32
    pixels = np.round(CHECK_IMAGES[0][:40, :56, :channels] * 255).astype(np.uint8)[None]
    noisy = np.clip(pixels + np.random.default_rng(0).normal(0, 25, pixels.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    restored = interpreter.get_signature_runner()(image=noisy, sigma=np.array([[25.0]], np.float32))
    out = restored["restored"]
    assert out.dtype == np.uint8 and out.shape == noisy.shape
    level = np.full((*noisy.shape[:-1], 1), 25 / 255, np.float32)
    expected = model.predict(np.concatenate([noisy / 255, level], axis=-1), verbose=0)
    expected = np.round(np.clip(expected, 0, 1) * 255)
    assert np.max(np.abs(out.astype(int) - expected)) <= 1
    # the sigma input matters: another level gives another image
    other = interpreter.get_signature_runner()(image=noisy, sigma=np.array([[0.0]], np.float32))
    assert np.any(other["restored"] != out)


def test_onnx_files_name_their_dimensions_and_carry_the_description(tmp_path):
    import onnx

    build_resunet(**TINY, noise_level_map=True).save(tmp_path / "nm.keras")
    report = export_model(
        tmp_path / "nm.keras", tmp_path / "e", ExportOptions(("onnx",)), CHECK_IMAGES, log=print
    )
    model = onnx.load(str(tmp_path / "e" / "model.onnx"))

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert {v.name: dims(v) for v in model.graph.input} == {
        "image": ["batch", "height", "width", 3],
        "sigma": ["batch", 1],
    }
    assert [(v.name, dims(v)) for v in model.graph.output] == [
        ("restored", ["batch", "height", "width", 3])
    ]
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props == report["description"] and props["tensor.sigma.range"] == "0..1"
    sidecar = json.loads((tmp_path / "e" / "model.onnx.json").read_text())
    assert "/" not in sidecar["source_model"] and str(tmp_path) not in json.dumps(sidecar)


def test_tflite_metadata_round_trips_and_a_file_without_it_reads_as_none(tmp_path):
    from keras_resunet.export.describe import (
        METADATA_IDENTIFIER,
        _metadata_flatbuffer,
        describe_tflite,
        model_info,
        read_tflite_metadata,
    )
    from keras_resunet.export.quantization import convert

    model = build_unet(base_filters=4, depth=2)
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    plain = convert(tmp_path / "sm", "none")
    assert read_tflite_metadata(plain) is None
    info = model_info("unit", "1.2.3", 3, False, "float32", "a test model")
    assert _metadata_flatbuffer(info, ["image"])[4:8] == METADATA_IDENTIFIER
    described = describe_tflite(plain, info)
    metadata = read_tflite_metadata(described)
    assert metadata["version"] == "1.2.3" and metadata["description"] == "a test model"
    assert metadata["min_parser_version"] == "1.0.0"
    assert metadata["inputs"][0]["normalization"] == {"mean": [0.0], "std": [255.0]}
    with pytest.raises(ValueError, match="expected inputs"):
        describe_tflite(plain, model_info("unit", "1", 3, True, "float32", "two inputs"))
    # described twice: still one metadata entry
    again = read_tflite_metadata(describe_tflite(described, info))
    assert again == metadata
