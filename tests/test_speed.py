import keras

from experiments.speed import measure_throughput
from keras_resunet.precision import resolve_precision
from tests.support import smooth_image

TINY = {"base_filters": 4, "depth": 2}
IMAGES = [smooth_image(48, 48, seed=i) for i in range(3)]


def test_measure_throughput_reports_patches_per_second():
    row = measure_throughput(
        "unet", IMAGES, batch_size=4, patch_size=16, steps=3, warmup=2, jit_compile=False, **TINY
    )
    from keras_resunet.models import build_model

    assert row["parameters"] == build_model("unet", **TINY).count_params()
    # a tiny UNet on 16x16 patches: between one patch a second and a million
    assert 1 < row["patches_per_second"] < 1e6
    assert (row["batch_size"], row["patch_size"]) == (4, 16)
    row = measure_throughput(
        "unet",
        IMAGES,
        batch_size=4,
        patch_size=16,
        steps=3,
        warmup=2,
        jit_compile=False,
        precision="mixed_bfloat16",
        **TINY,
    )
    assert row["precision"] == "mixed_bfloat16" and row["patches_per_second"] > 0
    row = measure_throughput(
        "unet", IMAGES, batch_size=4, patch_size=16, steps=3, warmup=2, precision="auto", **TINY
    )
    assert row["precision_requested"] == "auto"
    assert row["precision"] == resolve_precision("auto")
    assert keras.mixed_precision.dtype_policy().name == "float32"
