import json

import numpy as np

from keras_resunet import degradations, pretrained
from keras_resunet.export import model_degradation


def test_a_shipped_models_degradation_is_its_task_at_its_level():
    deblur = model_degradation("resunet-strong-deblur-denoise")
    assert degradations.blur_kernel(deblur) is not None
    assert degradations.noise_level(deblur) == 0.1
    noise_map = model_degradation("resunet-noise-map")  # checked at sigma 0.1
    assert degradations.blur_kernel(noise_map) is None and noise_map.sigma == 0.1


def test_a_model_file_gets_the_degradation_of_the_shipped_model_or_run_it_is(tmp_path):
    assert pretrained.entry_for("resunet-noise-map") is pretrained.PRETRAINED["resunet-noise-map"]
    assert pretrained.entry_for(str(tmp_path / "x.keras")) is None
    entry = pretrained.PRETRAINED["resunet-strong-deblur-denoise"]
    shipped = pretrained.models_dir() / entry.filename
    assert degradations.blur_kernel(model_degradation(str(shipped))) is not None
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"task": "denoise", "sigma": 0.05}))
    from_run = model_degradation(str(run / "model.keras"))
    assert degradations.noise_level(from_run) == 0.05
    assert model_degradation(str(tmp_path / "other.keras")) is None
    kernel = degradations.blur_kernel(model_degradation("resunet-deblur-denoise"))
    assert np.isclose(kernel.sum(), 1.0)
