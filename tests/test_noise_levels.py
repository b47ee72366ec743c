import json

import numpy as np
from PIL import Image

from experiments import noise_levels
from keras_resunet.models import build_resunet
from tests.support import smooth_image


def test_quick_noise_level_report(tmp_path):
    root = tmp_path / "data"
    for folder in ("CBSD68", "BSDS300/images/test"):
        (root / folder).mkdir(parents=True)
        for index in range(2):
            image = np.round(smooth_image(40, 48, seed=index) * 255).astype(np.uint8)
            Image.fromarray(image).save(root / folder / f"{index}.png")
    build_resunet(base_filters=4, depth=2, noise_level_map=True).save(tmp_path / "nm.keras")
    build_resunet(base_filters=4, depth=2).save(tmp_path / "plain.keras")
    out = tmp_path / "out"
    args = ["--model", str(tmp_path / "nm.keras"), "--reference", str(tmp_path / "plain.keras")]
    args += ["--data-root", str(root), "--out", str(out), "--quick"]
    assert noise_levels.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    known = summary["known_sigma"]["noise_map"]
    assert known["CBSD68@15"]["psnr"] > known["CBSD68@50"]["psnr"]
    estimated = summary["sigma_mismatch_cbsd68"]["25/estimated"]["sigma_estimated_mean_255"]
    assert 15 < estimated < 40  # smooth images: the wavelet estimate finds the added noise
    readme = (out / "README.md").read_text()
    assert f"| 25 | {known['CBSD68@25']['psnr']:.2f} |" in readme
    assert (out / "psnr_vs_sigma.png").is_file()
    assert noise_levels.main([*args[:2], "--reference", "nlm", *args[4:]]) == 0  # any denoiser
    plain = ["--model", str(tmp_path / "plain.keras"), *args[2:]]
    assert noise_levels.main(plain) == 1  # a model without a noise-level input is refused


def test_classical_cache_grows_with_the_noise_each_image_has_in_the_full_set(tmp_path):
    images = [smooth_image(32, 40, seed=index) for index in range(3)]
    names = ["a.png", "b.png", "c.png"]
    whole = noise_levels.classical_scores(
        tmp_path / "whole.json", "nlm", 25, images, names, log=lambda _: None
    )
    grown = tmp_path / "grown.json"
    first = noise_levels.classical_scores(grown, "nlm", 25, images[:1], names[:1], print)
    assert first == whole[:1]
    assert noise_levels.classical_scores(grown, "nlm", 25, images, names, print) == whole
    assert len(set(whole)) == 3  # three different images, three scores


def test_every_recipe_ab_arm_gets_a_row_with_its_per_sigma_changes(tmp_path):
    assert "not been compared" in noise_levels._recipe_ab(tmp_path)
    for name, gain in (("recipe_ab", 0.01), ("recipe_ab_loss", -0.02)):
        record = {
            "command": f"python -m experiments.recipe_ab --name {name}",
            "start": "start.keras",
            "validation": "2 images",
            "start_psnr": {"15": 33.0, "25": 30.0, "50": 27.0},
            "arms": {
                "arm": {
                    "changes": {"pixel_loss": "l1", "model_args": {"bottleneck": 2}},
                    "parameters": 1_500_000,
                    "steps": 2400,
                    "psnr": {"15": 33.0 + gain, "25": 30.0, "50": 27.0 - gain},
                    "train_seconds": 120.0,
                }
            },
        }
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    text = noise_levels._recipe_ab(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    cells = "| arm | pixel_loss=l1, bottleneck=2 | 1.50 M | 2,400 | 2 |"
    assert rows == [
        f"| [recipe_ab](recipe_ab.md) {cells} +0.010 | +0.000 | -0.010 |",
        f"| [recipe_ab_loss](recipe_ab_loss.md) {cells} -0.020 | +0.000 | +0.020 |",
    ]
    assert "scored on 2 images" in text
    assert "- recipe_ab_loss: `python -m experiments.recipe_ab --name recipe_ab_loss`" in text


def test_a_model_tried_and_not_shipped_is_compared_with_the_shipped_one(tmp_path):
    def known(psnr, seconds):
        cells = {f"CBSD68@{s}": {"psnr": psnr + i, "seconds_per_megapixel": seconds} for i, s in
                 enumerate((15, 25, 50))}  # fmt: skip
        return cells

    shipped = {"known_sigma": {"noise_map": known(33.0, 0.5)}}
    assert noise_levels._trials(shipped, tmp_path) == ""
    trial = {
        "command": "python -m experiments.noise_levels --model wide.keras",
        "known_sigma": {"noise_map": known(33.05, 0.9), "reference": known(30.0, 0.4)},
        "trial": {"change": "wider", "training_command": "resunet train", "not_shipped_because": "slow"},
    }  # fmt: skip
    (tmp_path / "trial_wide.json").write_text(json.dumps(trial))
    text = noise_levels._trials(shipped, tmp_path)
    assert "[trial_wide.json](trial_wide.json)" in text and "`resunet train`" in text
    assert "33.05 / 34.05 / 35.05 dB (+0.05 / +0.05 / +0.05 against the model above)" in text
    assert (
        "0.90 s per megapixel against the sigma-0.1 ResUNet's 0.40 in the same run (2.2x): slow"
        in text
    )
    quick = {"known_sigma": {"noise_map": {"CBSD68@25": {"psnr": 30.0}}}}
    assert noise_levels._trials(quick, tmp_path) == ""
