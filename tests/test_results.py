import json

import numpy as np
import pytest
from PIL import Image

from keras_resunet import results


def _record(method, dataset, psnr, **kwargs):
    return results.Record(method, "denoise", dataset, 0.1, psnr=psnr, ssim=psnr / 40, **kwargs)


def test_records_merge_by_method_and_dataset(tmp_path):
    path = tmp_path / "summary.json"
    results.update_records(
        path, [_record("unet", "BSDS300", 29.0), _record("nlm", "BSDS300", 27.0)]
    )
    merged = results.update_records(
        path, [_record("unet", "BSDS300", 29.5), _record("unet", "CBSD68", 29.9)]
    )
    assert [(r.method, r.dataset, r.psnr) for r in merged] == [
        ("unet", "BSDS300", 29.5),
        ("nlm", "BSDS300", 27.0),
        ("unet", "CBSD68", 29.9),
    ]
    assert len(json.loads(path.read_text())) == 3
    assert [r.psnr for r in results.load_records(path)] == [29.5, 27.0, 29.9]


def test_table_shows_every_method_the_poster_number_and_why_one_is_missing():
    table = results.format_table(
        [
            _record("degraded input", "BSDS300", 20.5),
            _record("resunet", "BSDS300", 30.2, params=1_667_683, train_steps=7000),
            results.Record("resunet_perceptual", "denoise", "BSDS300", 0.1, status="not run: x"),
        ],
        "denoise",
    )
    lines = table.splitlines()
    assert lines[2].startswith("| degraded input | 20.50 | 0.5125 |")
    assert "| resunet | 30.20 | 0.7550 | 30.11 | 1,667,683 | 7,000 |" in lines[3]
    assert "| resunet_perceptual | not run: x |  | 29.50 |" in lines[4]
    # other test sets (the gray setting's BSD68) get no poster column
    gray = results.format_table([_record("resunet", "BSD68", 28.6, params=10)], "denoise")
    assert "poster" not in gray and "| resunet | 28.60 | 0.7150 | 10 |" in gray


def test_figure_has_a_panel_per_method(tmp_path):
    image = np.full((20, 30, 3), 0.5, np.float32)
    results.make_figure(
        tmp_path / "f.png", [("a", image), ("b", image), ("c", None)], crop=(2, 3, 10, 12)
    )
    with Image.open(tmp_path / "f.png") as figure:
        assert figure.size == (3 * 12 + 2 * 4, 10 + 22)


@pytest.mark.parametrize("text", ["", "not json"])
def test_corrupt_summary_is_an_error_not_silently_replaced(tmp_path, text):
    path = tmp_path / "summary.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        results.update_records(path, [_record("unet", "BSDS300", 29.0)])
    assert path.read_text() == text
