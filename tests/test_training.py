import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resunet.training import TrainConfig, TrainingError, final_loss, train, trainer
from tests.support import smooth_image

ROOT = Path(__file__).resolve().parents[1]
TINY = {"base_filters": 4, "depth": 2}
IMAGES = [smooth_image(48, 48, seed=i) for i in range(3)]


def tiny_config(**overrides):
    values = {
        "model": "resunet",
        "model_args": TINY,
        "patch_size": 16,
        "batch_size": 8,
        "steps": 20,
        "checkpoint_every": 10,
        "learning_rate": 2e-3,
        "seed": 3,
        "jit_compile": False,
        "precision": "float32",  # "auto" would depend on the machine's CPU
    }
    return TrainConfig(**{**values, **overrides})


def test_config_from_yaml_rejects_bad_input(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: unet\nsteps: 30\ncheckpoint_every: 10\n")
    config = TrainConfig.from_yaml(path, overrides=["learning_rate=5e-4", "batch_size=8"])
    assert (config.model, config.steps, config.learning_rate, config.batch_size) == (
        "unet",
        30,
        5e-4,
        8,
    )
    path.write_text("modle: unet\n")
    with pytest.raises(ValueError, match="Unknown config keys \\['modle'\\]"):
        TrainConfig.from_yaml(path)
    path.write_text("steps: many\n")
    with pytest.raises(ValueError, match="`steps` must be int"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ValueError, match="multiple of `checkpoint_every`"):
        TrainConfig(steps=25, checkpoint_every=10)
    with pytest.raises(ValueError, match="Unknown model"):
        TrainConfig(model="vit")
    with pytest.raises(ValueError, match="`precision` must be one of"):
        TrainConfig(precision="float8")
    with pytest.raises(FileNotFoundError):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    path.write_text("sigma_range: [0.0, 0.3]\nsigma_power: 2\n")
    assert TrainConfig.from_yaml(path).degradation().sigma_power == 2
    with pytest.raises(ValueError, match="`sigma_power` must be a number > 0"):
        TrainConfig.from_yaml(path, overrides=["sigma_power=-1"])
    assert TrainConfig.from_yaml(path, overrides=["data_workers=8"]).data_workers == 8
    for bad in ("-1", "2.5", "true", "many"):
        with pytest.raises(ValueError, match="data_workers"):
            TrainConfig.from_yaml(path, overrides=[f"data_workers={bad}"])


def test_missing_data_folder_fails_before_any_work(tmp_path):
    config = tiny_config(data_root=str(tmp_path), train_data="nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train(config, tmp_path / "run", log=lambda _: 0)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_training_lowers_loss_and_writes_the_run_folder(tmp_path):
    config = tiny_config(steps=60, checkpoint_every=20)
    model = train(config, tmp_path / "run", images=IMAGES, log=lambda _: 0)
    import csv

    with open(tmp_path / "run" / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(row["loss"]) for row in rows]
    psnrs = [float(row["psnr_metric"]) for row in rows]
    assert len(losses) == 3 and losses[-1] < losses[0] and psnrs[-1] > psnrs[0]
    # the logged PSNR is the PSNR of the logged MSE loss, averaged per patch: >= 10 log10(1/MSE)
    assert psnrs[-1] >= 10 * np.log10(1 / losses[-1]) - 1e-3
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["steps"] == 60
    assert json.loads((tmp_path / "run" / "config.json").read_text())["steps"] == 60
    made = json.loads((tmp_path / "run" / "run.json").read_text())
    assert {"command", "commit", "machine", "time", "keras_backend"} <= set(made)
    loaded = keras.models.load_model(tmp_path / "run" / "model.keras")
    x = IMAGES[0][None, :32, :32]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert any((tmp_path / "run" / "tensorboard").rglob("*tfevents*"))
    images = _summary_images(tmp_path / "run" / "tensorboard" / "images")
    assert images == {20: 3, 40: 3, 60: 3}  # step -> restored panels written


def _summary_images(folder):
    """{step: number of images} of the image summaries in a TensorBoard folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    found = {}
    for tag in events.Tags()["tensors"]:
        for event in events.Tensors(tag):
            # an image summary tensor holds width, height, then one encoded image per entry
            found[event.step] = len(tf.make_ndarray(event.tensor_proto)) - 2
    return found


def test_same_seed_gives_the_same_numbers(tmp_path):
    config = tiny_config()
    train(config, tmp_path / "a", images=IMAGES, log=lambda _: 0)
    train(config, tmp_path / "b", images=IMAGES, log=lambda _: 0)
    assert final_loss(tmp_path / "a") == final_loss(tmp_path / "b")


def test_changed_config_refuses_to_resume_but_more_steps_extend(tmp_path):
    train(tiny_config(), tmp_path / "run", images=IMAGES, log=lambda _: 0)
    with pytest.raises(TrainingError, match="learning_rate"):
        train(tiny_config(learning_rate=1e-2), tmp_path / "run", images=IMAGES, log=lambda _: 0)
    lines = []
    train(tiny_config(steps=30), tmp_path / "run", images=IMAGES, log=lines.append)
    assert "resuming" in lines[0] and "at step 20" in lines[0]
    assert len((tmp_path / "run" / "log.csv").read_text().strip().splitlines()) == 1 + 3
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [extension["steps"] for extension in record["extended"]] == [30]
    train(tiny_config(steps=30), tmp_path / "run", images=IMAGES, log=lambda _: 0)  # done: no entry
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == record
    # how many processes draw the batches changes no number: a resume may change it
    lines = []
    train(tiny_config(steps=40, data_workers=2), tmp_path / "run", images=IMAGES, log=lines.append)
    assert "at step 30" in lines[0]


def test_bfloat16_training_learns_and_saves_a_float32_model(tmp_path):
    config = tiny_config(steps=40, precision="mixed_bfloat16")
    model = train(config, tmp_path / "run", images=IMAGES, log=lambda _: 0)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored after training
    losses = np.loadtxt(tmp_path / "run" / "log.csv", delimiter=",", skiprows=1, usecols=1)
    assert losses[-1] < losses[0]
    loaded = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    x = IMAGES[0][None, :32, :32]
    restored = loaded.predict(x, verbose=0)
    assert restored.dtype == np.float32
    np.testing.assert_allclose(restored, model.predict(x, verbose=0), atol=1e-6)
    lines = []  # and it resumes from its (bfloat16-policy) checkpoints
    train(
        tiny_config(steps=50, precision="mixed_bfloat16"),
        tmp_path / "run",
        images=IMAGES,
        log=lines.append,
    )
    assert "at step 40" in lines[0]


def test_runs_started_with_the_old_mixed_precision_key_still_resume(tmp_path):
    train(tiny_config(), tmp_path / "run", images=IMAGES, log=lambda _: 0)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    stored["mixed_precision"] = stored.pop("precision") != "float32"
    del stored["clip"]  # a key added later counts as its default
    (tmp_path / "run" / "config.json").write_text(json.dumps(stored))
    lines = []
    train(tiny_config(steps=30), tmp_path / "run", images=IMAGES, log=lines.append)
    assert "at step 20" in lines[0]


def test_clip_reaches_the_training_inputs(tmp_path):
    # On black images half the noise is cut off when clipping: a different loss from step 1.
    black = [np.zeros((48, 48, 3), np.float32)] * 3
    for clip in (False, True):
        train(tiny_config(clip=clip), tmp_path / str(clip), images=black, log=lambda _: 0)
    assert json.loads((tmp_path / "True" / "config.json").read_text())["clip"] is True
    with pytest.raises(TrainingError, match="clip"):
        train(tiny_config(clip=True), tmp_path / "False", images=black, log=lambda _: 0)
    first = [
        np.loadtxt(tmp_path / name / "log.csv", delimiter=",", skiprows=1, usecols=1)[0]
        for name in ("False", "True")
    ]
    assert np.all(np.isfinite(first)) and abs(first[0] - first[1]) > 1e-4


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from keras_resunet.training import trainer

    train(tiny_config(steps=10), tmp_path / "run", images=IMAGES, log=lambda _: 0)
    clean_pipeline = trainer.data.patch_dataset
    monkeypatch.setattr(
        trainer.data,
        "patch_dataset",
        lambda *a, **k: clean_pipeline(*a, **k).map(lambda x, y: (x * np.nan, y)),
    )
    with pytest.raises(TrainingError, match="nan"):
        train(tiny_config(steps=20), tmp_path / "run", images=IMAGES, log=lambda _: 0)
    latest = tf.train.latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert latest.endswith("ckpt-10")


RUN_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from keras_resunet.training import TrainConfig, train
    from tests.support import smooth_image
    config = TrainConfig(model="resunet", model_args={tiny!r}, patch_size=16, batch_size=8,
                         steps=200, checkpoint_every=10, seed=3, precision="float32")
    train(config, sys.argv[1], images=[smooth_image(48, 48, seed=i) for i in range(3)])
    """
)


def test_sigkill_then_resume_finishes_the_planned_steps(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUN_SCRIPT.format(root=str(ROOT), tiny=TINY))
    run = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    process = subprocess.Popen(
        [sys.executable, str(script), str(run)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not tf.train.latest_checkpoint(run / "checkpoints"):
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = tf.train.latest_checkpoint(run / "checkpoints")
    assert killed_at is not None, "no checkpoint was written before the kill"
    assert not (run / "model.keras").exists()
    resumed = subprocess.run(
        [sys.executable, str(script), str(run)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    killed_step = int(killed_at.rsplit("-", 1)[1])
    assert killed_step < 200
    # it continued from the checkpoint, not from step 0
    assert f"resuming {run} at step {killed_step}" in resumed.stdout
    assert tf.train.latest_checkpoint(run / "checkpoints").endswith("ckpt-200")
    keras.models.load_model(run / "model.keras")


TWO_DEVICES_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_resunet.training import TrainConfig, final_loss, train, make_strategy
    from tests.support import smooth_image
    images = [smooth_image(48, 48, seed=i) for i in range(3)]
    config = TrainConfig(model="resunet", model_args={tiny!r}, patch_size=16, batch_size=8,
                         steps=30, checkpoint_every=10, seed=3, jit_compile=False,
                         precision="float32")
    two = make_strategy()
    one = tf.distribute.MirroredStrategy(devices=["/cpu:0"])
    train(config, sys.argv[1] + "/two", images=images, strategy=two)
    train(config, sys.argv[1] + "/one", images=images, strategy=one)
    print(json.dumps({{"replicas": two.num_replicas_in_sync}}))
    """
)


def test_two_logical_cpus_give_the_same_loss_curve_as_one(tmp_path):
    script = tmp_path / "two.py"
    script.write_text(TWO_DEVICES_SCRIPT.format(root=str(ROOT), tiny=TINY))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["replicas"] == 2

    def losses(run):
        rows = (tmp_path / run / "log.csv").read_text().strip().splitlines()[1:]
        return np.array([float(r.split(",")[1]) for r in rows])

    np.testing.assert_allclose(losses("two"), losses("one"), rtol=1e-3)


def test_a_run_folder_in_use_by_a_live_process_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(str(os.getppid()))  # a live process other than this one
    with pytest.raises(TrainingError, match=f"being trained by process {os.getppid()}"):
        train(tiny_config(), run, images=IMAGES, log=lambda _: 0)
    assert not (run / "checkpoints").exists()
    # a lock left behind by a dead process is taken over, and released at the end
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(str(dead.pid))
    train(tiny_config(), run, images=IMAGES, log=lambda _: 0)
    assert (run / "model.keras").is_file() and not (run / ".lock").exists()


MULTI_WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from keras_resunet.training import TrainConfig, train, make_strategy
    from tests.support import smooth_image
    images = [smooth_image(48, 48, seed=i) for i in range(3)]
    config = TrainConfig(model="resunet", model_args={tiny!r}, patch_size=16, batch_size=8,
                         steps=20, checkpoint_every=10, seed=3, jit_compile=False,
                         precision="float32")
    strategy = make_strategy()
    assert strategy.extended._num_workers == 2, strategy  # noqa: SLF001
    train(config, sys.argv[1], images=images, strategy=strategy)
    """
)


def _losses(run):
    import csv

    with open(run / "log.csv", newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def _free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow  # two TensorFlow servers; one machine's strategies run by default
def test_two_workers_on_localhost_train_to_the_same_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(MULTI_WORKER_SCRIPT.format(root=str(ROOT), tiny=TINY))
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(tf_config),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "KERAS_BACKEND": "tensorflow",
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(script), str(tmp_path / f"worker{index}")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    weights = [
        keras.models.load_model(tmp_path / f"worker{index}" / "model.keras").get_weights()
        for index in range(2)
    ]
    assert json.loads((tmp_path / "worker0" / "progress.json").read_text())["steps"] == 20
    # the weights the workers started from: the trainer seeds, then builds (seed 3 above)
    from keras_resunet.models import build_resunet

    keras.utils.set_random_seed(3)
    initial = build_resunet(**TINY)
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)
    # the global batch is split across the workers and the loss scaled once: the loss curve is
    # the one a single process gets from `fit` on the same global batches
    single = tiny_config(learning_rate=1e-3)
    train(single, tmp_path / "single", images=IMAGES, log=lambda _: 0)
    curves = [_losses(tmp_path / name) for name in ("worker0", "worker1", "single")]
    # (a wrong scaling would be off by 2x; all-reduce order moves Adam's first steps by ~0.2%)
    np.testing.assert_allclose(curves[0], curves[2], rtol=5e-3)
    assert curves[0] == curves[1]
    # and training moved them (the two copies agree because they trained together)
    changed = [not np.allclose(a, b) for a, b in zip(weights[0], initial.get_weights())]
    assert any(changed)


OTHER_BACKEND_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = sys.argv[1]
    sys.path.insert(0, {root!r})
    import keras, numpy as np
    from keras_resunet.training import TrainConfig, train
    from tests.support import smooth_image
    assert keras.backend.backend() == sys.argv[1]
    images = [smooth_image(48, 48, seed=i) for i in range(3)]
    config = TrainConfig(model="resunet", model_args={tiny!r}, patch_size=16, batch_size=8,
                         steps=10, checkpoint_every=10, seed=3, jit_compile=False,
                         precision=sys.argv[3])
    train(config, sys.argv[2], images=images)
    # a second call with more steps resumes from the step-10 checkpoint
    config = TrainConfig(**{{**config.to_dict(), "steps": 20}})
    model = train(config, sys.argv[2], images=images, log=print)
    x = images[0][None, :40, :36]
    np.save(sys.argv[2] + "/prediction.npy", keras.ops.convert_to_numpy(model(x)))
    # sides that need padding: both, the width only, the height only
    for name, (h, w) in {{"both": (42, 38), "width": (40, 38), "height": (42, 36)}}.items():
        y = keras.ops.convert_to_numpy(model(images[0][None, :h, :w]))
        np.save(sys.argv[2] + f"/prediction_{{name}}.npy", y)
    """
)


# torch in bfloat16: the fast CPU path of results/training/
@pytest.mark.parametrize("backend,precision", [("torch", "mixed_bfloat16"), ("jax", "float32")])
def test_other_backends_train_resume_and_load_on_tensorflow(backend, precision, tmp_path):
    import importlib.util

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    script = tmp_path / "other.py"
    script.write_text(OTHER_BACKEND_SCRIPT.format(root=str(ROOT), tiny=TINY))
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(script), backend, str(run), precision],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming {run} at step 10" in result.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "ckpt-10.keras",
        "ckpt-20.keras",
    ]
    assert json.loads((run / "progress.json").read_text())["steps"] == 20
    losses = _losses(run)
    assert len(losses) == 2 and losses[1] < losses[0]
    # the model trained on the other backend loads here, on TensorFlow, in float32, and predicts
    # the same
    from keras_resunet.inference import load_model

    loaded = load_model(run / "model.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    x = IMAGES[0][None, :40, :36]
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), np.load(run / "prediction.npy"), atol=1e-5
    )
    # also where the model pads the input to a multiple of 4 (reflect pad, then crop back)
    for name, (h, w) in {"both": (42, 38), "width": (40, 38), "height": (42, 36)}.items():
        expected = loaded.predict(IMAGES[0][None, :h, :w], verbose=0)
        np.testing.assert_allclose(
            expected, np.load(run / f"prediction_{name}.npy"), atol=1e-5, err_msg=name
        )
    # and the run continues on TensorFlow from its .keras checkpoint
    config = tiny_config(learning_rate=1e-3, precision=precision)
    lines = []
    train(config, run, images=IMAGES, log=lines.append)
    assert "is finished (20 steps)" in lines[0]
    train(TrainConfig(**{**config.to_dict(), "steps": 30}), run, images=IMAGES, log=lines.append)
    assert f"resuming {run} at step 20" in lines[1]
    assert json.loads((run / "progress.json").read_text())["steps"] == 30


def test_one_device_trains_without_mirroring():
    from keras_resunet.training import make_strategy

    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute strategies need the TensorFlow backend")
    # a single CPU device gets the default strategy (MirroredStrategy over it was 2.3x slower)
    assert len(tf.config.list_logical_devices("CPU")) == 1
    strategy = make_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert not isinstance(strategy, tf.distribute.MirroredStrategy)


def test_bad_config_input_is_refused_before_the_run_folder_is_touched(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: resunet\nsteps: [1,\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ValueError, match=r"\['foo'\] are not arguments of resunet"):
        tiny_config(model_args={"foo": 1})
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="model_args"):
        train(tiny_config(model_args={**TINY, "depth": "deep"}), out, images=IMAGES)
    assert not (out / "config.json").exists() and not (out / "run.json").exists()
    # the same command with a good config then starts a fresh run
    train(tiny_config(steps=10), out, images=IMAGES, log=lambda _: 0)
    assert json.loads((out / "progress.json").read_text())["steps"] == 10


def test_a_short_steps_override_checkpoints_at_a_divisor(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: resunet\nsteps: 1000\ncheckpoint_every: 250\n")
    config = TrainConfig.from_yaml(path, overrides=["steps=20"])
    assert (config.steps, config.checkpoint_every) == (20, 10)
    with pytest.raises(ValueError, match="multiple of `checkpoint_every`"):
        TrainConfig.from_yaml(path, overrides=["steps=20", "checkpoint_every=250"])


def test_resume_accepts_another_spelling_of_the_same_data_root(tmp_path):
    from keras_resunet.cli import main

    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    for index, image in enumerate(IMAGES):
        keras.utils.save_img(data / f"{index}.png", image)
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: resunet\nmodel_args: {base_filters: 4, depth: 2}\ntrain_data: train\n"
        "patch_size: 16\nbatch_size: 4\nsteps: 10\ncheckpoint_every: 10\n"
    )
    out = str(tmp_path / "run")
    args = ["train", "--config", str(config), "--out", out]
    assert main([*args, "--data-root", str(tmp_path / "data")]) == 0
    assert (
        main([*args, "--data-root", str(tmp_path / "alias"), "--resume", "--set", "steps=20"]) == 0
    )
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["steps"] == 20


def test_noise_map_run_warm_starts_from_a_plain_model_and_learns(tmp_path):
    from keras_resunet.denoisers import KerasDenoiser
    from keras_resunet.models import build_resunet

    keras.utils.set_random_seed(5)
    source = build_resunet(**TINY)
    source.save(tmp_path / "plain.keras")
    config = tiny_config(
        model_args={**TINY, "noise_level_map": True},
        sigma_range=(0.0, 0.3),
        clip_fraction=0.5,
        init_from=str(tmp_path / "plain.keras"),
        steps=10,
    )
    lines = []
    train(config, tmp_path / "run", images=IMAGES, log=lines.append)
    assert any("starting" in line and "plain.keras" in line for line in lines)
    trained = KerasDenoiser(keras.models.load_model(tmp_path / "run" / "model.keras"))
    assert trained.takes_sigma and not KerasDenoiser(source).takes_sigma
    # more steps resume from the checkpoint (init_from is not applied twice) and lower the loss
    lines.clear()
    train(
        TrainConfig(**{**config.to_dict(), "steps": 60, "sigma_range": (0.0, 0.3)}),
        tmp_path / "run",
        images=IMAGES,
        log=lines.append,
    )
    assert any("resuming" in line for line in lines)
    assert not any("starting" in line for line in lines)
    with open(tmp_path / "run" / "log.csv") as handle:
        losses = [float(row.split(",")[1]) for row in list(handle)[1:]]
    assert losses[-1] < losses[0]


def test_a_warm_started_run_keeps_its_start_models_budget_when_that_is_shipped_over(tmp_path):
    import json

    from keras_resunet.models import build_resunet
    from keras_resunet.training import run_folder

    build_resunet(**TINY).save(tmp_path / "shipped.keras")
    (tmp_path / "shipped.json").write_text(json.dumps({"steps": 500, "train_seconds": 60.0}))
    config = tiny_config(model_args=TINY, init_from=str(tmp_path / "shipped.keras"), steps=10)
    train(config, tmp_path / "run", images=IMAGES, log=lambda _: None)
    budget = run_folder.training_budget(tmp_path / "run")
    assert budget["steps"] == 510 and budget["init_steps"] == 500
    # shipping the run replaces shipped.json with the run's own total: counted once, not twice
    (tmp_path / "shipped.json").write_text(json.dumps(budget))
    assert run_folder.training_budget(tmp_path / "run") == budget


def test_warm_start_adds_a_noise_map_channel_that_changes_nothing_at_first(tmp_path):
    from keras_resunet.denoisers import KerasDenoiser
    from keras_resunet.models import build_resunet
    from keras_resunet.training import warm_start

    source = build_resunet(**TINY)
    source.save(tmp_path / "plain.keras")
    model = build_resunet(**TINY, noise_level_map=True)
    warm_start(model, tmp_path / "plain.keras")
    noisy = np.random.default_rng(0).random((2, 24, 40, 3), dtype=np.float32)
    for sigma in (0.0, 0.2):
        np.testing.assert_allclose(
            KerasDenoiser(model, sigma=sigma)(noisy), KerasDenoiser(source)(noisy), atol=1e-6
        )


def test_warm_start_grows_a_model_wider_without_changing_it_and_the_new_features_learn(tmp_path):
    from keras_resunet.models import build_resunet
    from keras_resunet.training import warm_start

    keras.utils.set_random_seed(1)
    source = build_resunet(**TINY)
    source.save(tmp_path / "narrow.keras")
    wide_args = {**TINY, "base_filters": 2 * TINY["base_filters"], "bottleneck": 1}
    model = build_resunet(**wide_args, noise_level_map=True)
    warm_start(model, tmp_path / "narrow.keras")
    noisy = np.random.default_rng(0).random((2, 24, 40, 3), dtype=np.float32)
    with_map = np.concatenate([noisy, np.full((2, 24, 40, 1), 0.1, np.float32)], axis=-1)
    np.testing.assert_allclose(
        model.predict(with_map, verbose=0), source.predict(noisy, verbose=0), atol=1e-5
    )
    head = model.get_layer("resunet_out_conv")
    narrow = source.get_layer("resunet_out_conv").get_weights()[0].shape[-2]
    assert not np.any(head.get_weights()[0][:, :, narrow:, :])  # extra features read as zero
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(with_map, noisy * 0.5, epochs=2, verbose=0)
    assert np.any(head.get_weights()[0][:, :, narrow:, :])  # ... and start to count
    model.save(tmp_path / "wide.keras")
    with pytest.raises(TrainingError, match="the model needs"):  # a narrower model: refused
        warm_start(build_resunet(**TINY, noise_level_map=True), tmp_path / "wide.keras")


def test_warm_start_refuses_a_different_model(tmp_path):
    from keras_resunet.models import build_resunet, build_unet
    from keras_resunet.training import warm_start

    build_unet(**TINY).save(tmp_path / "unet.keras")
    with pytest.raises(TrainingError, match="not the same model"):
        warm_start(build_resunet(**TINY), tmp_path / "unet.keras")
    with pytest.raises(TrainingError, match="not found"):
        warm_start(build_resunet(**TINY), tmp_path / "missing.keras")


def test_a_resumed_run_keeps_the_init_from_it_started_with(tmp_path):
    from keras_resunet.models import build_resunet

    build_resunet(**TINY).save(tmp_path / "a.keras")
    build_resunet(**TINY).save(tmp_path / "b.keras")
    run = tmp_path / "run"
    train(tiny_config(steps=10, init_from=str(tmp_path / "a.keras")), run, images=IMAGES, log=print)
    later = tiny_config(steps=20, init_from=str(tmp_path / "b.keras"))
    train(later, run, images=IMAGES, log=lambda _: 0)
    stored = json.loads((run / "config.json").read_text())
    assert stored["init_from"] == str(tmp_path / "a.keras") and stored["steps"] == 20


@pytest.mark.parametrize(("depth", "patch", "smallest"), [(2, 2, 3), (4, 8, 9)])
def test_a_patch_below_the_models_smallest_input_is_refused_before_the_folder(
    tmp_path, depth, patch, smallest
):
    config = tiny_config(model_args={"base_filters": 4, "depth": depth}, patch_size=patch)
    with pytest.raises(ValueError, match=f"patch_size {patch} is below .* \\({smallest} pixels"):
        train(config, tmp_path / "run", images=IMAGES, log=lambda _: 0)
    assert not (tmp_path / "run").exists()


def test_images_smaller_than_the_patch_are_refused_before_the_folder(tmp_path):
    with pytest.raises(ValueError, match="smaller than patch_size=64"):
        train(tiny_config(patch_size=64), tmp_path / "run", images=IMAGES, log=lambda _: 0)
    assert not (tmp_path / "run").exists()


def test_a_folder_whose_start_trained_nothing_does_not_block_a_corrected_retry(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # what a start stopped before its first checkpoint leaves: a config and a run record
    (out / "config.json").write_text(json.dumps({**tiny_config(patch_size=24).to_dict()}))
    (out / "run.json").write_text("{}")
    train(tiny_config(steps=10, checkpoint_every=10), out, images=IMAGES, log=lambda _: 0)
    assert json.loads((out / "config.json").read_text())["patch_size"] == 16
    assert "command" in json.loads((out / "run.json").read_text())
    # once a checkpoint exists, the config is held
    with pytest.raises(TrainingError, match="patch_size"):
        train(tiny_config(steps=20, patch_size=24), out, images=IMAGES, log=lambda _: 0)


def test_resume_with_more_steps_from_the_command_line_is_not_refused_over_checkpoint_every(
    tmp_path,
):
    from keras_resunet.cli import main

    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    for index, image in enumerate(IMAGES):
        keras.utils.save_img(data / f"{index}.png", image)
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: resunet\nmodel_args: {base_filters: 4, depth: 2}\ntrain_data: train\n"
        "patch_size: 16\nbatch_size: 4\nsteps: 40\ncheckpoint_every: 20\nprecision: float32\n"
    )
    args = ["train", "--config", str(config), "--out", str(tmp_path / "run")]
    args += ["--data-root", str(tmp_path / "data")]
    assert main(args) == 0  # 40 steps, checkpoints every 20
    # 50 steps: the derived interval becomes gcd(50, 20) = 10, which 40 falls on
    assert main([*args, "--resume", "--set", "steps=50"]) == 0
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["steps"] == 50
    # an explicit interval that the 50 steps done miss is refused
    assert main([*args, "--resume", "--set", "steps=60", "--set", "checkpoint_every=20"]) == 1


def _take_lock(folder, barrier, results):
    from keras_resunet.training.run_folder import RunLock

    barrier.wait()
    try:
        with RunLock(folder):
            results.put("took")
            time.sleep(0.5)
    except TrainingError:
        results.put("refused")


def test_of_several_starts_at_once_exactly_one_takes_the_run(tmp_path):
    import multiprocessing

    from keras_resunet.training.run_folder import RunLock

    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    workers = [
        context.Process(target=_take_lock, args=(tmp_path, barrier, results)) for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    outcomes = sorted(results.get(timeout=5) for _ in workers)
    assert outcomes == ["refused"] * 5 + ["took"]
    assert not (tmp_path / ".lock").exists()
    # a lock file still being written (empty) belongs to someone
    (tmp_path / ".lock").write_text("")
    with pytest.raises(TrainingError, match="another process"):
        RunLock(tmp_path).__enter__()


def test_a_time_limit_stops_at_a_checkpoint_and_the_run_continues_to_its_steps(tmp_path):
    lines = []
    config = tiny_config(steps=30)
    # any chunk outlasts a microsecond: the run stops after its first one
    train(config, tmp_path / "run", images=IMAGES, log=lines.append, time_limit=1e-6)
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["steps"] == 10
    assert (tmp_path / "run" / "model.keras").is_file()
    assert any("stopped at step 10 of 30" in line for line in lines)
    lines.clear()
    train(config, tmp_path / "run", images=IMAGES, log=lines.append, time_limit=3600)
    assert "at step 10" in lines[0]
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["steps"] == 30
    assert not any("time limit" in line for line in lines)
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="time_limit"):
            train(config, tmp_path / "other", images=IMAGES, log=lines.append, time_limit=bad)
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "chunk_seconds, limit, chunks_run, stopped",
    [
        ((10, 10, 10, 10), 35, 3, True),
        ((10, 10, 10, 10), 40, 4, True),  # a fifth would end at 50
        ((10, 10, 10, 10), 50, 4, False),
        ((30, 5, 5, 5), 40, 1, True),  # the mean so far predicts the next: 30 s
        ((5,), 1, 1, True),  # the first chunk always runs
    ],
)
def test_the_time_limit_stops_before_a_chunk_that_would_end_past_it(
    chunk_seconds, limit, chunks_run, stopped
):
    from keras_resunet.training.callbacks import TimeLimit

    now = [100.0]
    callback = TimeLimit(limit, started=100.0, clock=lambda: now[0])
    callback.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    callback.model.stop_training = False
    callback.on_train_begin()
    run = 0
    for epoch, seconds in enumerate(chunk_seconds):
        now[0] += seconds
        run += 1
        callback.on_epoch_end(epoch)
        if callback.model.stop_training:
            break
    assert (run, callback.stopped) == (chunks_run, stopped)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize("warmup", [0, 1, 10, 29])
def test_warmup_rises_linearly_then_follows_the_schedule(schedule, warmup):
    config = tiny_config(lr_schedule=schedule, warmup_steps=warmup, steps=30, learning_rate=2e-3)
    rate = trainer.learning_rate(config)

    def at(step):
        return float(rate(step)) if callable(rate) else rate

    for step in range(warmup + 1):
        assert at(step) == pytest.approx(2e-3 * step / warmup if warmup else 2e-3, rel=1e-5)
    for step in range(warmup, 31):
        decayed = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (30 - warmup)))
        expected = 2e-3 * (decayed if schedule == "cosine" else 1.0)
        assert at(step) == pytest.approx(expected, rel=1e-5, abs=1e-10)


@pytest.mark.parametrize("warmup", [-1, 30, 31, 2.5, True])
def test_warmup_must_end_before_the_run(warmup):
    with pytest.raises(ValueError, match="`warmup_steps` must be an int >= 0 and below `steps`"):
        tiny_config(warmup_steps=warmup, steps=30)
