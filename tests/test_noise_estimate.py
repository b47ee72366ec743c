import json

import numpy as np
from PIL import Image

from experiments import noise_estimate
from keras_resunet.models import build_resunet
from tests.support import smooth_image


def _data_root(tmp_path, count=4):
    folder = tmp_path / "data" / "Photos1k" / "val" / "source"
    folder.mkdir(parents=True)
    for index in range(count):
        image = np.round(smooth_image(64, 72, seed=index) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{index}.png")
    return tmp_path / "data"


def test_quick_report_reads_subsampled_jpegs_in_luma_and_corrects_for_clipping(tmp_path):
    root = _data_root(tmp_path)
    build_resunet(base_filters=4, depth=2, noise_level_map=True).save(tmp_path / "nm.keras")
    out = tmp_path / "out"
    args = ["--model", str(tmp_path / "nm.keras"), "--data-root", str(root), "--out", str(out)]
    assert noise_estimate.main([*args, "--quick"]) == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert set(rows) == {f"{s}/{label}" for s in (0, 25) for label in noise_estimate.FORMATS}
    png, jpeg = rows["25/PNG"], rows["25/JPEG q95 4:2:0"]
    assert abs(png["luma_mean_255"] - 25) < 2.5 and abs(png["channels_mean_255"] - 25) < 2.5
    # subsampled chroma hides noise from the per-channel estimate, not from the luma one
    assert jpeg["channels_mean_255"] < 20 and jpeg["luma_mean_255"] > 22.5
    assert jpeg["luma_median_error"] < 0.1 < jpeg["channels_median_error"]
    assert rows["0/PNG"]["luma_mean_255"] < 2 and rows["0/PNG"]["luma_median_error"] is None
    for row in rows.values():  # the clipping correction only raises the luma estimate
        assert row["corrected_mean_255"] >= row["luma_mean_255"]
    assert abs(png["corrected_mean_255"] - 25) < 2.5
    assert rows["25/PNG"]["restored_crops"] == 2
    readme = (out / "README.md").read_text()
    error = jpeg["channels_median_error"]
    assert f"| 25 | JPEG q95 4:2:0 | {jpeg['channels_mean_255']:.1f} ({error:.2f}) |" in readme
    assert f"| {jpeg['psnr_true_sigma']:.2f} | {jpeg['psnr_channels_sigma']:.2f} |" in readme


def test_a_model_without_a_noise_level_input_is_refused_before_any_work(tmp_path, capsys):
    root = _data_root(tmp_path, count=1)
    build_resunet(base_filters=4, depth=2).save(tmp_path / "plain.keras")
    out = tmp_path / "out"
    args = ["--model", str(tmp_path / "plain.keras"), "--data-root", str(root), "--out", str(out)]
    assert noise_estimate.main([*args, "--quick"]) == 1
    assert "no noise-level input" in capsys.readouterr().err and not out.exists()


def test_png_round_trip_is_exact_and_jpeg_is_close():
    image = smooth_image(40, 48)
    pixels = np.round(image * 255) / 255
    assert np.array_equal(noise_estimate.saved_as(image, None), pixels)
    jpeg = noise_estimate.saved_as(image, {"quality": 95, "subsampling": 2})
    assert jpeg.shape == image.shape and 0 < np.abs(jpeg - pixels).max() < 0.1
