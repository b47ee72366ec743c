import json

import numpy as np
from PIL import Image

from experiments import noise_estimate
from keras_resunet.models import build_resunet
from tests.support import smooth_image


def _data_root(tmp_path, count=4, size=(64, 72)):
    folder = tmp_path / "data" / "Photos1k" / "val" / "source"
    folder.mkdir(parents=True)
    for index in range(count):
        image = np.round(smooth_image(*size, seed=index) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{index}.png")
    return tmp_path / "data"


def test_quick_report_compares_both_measures_and_names_the_one_denoise_uses(tmp_path):
    root = _data_root(tmp_path, size=(160, 192))  # 30 blocks: the block measure applies
    build_resunet(base_filters=4, depth=2, noise_level_map=True).save(tmp_path / "nm.keras")
    out = tmp_path / "out"
    args = ["--model", str(tmp_path / "nm.keras"), "--data-root", str(root), "--out", str(out)]
    assert noise_estimate.main([*args, "--quick"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["rows"]
    assert set(rows) == {f"{s}/{label}" for s in (0, 25) for label in noise_estimate.FORMATS}
    for name in ("whole", "blocks"):
        assert abs(rows["25/PNG"][f"{name}_mean_255"] - 25) < 2.5
        assert (
            rows["0/PNG"][f"{name}_mean_255"] < 2 and rows["0/PNG"][f"{name}_median_error"] is None
        )
    used = {key.split("/", 1)[1]: row["used"] for key, row in rows.items()}
    assert used == {
        "PNG": "blocks",
        "JPEG q95 4:2:0": "blocks",
        "JPEG q90 4:2:0": "blocks",
        "JPEG q85 4:2:0": "whole",
        "JPEG q75 4:2:0": "whole",
    }
    assert summary["fine_quality"] == 90 and rows["25/PNG"]["restored_crops"] == 2
    readme = (out / "README.md").read_text()
    jpeg = rows["25/JPEG q75 4:2:0"]
    whole, blocks = (
        f"{jpeg[f'{name}_mean_255']:.1f} ({jpeg[f'{name}_median_error']:.2f})"
        for name in ("whole", "blocks")
    )
    assert f"| 25 | JPEG q75 4:2:0 | {whole} | {blocks} | whole image |" in readme
    scores = f"{jpeg['psnr_whole_sigma']:.2f} | {jpeg['psnr_blocks_sigma']:.2f}"
    assert f"| {jpeg['psnr_true_sigma']:.2f} | {scores} | whole image |" in readme


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
