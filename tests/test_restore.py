import os

import numpy as np
import pytest
from PIL import Image

from keras_resunet import io
from keras_resunet.cli import main
from keras_resunet.models import build_resunet
from keras_resunet.restore import RestoreOptions, collect_inputs, restore_files, summarize
from tests.support import smooth_image


@pytest.fixture
def inputs(tmp_path):
    """A folder of images in several modes, plus one corrupt file and one too small."""
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = io.to_uint8(smooth_image(40, 52))
    Image.fromarray(rgb).save(folder / "color.png")
    Image.fromarray(rgb[..., 1]).save(folder / "gray.png")
    alpha = np.tile(np.arange(52, dtype=np.uint8) * 4, (40, 1))
    Image.fromarray(np.dstack([rgb, alpha])).save(folder / "rgba.png")
    deep = (smooth_image(40, 52, channels=1)[..., 0] * 65535).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep.png")
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=95)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.fromarray(rgb[:2, :2]).save(folder / "tiny.png")
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    return folder


@pytest.fixture
def tiny_model(tmp_path):
    path = tmp_path / "tiny.keras"
    build_resunet(base_filters=4, depth=2).save(path)
    return path


def test_every_file_keeps_its_mode_and_failures_are_reported_by_name(inputs, tiny_model, tmp_path):
    out = tmp_path / "out"
    lines = []
    results = restore_files(
        [inputs, tmp_path / "missing.png"], out, RestoreOptions(model=str(tiny_model)), lines.append
    )
    errors = {r.source.name: r.error for r in results if r.error}
    assert set(errors) == {"broken.png", "tiny.png", "missing.png"}
    assert "not a readable image" in errors["broken.png"]
    assert "smaller than" in errors["tiny.png"] and "file not found" in errors["missing.png"]
    assert sorted(p.name for p in out.iterdir()) == [
        "color.png",
        "deep.png",
        "gray.png",
        "photo.jpg",
        "rgba.png",
    ]
    for name in ("color.png", "gray.png", "rgba.png", "deep.png", "photo.jpg"):
        with Image.open(inputs / name) as before, Image.open(out / name) as after:
            assert (after.mode, after.size) == (before.mode, before.size), name
    with Image.open(inputs / "rgba.png") as before, Image.open(out / "rgba.png") as after:
        np.testing.assert_array_equal(np.asarray(after)[..., 3], np.asarray(before)[..., 3])
    assert len(lines) == 8 and sum("FAILED" in line for line in lines) == 2  # + missing.png
    # a file that is not an image is named among the skipped, not left out
    assert {r.source.name: r.skipped for r in results if r.skipped} == {
        "notes.txt": "not an image file (.txt)"
    }


def test_tiles_bound_the_work_but_not_the_result(inputs, tiny_model, tmp_path):
    whole = restore_files(
        [inputs / "color.png"], tmp_path / "a", RestoreOptions(str(tiny_model), tile=0)
    )
    tiled = restore_files(
        [inputs / "color.png"], tmp_path / "b", RestoreOptions(str(tiny_model), tile=32, overlap=8)
    )
    assert not whole[0].error and not tiled[0].error
    a = io.read_image_file(tmp_path / "a" / "color.png").pixels
    b = io.read_image_file(tmp_path / "b" / "color.png").pixels
    assert np.abs(a - b)[4:-4, 4:-4].mean() < 0.01


def test_noisy_demo_reports_a_gain_and_writes_the_degraded_input(inputs, tmp_path):
    options = RestoreOptions(model="nlm", noisy_demo=True)
    results = restore_files([inputs / "color.png", inputs / "gray.png"], tmp_path / "o", options)
    for result in results:
        assert result.psnr_restored > result.psnr_degraded + 3
    assert (tmp_path / "o" / "color_degraded.png").is_file()


def test_nothing_overwrites_an_input_or_an_earlier_output(inputs, tmp_path):
    before = (inputs / "color.png").read_bytes()
    results = restore_files([inputs / "color.png"], inputs, RestoreOptions(model="nlm"))
    assert "overwrite the input" in results[0].error
    assert (inputs / "color.png").read_bytes() == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "color.png").write_bytes(before)
    results = restore_files(
        [inputs / "color.png", other / "color.png"], tmp_path / "o", RestoreOptions(model="nlm")
    )
    assert results[0].error is None and "same file name" in results[1].error


def test_folders_without_images_are_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    paths, problems, skipped = collect_inputs([tmp_path / "empty"])
    assert paths == [] and problems == [(tmp_path / "empty", "folder holds no files")]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "read.me").write_text("x")
    paths, problems, skipped = collect_inputs([tmp_path / "notes", tmp_path / "notes" / "read.me"])
    # the same file named directly or found in a folder: skipped alike, by name
    assert paths == [] and problems == []
    assert skipped == [(tmp_path / "notes" / "read.me", "not an image file (.me)")] * 2


def test_cli_exit_codes_and_one_line_errors(inputs, tiny_model, tmp_path, capsys):
    # a file where the output folder should be: the folder cannot be created
    (tmp_path / "blocker").write_text("")
    assert (
        main(
            [
                "denoise",
                str(inputs / "color.png"),
                "--output",
                str(tmp_path / "blocker" / "o"),
                "--model",
                str(tiny_model),
            ]
        )
        == 1
    )
    error = capsys.readouterr().err.strip()
    assert "cannot write to output folder" in error and len(error.splitlines()) == 1

    assert main(["denoise", str(inputs), "--output", str(tmp_path / "o"), "--model", "resnet"]) == 1
    assert "Unknown model 'resnet'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

    code = main(
        ["denoise", str(inputs), "--output", str(tmp_path / "o"), "--model", str(tiny_model)]
    )
    captured = capsys.readouterr()
    assert code == 1 and "2 of 8 inputs failed" in captured.err
    assert "restored 5, failed 2, skipped 1 of 8 inputs" in captured.out
    assert "failed: " in captured.out
    args = ["denoise", str(inputs / "color.png"), "--model", str(tiny_model), "--tile", "0"]
    assert main([*args, "--output", str(tmp_path / "plain")]) == 0
    assert main([*args, "--output", str(tmp_path / "o2"), "--ensemble"]) == 0
    # the ensemble output is the mean of the 8 transformed restorations, not the plain one
    from keras_resunet.inference import load_denoiser, restore_image

    image = io.read_image_file(inputs / "color.png").pixels
    expected = io.to_uint8(restore_image(load_denoiser(str(tiny_model)), image, ensemble=True))
    ensembled = np.asarray(Image.open(tmp_path / "o2" / "color.png"))
    plain = np.asarray(Image.open(tmp_path / "plain" / "color.png"))
    assert np.abs(ensembled.astype(int) - expected).max() <= 1
    assert np.abs(ensembled.astype(int) - plain).max() > 1


def _mode(path):
    return path.stat().st_mode & 0o777


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_outputs_get_the_permissions_of_normal_files(inputs, tmp_path, umask_022):
    results = restore_files([inputs / "color.png"], tmp_path / "o", RestoreOptions(model="nlm"))
    assert results[0].output is not None and _mode(results[0].output) == 0o644


def test_orientation_colour_profile_and_exif_are_kept(tiny_model, tmp_path):
    from PIL import ImageCms

    folder = tmp_path / "in"
    folder.mkdir()
    pixels = io.to_uint8(smooth_image(40, 64))  # stored sideways: 40 high, 64 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "TestCam"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(folder / "side.jpg", exif=exif, icc_profile=icc, quality=95)
    results = restore_files([folder], tmp_path / "o", RestoreOptions(model=str(tiny_model)))
    assert results[0].error is None
    with Image.open(tmp_path / "o" / "side.jpg") as out:
        assert out.size == (40, 64)  # upright: as a viewer shows the input
        assert out.info.get("icc_profile") == icc
        saved = out.getexif()
        assert saved.get(0x0112, 1) == 1 and saved.get(0x010F) == "TestCam"


def test_unsupported_images_and_models_are_refused_by_name(inputs, tmp_path):
    import keras

    folder = tmp_path / "odd"
    folder.mkdir()
    Image.fromarray(smooth_image(40, 40, channels=1)[..., 0]).save(folder / "float.tif")
    pages = [Image.fromarray(io.to_uint8(smooth_image(40, 40, seed=i))) for i in range(2)]
    pages[0].save(folder / "pages.tif", save_all=True, append_images=pages[1:])
    results = restore_files([folder], tmp_path / "o", RestoreOptions(model="nlm"))
    errors = {r.source.name: r.error for r in results}
    assert "32-bit float" in errors["float.tif"] and "2 pages" in errors["pages.tif"]
    assert not (tmp_path / "o" / "float.tif").exists()

    inputs_ = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs_))
    keras.Model(inputs_, keras.layers.Dense(10)(pooled)).save(tmp_path / "classifier.keras")
    with pytest.raises(ValueError, match="not an image-to-image model"):
        restore_files(
            [inputs], tmp_path / "c", RestoreOptions(model=str(tmp_path / "classifier.keras"))
        )
    assert not (tmp_path / "c").exists()


def test_an_image_over_the_pixel_limit_fails_alone(inputs, tmp_path, monkeypatch):
    import keras_resunet.restore as restore_module

    big = inputs.parent / "big"
    big.mkdir()
    Image.fromarray(io.to_uint8(smooth_image(200, 200))).save(big / "a_big.png")
    Image.fromarray(io.to_uint8(smooth_image(40, 40))).save(big / "b_small.png")
    monkeypatch.setattr(restore_module, "MAX_PIXELS", 20_000)
    results = restore_files([big], tmp_path / "o", RestoreOptions(model="nlm"))
    assert "too large" in results[0].error and results[1].error is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tile", "-5"], "--tile must be 0"),
        (["--tile", "8", "--overlap", "0"], "at least 32"),
        (["--tile", "64", "--overlap", "40"], "must exceed twice --overlap"),
        (["--sigma", "nan"], "must be in [0, 1]"),
        (["--sigma", "3"], "must be in [0, 1]"),
    ],
)
def test_bad_arguments_fail_before_the_model_loads(
    inputs, tmp_path, capsys, argv, message, monkeypatch
):
    from keras_resunet import inference

    monkeypatch.setattr(inference, "load_denoiser", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(SystemExit) as stop:
        main(["denoise", str(inputs), "--output", str(tmp_path / "o"), *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_noisy_demo_outputs_never_replace_each_other(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("x.png", "x_degraded.png"):
        Image.fromarray(io.to_uint8(smooth_image(40, 40))).save(folder / name)
    options = RestoreOptions(model="nlm", noisy_demo=True)
    results = restore_files([folder], tmp_path / "o", options, log=lambda _: 0)
    assert results[0].error is None and "would be lost" in results[1].error
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["x.png", "x_degraded.png"]


def test_existing_outputs_are_reported_or_skipped(inputs, tmp_path):
    out = tmp_path / "o"
    restore_files([inputs / "color.png"], out, RestoreOptions(model="nlm"), log=lambda _: 0)
    before = (out / "color.png").read_bytes()
    lines = []
    skipped = restore_files(
        [inputs / "color.png"], out, RestoreOptions(model="nlm", skip_existing=True), lines.append
    )
    assert skipped[0].skipped and (out / "color.png").read_bytes() == before
    assert "skipped 1" in summarize(skipped) and "skipped" in lines[0]
    replaced = restore_files([inputs / "color.png"], out, RestoreOptions(model="nlm"), lines.append)
    assert replaced[0].replaced and "replaced an existing file" in lines[-1]


def test_ctrl_c_ends_with_a_summary_and_no_partial_file(inputs, tmp_path, capsys, monkeypatch):
    calls = []

    def interrupted(path, image, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save_file(path, image, **kwargs)

    real_save_file = io.save_image_file
    monkeypatch.setattr(io, "save_image_file", interrupted)
    code = main(["denoise", str(inputs), "--output", str(tmp_path / "o"), "--model", "nlm"])
    captured = capsys.readouterr()
    assert code == 130 and "interrupted" in captured.err
    assert "restored 1, failed" in captured.out
    assert [p.name for p in (tmp_path / "o").iterdir()] == [calls[0].name]


def test_sigterm_unwinds_and_removes_the_temporary_file(tmp_path):
    from keras_resunet.cli import _terminate

    with pytest.raises(SystemExit) as stop, io.atomic_write(tmp_path / "a.png") as temporary:
        temporary.write_bytes(b"half")
        _terminate(15, None)
    assert stop.value.code == 143 and list(tmp_path.iterdir()) == []


def test_a_noise_map_model_uses_the_given_or_the_estimated_sigma(tmp_path):
    from keras_resunet.models import build_resunet

    build_resunet(base_filters=4, depth=2, noise_level_map=True).save(tmp_path / "nm.keras")
    folder = tmp_path / "in"
    folder.mkdir()
    clean = smooth_image(64, 64)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.08, clean.shape), 0, 1)
    Image.fromarray(io.to_uint8(noisy)).save(folder / "n.png")
    options = RestoreOptions(model=str(tmp_path / "nm.keras"))
    estimated = restore_files([folder], tmp_path / "a", options, log=lambda _: 0)[0]
    assert estimated.sigma_estimated and 0.06 < estimated.sigma < 0.1
    options = RestoreOptions(model=str(tmp_path / "nm.keras"), sigma=0.03)
    given = restore_files([folder], tmp_path / "b", options, log=lambda _: 0)[0]
    assert given.sigma == 0.03 and not given.sigma_estimated


def test_a_fixed_level_model_says_it_ignores_sigma(inputs, tiny_model, tmp_path):
    lines = []
    options = RestoreOptions(model=str(tiny_model), sigma=0.05)
    results = restore_files([inputs / "color.png"], tmp_path / "o", options, lines.append)
    assert results[0].error is None and results[0].sigma is None
    assert "no noise-level input" in lines[0]


@pytest.mark.parametrize("deblur", [False, True])
def test_the_estimate_is_measured_as_the_files_codec_allows(tmp_path, deblur):
    from keras_resunet.noise_level import estimate_sigma
    from keras_resunet.operators import BlurOperator

    build_resunet(base_filters=4, depth=2, noise_level_map=True).save(tmp_path / "nm.keras")
    folder = tmp_path / "in"
    folder.mkdir()
    # fine texture on most of the picture: measured whole, it reads as noise
    clean = 0.3 + 0.4 * smooth_image(128, 128)
    clean[:, 40:] += np.random.default_rng(1).uniform(-0.08, 0.08, (128, 88, 1)).astype(np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, 5 / 255, clean.shape)
    picture = Image.fromarray(io.to_uint8(noisy))
    picture.save(folder / "a.png")
    picture.save(folder / "fine.jpg", quality=95)
    picture.save(folder / "coarse.jpg", quality=75)
    operator = BlurOperator(np.full((3, 3), 1 / 9, np.float32)) if deblur else None
    options = RestoreOptions(model=str(tmp_path / "nm.keras"), operator=operator, iterations=1)
    results = restore_files([folder], tmp_path / "o", options, log=lambda _: 0)
    assert all(result.error is None for result in results)
    sigmas = {result.source.name: result.sigma for result in results}
    for name, used, other in (("a.png", None, 0), ("fine.jpg", 95, 0), ("coarse.jpg", 0, None)):
        pixels = io.read_image_file(folder / name).pixels
        assert sigmas[name] == pytest.approx(estimate_sigma(pixels, stored_quality=used))
        # the other measure differs: the check above tells which was used
        assert abs(estimate_sigma(pixels, stored_quality=other) / sigmas[name] - 1) > 0.2, name
