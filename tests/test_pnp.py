import numpy as np
import pytest
from PIL import Image

from keras_resunet import metrics, pnp
from keras_resunet.baselines import NLMDenoiser
from keras_resunet.cli import main
from keras_resunet.demo import sample_image
from keras_resunet.kernels import gaussian_kernel, parse_kernel_spec
from keras_resunet.operators import BlurOperator


def test_schedule_runs_from_the_start_level_down_to_the_noise_level():
    levels = pnp.Schedule(iterations=5, start_sigma=0.2, lam=0.25).levels(0.01)
    sigmas = [s for s, _ in levels]
    assert sigmas[0] == pytest.approx(0.2) and sigmas[-1] == pytest.approx(0.01)
    ratios = np.array(sigmas[1:]) / np.array(sigmas[:-1])
    np.testing.assert_allclose(ratios, ratios[0])  # log-spaced
    for sigma, alpha in levels:
        assert alpha == pytest.approx(0.25 * 0.01**2 / sigma**2)
    # a noise-free observation keeps a finite data weight; super-resolution may end higher
    assert pnp.Schedule().levels(0.0)[-1][0] == pytest.approx(pnp.MIN_NOISE)
    assert pnp.Schedule().levels(0.0, end_sigma=2 / 255)[-1][0] == pytest.approx(2 / 255)
    with pytest.raises(ValueError, match="iterations"):
        pnp.Schedule(iterations=0)


def test_a_few_iterations_deblur_better_than_the_blurred_input():
    clean = sample_image("astronaut")[80:176, 160:256]
    operator = BlurOperator(gaussian_kernel(9, 2.0))
    solver = pnp.PlugAndPlay(
        NLMDenoiser(0.02), operator, 0.01, pnp.Schedule(iterations=4), boundary="circular"
    )
    blurred = solver.degrade(clean, [0, 0])
    restored = solver.restore_one(blurred)
    before, after = metrics.psnr(np.clip(blurred, 0, 1), clean), metrics.psnr(restored, clean)
    assert after > before + 1.5, (before, after)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscaling_beats_bicubic_interpolation_and_keeps_the_grid(scale):
    clean = sample_image("chelsea")[:96, :120]
    operator = pnp.make_operator(None, scale)
    solver = pnp.PlugAndPlay(
        NLMDenoiser(0.02), operator, 0.0, pnp.Schedule(iterations=3), boundary="circular"
    )
    low = solver.degrade(clean, [0, 0])
    assert low.shape == (96 // scale, 120 // scale, 3)
    restored = solver.restore_one(low)
    assert restored.shape == clean.shape
    bicubic = pnp.bicubic_upscale(low, scale)
    # bicubic interpolation passes through its samples: the grid is the operator's
    np.testing.assert_allclose(bicubic[::scale, ::scale], low, atol=1e-6)
    assert metrics.psnr(restored, clean) > metrics.psnr(np.clip(bicubic, 0, 1), clean) + 0.3


def test_symmetric_boundaries_leave_no_ringing_at_the_border():
    # a real photo blurred with edges repeated (not circularly): the circular model rings there
    clean = sample_image("coffee")[100:196, 100:196]
    kernel = gaussian_kernel(13, 2.5)
    from scipy import ndimage

    blurred = np.stack(
        [ndimage.convolve(clean[..., c], kernel, mode="nearest") for c in range(3)], -1
    )
    scores = {}
    for boundary in ("circular", "symmetric"):
        solver = pnp.PlugAndPlay(
            NLMDenoiser(0.02),
            BlurOperator(kernel),
            0.002,
            pnp.Schedule(iterations=3),
            boundary=boundary,
        )
        restored = solver.restore_one(blurred)
        border = np.ones(clean.shape[:2], bool)
        border[8:-8, 8:-8] = False
        error = np.mean((restored[border] - clean[border]) ** 2)
        scores[boundary] = -10 * np.log10(error)
    assert scores["symmetric"] > scores["circular"] + 2, scores


def test_a_model_trained_for_one_level_is_refused_with_the_reason():
    from keras_resunet.denoisers import KerasDenoiser
    from keras_resunet.models import build_resunet

    fixed = KerasDenoiser(build_resunet(base_filters=4, depth=2))
    with pytest.raises(ValueError, match="noise-level-map model"):
        pnp.PlugAndPlay(fixed, BlurOperator(np.ones((3, 3))), 0.01)
    with pytest.raises(ValueError, match="boundary"):
        pnp.PlugAndPlay(NLMDenoiser(0.1), BlurOperator(np.ones((3, 3))), 0.01, boundary="wrap")


def test_kernel_specs(tmp_path, shared_datasets):
    gaussian = parse_kernel_spec("gaussian:1.5")
    assert gaussian.shape == (11, 11) and np.isclose(gaussian.sum(), 1)
    assert parse_kernel_spec("motion:9:30").shape == (9, 9)
    levin = parse_kernel_spec("levin:3", shared_datasets)
    assert levin.shape == (27, 27)
    np.save(tmp_path / "k.npy", np.ones((5, 5)) * 2)
    assert parse_kernel_spec(str(tmp_path / "k.npy")).sum() == 50  # normalised later, with a note
    for bad in ("gaussian:-1", "gaussian:x", "levin:9", "blur", "motion:0"):
        with pytest.raises(ValueError, match="--kernel"):
            parse_kernel_spec(bad, shared_datasets)


def _photo(path, mode="RGB", size=(72, 60)):
    image = (sample_image("astronaut")[: size[1], : size[0]] * 255).astype(np.uint8)
    picture = Image.fromarray(image)
    if mode == "RGBA":
        picture.putalpha(Image.fromarray(np.full(image.shape[:2], 200, np.uint8)))
    else:
        picture = picture.convert(mode)
    picture.save(path)
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
@pytest.mark.parametrize(
    "command", [["deblur", "--kernel", "gaussian:1.2"], ["upscale", "--scale", "2"]]
)
def test_cli_restores_each_mode_at_the_right_size(tmp_path, capsys, mode, command):
    _photo(tmp_path / "photo.png", mode)
    out = tmp_path / "out"
    args = [
        *command,
        str(tmp_path / "photo.png"),
        "--output",
        str(out),
        "--model",
        "nlm",
        "--iterations",
        "8",
        "--noisy-demo",
    ]
    assert main(args) == 0, capsys.readouterr().err
    restored = Image.open(out / "photo.png")
    degraded = Image.open(out / "photo_degraded.png")
    scale = 2 if command[0] == "upscale" else 1
    assert restored.mode == mode and restored.size == (72, 60)
    assert degraded.mode == mode and degraded.size == (72 // scale, 60 // scale)
    line = capsys.readouterr().out
    before, after = (
        float(v) for v in line.split("mean PSNR over 1 images: ")[1].split(" dB")[0].split(" -> ")
    )
    assert after > before
    # a real (non-demo) low-resolution file is upscaled by its own scale
    if scale == 2:
        assert (
            main(
                [
                    "upscale",
                    "--scale",
                    "2",
                    str(out / "photo_degraded.png"),
                    "--output",
                    str(tmp_path / "up"),
                    "--model",
                    "nlm",
                    "--iterations",
                    "1",
                    "--sigma",
                    "0",
                ]
            )
            == 0
        )
        assert Image.open(tmp_path / "up" / "photo_degraded.png").size == (72, 60)


def test_cli_refusals(tmp_path, capsys):
    photo = str(_photo(tmp_path / "photo.png"))
    out = str(tmp_path / "out")
    np.save(tmp_path / "even.npy", np.ones((4, 4)))
    np.save(tmp_path / "negative.npy", np.array([[0, -1, 0], [1, 3, 1], [0, 1, 0]]))
    np.save(tmp_path / "huge.npy", np.ones((81, 81)))
    for kernel, message in (("even.npy", "even side"), ("negative.npy", "negative")):
        with pytest.raises(SystemExit) as stop:
            main(["deblur", photo, "--kernel", str(tmp_path / kernel), "--output", out])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["deblur", photo, "--kernel", "sharp:3", "--output", out])
    assert "gaussian:STD" in capsys.readouterr().err
    # a kernel larger than one image fails that file, by name
    assert (
        main(
            [
                "deblur",
                photo,
                "--kernel",
                str(tmp_path / "huge.npy"),
                "--output",
                out,
                "--model",
                "nlm",
            ]
        )
        == 1
    )
    assert "larger than the image" in capsys.readouterr().out
    # a model trained for one level is refused before anything is written
    from keras_resunet.models import build_resunet

    build_resunet(base_filters=4, depth=2).save(tmp_path / "fixed.keras")
    assert (
        main(
            [
                "deblur",
                photo,
                "--kernel",
                "gaussian:1",
                "--output",
                str(tmp_path / "o2"),
                "--model",
                str(tmp_path / "fixed.keras"),
            ]
        )
        == 1
    )
    assert "noise-level-map model" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    np.save(tmp_path / "unnormalised.npy", np.ones((3, 3)))
    assert (
        main(
            [
                "deblur",
                photo,
                "--kernel",
                str(tmp_path / "unnormalised.npy"),
                "--output",
                out,
                "--model",
                "nlm",
                "--iterations",
                "1",
            ]
        )
        == 0
    )
    assert "normalised to 1" in capsys.readouterr().out


def test_the_experiment_script_writes_super_resolution_and_iteration_tables(
    tmp_path, shared_datasets
):
    import json

    from experiments import pnp as script

    out = tmp_path / "pnp"
    # fewer super-resolution iterations than the default, recorded as run
    argv = [
        "--quick",
        "--sr-iterations",
        "6",
        "--out",
        str(out),
        "--data-root",
        str(shared_datasets),
    ]
    # one part a run: the second keeps what the first measured, each with its own command
    assert script.main([*argv, "--parts", "sr"]) == 0
    assert script.main([*argv, "--parts", "iterations"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "--parts sr" in summary["made"]["sr"]["command"]
    assert "--parts iterations" in summary["made"]["iterations"]["command"]
    for found in summary["sr"].values():
        assert set(found) == {"x2@0.0", "x2@2.55", "x4@0.0", "x4@2.55"}
        for scores in found.values():
            assert scores["pnp"] > scores["bicubic"]
    sweep = summary["iteration_sweep"]["rows"]
    assert [row["iterations"] for row in sweep] == [2, 4] and sweep[1]["psnr"] > sweep[0]["psnr"]
    assert summary["iteration_sweep"]["data"].startswith("Photos1k/val")
    sr_sweep = summary["iteration_sweep"]["sr_rows"]
    assert [(row["scale"], row["iterations"]) for row in sr_sweep] == [
        (2, 2),
        (2, 4),
        (4, 2),
        (4, 4),
    ]
    assert all(row["psnr"] > row["bicubic"] for row in sr_sweep)
    assert summary["made"]["sr"]["sr_iterations"] == 6
    readme = (out / "README.md").read_text()
    assert "## Super-resolution" in readme and "## Iterations" in readme
    assert "; 6 iterations." in readme and "| x4 | 4 |" in readme
    assert script.main([*argv, "--parts", "deblur,sharpen"]) == 1


@pytest.mark.parametrize(
    "argv, iterations",
    [
        (["deblur", "x.png", "--kernel", "gaussian:1.6"], pnp.DEBLUR_ITERATIONS),
        (["upscale", "x.png", "--scale", "4"], pnp.SR_ITERATIONS),
        (["upscale", "x.png", "--scale", "2", "--iterations", "5"], 5),
        (["upscale", "x.png", "--scale", "2", "--kernel", "gaussian:1"], pnp.SR_ITERATIONS),
    ],
)
def test_upscaling_runs_more_iterations_than_deblurring_unless_told(argv, iterations):
    from keras_resunet.cli import _check_arguments, build_parser

    parser = build_parser()
    args = parser.parse_args([*argv, "--output", "out"])
    _check_arguments(parser, args)
    assert args.options.iterations == iterations
    upscaling = argv[0] == "upscale"
    expected = pnp.SR_ITERATIONS if upscaling else pnp.DEBLUR_ITERATIONS
    assert pnp.default_iterations(args.options.operator) == expected
