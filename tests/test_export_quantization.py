import json

import keras
import numpy as np
import pytest
from PIL import Image

from keras_resunet import build_resunet, io
from keras_resunet.calibration import CALIBRATION_SIGMAS, Codec, representative
from keras_resunet.export import ExportOptions, model_degradation
from keras_resunet.export import quantization as q
from keras_resunet.export.runtimes import Runner
from tests.support import smooth_image

CALIBRATION = [smooth_image(64, 80, seed=i) for i in range(3)]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """(Keras model, SavedModel folder, calibration generator) of a tiny noise-map ResUNet."""
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    model = build_resunet(base_filters=4, depth=2, noise_level_map=True)
    folder = tmp_path_factory.mktemp("quant") / "savedmodel"
    spec = tf.TensorSpec((None, None, None, 4), tf.float32)
    model.export(str(folder), format="tf_saved_model", verbose=False, input_signature=[spec])
    dataset = representative(CALIBRATION, spec, True, Codec("float32"), count=16, size=48)
    return model, folder, dataset


def _max_diff(model, path, batch):
    return float(np.max(np.abs(Runner(path)(batch) - model.predict(batch, verbose=0))))


def _tensor_types(path):
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return {d["name"]: np.dtype(d["dtype"]).name for d in details}


def test_calibration_crops_cover_the_noise_levels_and_fit_small_images(saved_model):
    _, _, dataset = saved_model
    samples = [batch[0] for batch in dataset()]
    assert len(samples) == 16
    assert all(s.shape == (1, 48, 48, 4) for s in samples)  # min(size, image) crops
    levels = sorted({round(float(s[0, 0, 0, 3]), 6) for s in samples})
    assert levels == sorted(round(v, 6) for v in CALIBRATION_SIGMAS)


def test_calibration_crops_of_a_fixed_level_model_get_its_own_degradation():
    import tensorflow as tf

    from keras_resunet import degradations

    spec = tf.TensorSpec((None, None, None, 3), tf.float32)
    blur_only = degradations.make_degradation("deblur_denoise", sigma=0.0)
    samples = [
        b[0][0]
        for b in representative(
            CALIBRATION, spec, False, Codec("float32"), degradation=blur_only, count=3, size=48
        )()
    ]
    sharp = [
        b[0][0]
        for b in representative(
            CALIBRATION,
            spec,
            False,
            Codec("float32"),
            degradation=degradations.GaussianNoise(0.0),
            count=3,
            size=48,
        )()
    ]
    for index, (blurred, crop) in enumerate(zip(samples, sharp)):  # the same seeded crops
        image = CALIBRATION[index % len(CALIBRATION)]
        top, left = next(
            (y, x)
            for y in range(image.shape[0] - 47)
            for x in range(image.shape[1] - 47)
            if np.array_equal(image[y : y + 48, x : x + 48], crop)
        )
        # cut from the blurred photo, so the crop's edges are not wrapped around
        whole = degradations.apply(blur_only, image, [1, index])
        np.testing.assert_allclose(blurred, whole[top : top + 48, left : left + 48], atol=1e-6)
        assert np.abs(blurred - degradations.apply(blur_only, crop, [1, index])).max() > 0.01
        assert np.abs(blurred - crop).max() > 0.01  # blurred, not the crop itself
    noisy = next(representative(CALIBRATION, spec, False, Codec("float32"), count=1, size=48)())
    assert 0.08 < float(np.std(noisy[0][0] - sharp[0])) < 0.12  # default: noise at 0.1


def test_calibration_at_chosen_noise_levels_only():
    import tensorflow as tf

    spec = tf.TensorSpec((None, None, None, 4), tf.float32)
    samples = representative(CALIBRATION, spec, True, Codec("float32"), count=4, sigmas=(0.2,))
    assert {float(batch[0][0, 0, 0, 3]) for batch in samples()} == {np.float32(0.2)}


def test_noise_bands_parse_check_and_spread_their_calibration_levels():
    assert q.parse_noise_bands("0:0.1,0.1:0.3") == ((0.0, 0.1), (0.1, 0.3))
    levels = q.band_sigmas((0.1, 0.3))
    assert len(levels) == q.BAND_LEVELS and levels[0] == 0.1 and levels[-1] == 0.3
    assert q.band_of(0.1, q.parse_noise_bands("0:0.1,0.1:0.3")) == (0.0, 0.1)
    assert q.band_of(0.5, ((0.0, 0.3),)) is None
    for text in ("0:0.1,0.2", "a:b", "0.3:0.1", "0:1.5", "nan:0.1"):
        with pytest.raises(ValueError, match="LOW:HIGH|0 <= low < high <= 1|is \\(low, high\\)"):
            q.parse_noise_bands(text)


@pytest.mark.parametrize("sigma_255", [0, 5, 10, 15, 25, 30, 35, 50, 60, 75])
def test_the_default_noise_bands_hold_every_usual_level_away_from_an_edge(sigma_255):
    bands = q.parse_noise_bands(",".join(f"{low:g}:{high:g}" for low, high in q.NOISE_BANDS))
    assert bands == q.NOISE_BANDS  # the README writes them in this form
    band = q.band_of(sigma_255 / 255, bands)
    assert band is not None
    between = {high for _, high in bands} & {low for low, _ in bands}  # where one file ends
    assert between and all(abs(sigma_255 / 255 - edge) > 2 / 255 for edge in between)


def test_simulated_int8_rows_change_the_output_by_what_they_round(saved_model):
    from export.quantization_report import simulated_int8

    model, _, dataset = saved_model
    ranges, _ = q.calibration_ranges(model, dataset)
    cases = [
        (sigma, None, np.concatenate([CALIBRATION[i], np.full((64, 80, 1), sigma)], -1))
        for i, sigma in ((0, 0.1), (1, 0.2))
    ]
    wide = {name: [low * 4, high * 4] for name, (low, high) in ranges.items()}
    rows = dict(simulated_int8(model, ranges, cases, ranges_at={0.1: ranges, 0.2: wide}))
    assert list(rows) == [
        "weights", "activations", "weights and activations",
        "activations, ranges of the test's noise level alone",
    ]  # fmt: skip
    exact = [np.clip(model.predict(x[None], verbose=0)[0], 0, 1) for _, _, x in cases]

    def error(label, index):
        return float(np.sqrt(np.mean((rows[label][index] - exact[index]) ** 2)))

    assert all(error(label, 0) > 0 for label in rows)
    # the same ranges give the same outputs; ranges 4x wider, coarser steps, a larger error
    last = "activations, ranges of the test's noise level alone"
    np.testing.assert_array_equal(rows[last][0], rows["activations"][0])
    assert error(last, 1) > 2 * error("activations", 1)


def test_fixed_size_calibration_needs_images_that_large():
    import tensorflow as tf

    spec = tf.TensorSpec((1, 128, 128, 3), tf.float32)
    with pytest.raises(ValueError, match="128x128"):
        representative(CALIBRATION, spec, False, Codec("float32"))


def test_layer_errors_are_sorted_worst_first(saved_model):
    _, folder, dataset = saved_model
    layers = q.layer_errors(folder, dataset, samples=4)
    assert len(layers) > 5
    errors = [row["rmse_per_scale"] for row in layers]
    assert errors == sorted(errors, reverse=True)
    assert all(e >= 0 for e in errors) and errors[0] > 0
    assert all(row["tensor_name"] and row["range"] > 0 for row in layers)


def test_selective_int8_keeps_the_worst_layers_in_float(saved_model, tmp_path):
    model, folder, dataset = saved_model
    layers = q.layer_errors(folder, dataset, samples=4)
    batch = np.concatenate([CALIBRATION[0][None], np.full((1, 64, 80, 1), 0.1, np.float32)], -1)
    paths = {}
    for name, count in (("int8", 0), ("two", 2), ("most", len(layers) - 1)):
        quantization = "int8" if name == "int8" else "int8_selective"
        paths[name] = tmp_path / f"{name}.tflite"
        paths[name].write_bytes(
            q.convert(folder, quantization, dataset, float_layers=count, layers=layers)
        )
    int8_types, two_types = _tensor_types(paths["int8"]), _tensor_types(paths["two"])
    for row in layers[:2]:
        assert int8_types[row["tensor_name"]] == "int8"
        assert two_types[row["tensor_name"]] == "float32"
    # all layers but the one with the smallest error in float: nearly the float model
    assert _max_diff(model, paths["most"], batch) < _max_diff(model, paths["int8"], batch) / 4
    for count in (0, len(layers)):
        with pytest.raises(ValueError, match="int8_selective keeps 1 to"):
            q.convert(folder, "int8_selective", dataset, float_layers=count, layers=layers)


def test_selective_int8_by_sensitivity_keeps_the_named_keras_layers_in_float(saved_model, tmp_path):
    model, folder, dataset = saved_model
    layers = q.layer_errors(folder, dataset, samples=4)
    ranking = q.sensitivity_ranking(model, dataset, samples=4)
    assert set(ranking) == {layer.name for layer in model.layers[1:]}
    # a layer's tensors, not those of a layer whose name it begins
    out_conv = q.tensors_of(layers, ["resunet_out_conv"])
    assert out_conv and all("resunet_out_conv" in name for name in out_conv)
    assert not q.tensors_of(layers, ["resunet_out"])
    felt = [name for name in ranking if q.tensors_of(layers, [name])]
    least, other = felt[-1], felt[-2]
    path = tmp_path / "selective.tflite"
    data = q.convert(folder, "int8_selective", dataset, 2, layers, ranking=[least, *felt])
    path.write_bytes(data)
    types = _tensor_types(path)
    for name in q.tensors_of(layers, [least, felt[0]]):
        assert types[name] == "float32", name
    assert all(types[name] == "int8" for name in q.tensors_of(layers, [other]))


def test_int16x8_is_closer_to_float_than_int8(saved_model, tmp_path):
    model, folder, dataset = saved_model
    batch = np.concatenate([CALIBRATION[1][None], np.full((1, 64, 80, 1), 0.2, np.float32)], -1)
    diffs = {}
    for quantization in ("int8", "int16x8"):
        path = tmp_path / f"{quantization}.tflite"
        path.write_bytes(q.convert(folder, quantization, dataset))
        diffs[quantization] = _max_diff(model, path, batch)
    assert diffs["int16x8"] < diffs["int8"] / 4


def test_calibrated_variants_need_images_and_float_io():
    with pytest.raises(ValueError, match="representative"):
        q.converter("unused", "int8_selective")
    for quantization in ("int8", "int8_selective", "int16x8"):
        with pytest.raises(ValueError, match=f"{quantization} quantization with uint8 I/O"):
            ExportOptions(quantizations=(quantization,), io="uint8")


def _report_inputs(tmp_path):
    """(argv of a tiny model's report, path of a model with other inputs)."""
    root = tmp_path / "data"
    for folder, count in (("CBSD68", 2), ("train", 3)):
        (root / folder).mkdir(parents=True)
        for index in range(count):
            image = io.to_uint8(smooth_image(40, 56, seed=index + 10 * count))
            Image.fromarray(image).save(root / folder / f"{index}.png")
    keras.utils.set_random_seed(5)
    model_path = tmp_path / "tiny.keras"
    build_resunet(base_filters=4, depth=2, noise_level_map=True).save(model_path)
    build_resunet(base_filters=4, depth=2, noise_level_map=True).save(tmp_path / "qat.keras")
    build_resunet(base_filters=4, depth=2).save(tmp_path / "other.keras")
    build_resunet(base_filters=8, depth=2, noise_level_map=True).save(tmp_path / "wider.keras")
    argv = [
        "--model", str(model_path), "--images", "2", "--float-layers", "3",
        "--representative-data", str(root / "train"), "--data-root", str(root),
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    return argv, tmp_path / "other.keras"


def test_quantization_report_refuses_an_int8_source_of_another_model(tmp_path):
    from export.quantization_report import main

    argv, other = _report_inputs(tmp_path)
    assert main([*argv, "--int8-source", str(other)]) == 1
    # the same inputs and outputs, other weights: a fine-tune of another model
    assert main([*argv, "--int8-source", str(tmp_path / "wider.keras")]) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # eight conversions; each one is tested in test_export*.py
def test_quantization_report_writes_every_variant(tmp_path):
    from export.quantization_report import main

    argv, _ = _report_inputs(tmp_path)
    assert main([*argv, "--int8-source", str(tmp_path / "qat.keras")]) == 0
    record = json.loads((tmp_path / "out" / "quantization_tiny.json").read_text())
    variants = [row["variant"] for row in record["variants"]]
    assert variants == [
        "float32", "fp16", "dynamic", "int8", "int8, 3 layers float", "int16x8",
        "int8 per noise band", "int8 per noise band, 3 layers float",
        "float32, quantization-aware weights", "int8, quantization-aware weights",
    ]  # fmt: skip
    assert record["noise_bands"] == [list(band) for band in q.NOISE_BANDS]
    # a band's file is calibrated on its levels alone: it rounds otherwise than the one file
    rows = {row["variant"]: row for row in record["variants"]}
    assert rows["int8 per noise band"]["psnr"] != rows["int8"]["psnr"]
    assert record["variants"][-2]["max_abs_diff"] > 1e-3  # other weights than the model's
    assert [row["variant"] for row in record["simulation"]] == [
        "weights", "activations", "weights and activations",
        "activations, ranges of the test's noise level alone",
    ]  # fmt: skip
    assert set(record["keras_psnr"]) == {"15/255", "25/255", "50/255"}
    float32 = record["variants"][0]
    assert float32["max_abs_diff"] < 1e-4
    assert all(abs(v) < 1e-3 for v in float32["psnr_change_db"].values())
    page = (tmp_path / "out" / "quantization_tiny.md").read_text()
    assert record["layers"] and "RMS error" in page
    assert "one file per band of noise levels (0-25/255, 25-75/255)" in page


def test_quantization_report_tests_a_run_folder_model_on_its_own_task(tmp_path):
    from export.quantization_report import photo_degradations
    from keras_resunet import degradations

    run = tmp_path / "run"
    run.mkdir()
    config = {"task": "deblur_denoise", "sigma": 0.05, "kernel": "gaussian"}
    (run / "config.json").write_text(json.dumps(config))
    (run / "model.keras").touch()
    [own] = photo_degradations(model_degradation(str(run / "model.keras")), False)
    assert degradations.blur_kernel(own).shape == (7, 7)
    assert degradations.noise_level(own) == 0.05
    [unknown] = photo_degradations(None, False)
    assert degradations.noise_level(unknown) == 0.1 and degradations.blur_kernel(unknown) is None
    levels = [degradations.noise_level(d) for d in photo_degradations(None, True)]
    assert levels == [15 / 255, 25 / 255, 50 / 255]


@pytest.mark.parametrize(
    "argv",
    [["--float-layers", "x"], ["--images", "0"], ["--variants", "int4"], ["--variants", ","]],
)
def test_quantization_report_refuses_bad_arguments(argv, capsys):
    from export.quantization_report import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "resunet-noise-map", *argv])
    assert exit_info.value.code == 2
    assert "--" in capsys.readouterr().err
