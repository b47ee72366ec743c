import numpy as np
import pytest
from PIL import Image

from keras_resunet import io
from keras_resunet.cli import main
from keras_resunet.models import build_resunet
from keras_resunet.restore import RestoreOptions, collect_inputs, restore_files
from tests.conftest import smooth_image


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
    assert len(lines) == 7 and sum("FAILED" in line for line in lines) == 2  # + missing.png


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
    paths, problems = collect_inputs([tmp_path / "empty"])
    assert paths == [] and problems == [(tmp_path / "empty", "folder holds no images")]


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
    assert code == 1 and "2 of 7 inputs failed" in captured.err
    assert "restored 5 of 7 inputs" in captured.out and "failed: " in captured.out
    assert (
        main(
            [
                "denoise",
                str(inputs / "color.png"),
                "--output",
                str(tmp_path / "o2"),
                "--model",
                str(tiny_model),
                "--ensemble",
            ]
        )
        == 0
    )
