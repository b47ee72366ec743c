import numpy as np
import pytest
from PIL import Image

from keras_resunet import data
from keras_resunet.degradations import GaussianNoise, make_degradation
from keras_resunet.io import (
    ImageReadError,
    SkippedImageWarning,
    list_images,
    read_image,
    save_image,
    to_uint8,
)
from tests.support import smooth_image


def _write_folder(folder, count=3, size=(40, 36), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = to_uint8(smooth_image(size[1], size[0], 3, seed=index))
        Image.fromarray(image).convert(mode).save(folder / f"img{index}.png")
    return folder


def test_read_image_converts_channels(tmp_path):
    _write_folder(tmp_path, count=1, mode="L")
    gray = read_image(tmp_path / "img0.png", channels=1)
    rgb = read_image(tmp_path / "img0.png", channels=3)
    assert gray.shape == (36, 40, 1) and rgb.shape == (36, 40, 3)
    assert gray.dtype == np.float32 and 0 <= gray.min() and gray.max() <= 1
    np.testing.assert_array_equal(rgb[..., 0], gray[..., 0])


def test_sixteen_bit_png_keeps_precision(tmp_path):
    values = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png", channels=1)
    np.testing.assert_allclose(image[..., 0], values / 65535.0, atol=1e-6)


def test_corrupt_file_is_named_or_skipped(tmp_path):
    folder = _write_folder(tmp_path / "imgs")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match="broken.png"):
        list_images(folder)
    with pytest.warns(SkippedImageWarning) as caught:
        paths = list_images(folder, skip_unreadable=True)
    skipped = " ".join(str(warning.message) for warning in caught)
    assert "broken.png" in skipped and "notes.txt" in skipped
    assert [p.name for p in paths] == ["img0.png", "img1.png", "img2.png"]


def test_empty_and_missing_folders_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="No images"):
        list_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        list_images(tmp_path / "nope")
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_save_image_is_atomic_and_round_trips(tmp_path):
    image = smooth_image(20, 30)
    save_image(tmp_path / "out.png", image)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    np.testing.assert_allclose(read_image(tmp_path / "out.png"), image, atol=1 / 255)


def test_patch_dataset_shapes_statistics_and_reproducibility(tmp_path):
    images, _ = data.load_images(_write_folder(tmp_path), channels=3)
    dataset = data.patch_dataset(images, GaussianNoise(0.1), patch_size=16, batch_size=8, seed=5)
    noisy, clean = next(iter(dataset))
    assert noisy.shape == (8, 16, 16, 3) and clean.shape == (8, 16, 16, 3)
    assert abs(float(np.std(noisy - clean)) - 0.1) < 0.01
    assert 0 <= float(np.min(clean)) and float(np.max(clean)) <= 1
    again = next(iter(data.patch_dataset(images, GaussianNoise(0.1), 16, 8, seed=5)))
    np.testing.assert_array_equal(noisy, again[0])
    other = next(iter(data.patch_dataset(images, GaussianNoise(0.1), 16, 8, seed=6)))
    assert not np.array_equal(noisy, other[0])


def test_patch_dataset_rejects_small_images():
    with pytest.raises(ValueError, match="smaller than patch_size"):
        data.patch_dataset([smooth_image(10, 10)], GaussianNoise(0.1), patch_size=16)


def test_evaluation_pairs_are_fixed_per_seed():
    images = [smooth_image(20, 24, seed=i) for i in range(3)]
    degradation = make_degradation("deblur_denoise")
    first, clean = data.evaluation_pairs(images, degradation, seed=1)
    second, _ = data.evaluation_pairs(images, degradation, seed=1)
    for a, b, c in zip(first, second, clean):
        np.testing.assert_array_equal(a, b)
        assert a.shape == c.shape
    assert not np.array_equal(first[0], first[1][:, :24])  # each image gets its own noise
    batches = list(data.evaluation_dataset(images, degradation, seed=1))
    np.testing.assert_array_equal(batches[2][0][0], first[2])


def test_numpy_patch_batches_are_seeded_and_carry_a_noise_map():
    from keras_resunet.data import PatchBatches
    from keras_resunet.degradations import GaussianNoise

    images = [smooth_image(40, 48, seed=i) for i in range(3)]
    noise = GaussianNoise(sigma_range=(0.0, 0.3))
    batches = PatchBatches(images, noise, 16, 4, seed=5, steps_per_epoch=3, noise_map=True)
    degraded, clean = batches[1]
    assert degraded.shape == (4, 16, 16, 4) and clean.shape == (4, 16, 16, 3)
    levels = degraded[..., 3]
    assert np.all(levels == levels[:, :1, :1]) and levels.max() <= 0.3
    again = PatchBatches(images, noise, 16, 4, seed=5, steps_per_epoch=3, noise_map=True)
    np.testing.assert_array_equal(again[1][0], degraded)
    assert not np.array_equal(batches[0][1], clean)
    batches.on_epoch_end()
    assert not np.array_equal(batches[1][1], clean)


@pytest.mark.parametrize("workers", [1, 3])
def test_worker_processes_draw_each_epochs_own_seeded_batches(workers, monkeypatch):
    # Keras' own PyDataset adapter (a private module: skipped should it move), driven epoch by
    # epoch: the workers see the epoch count
    adapters = pytest.importorskip("keras.src.trainers.data_adapters.py_dataset_adapter")

    monkeypatch.setattr(data, "tensorflow_available", lambda: False)
    images = [smooth_image(40, 48, seed=i) for i in range(3)]
    noise = GaussianNoise(sigma_range=(0.0, 0.3))

    def epochs(count, **kwargs):
        batches = data.training_batches(images, noise, 16, 4, 5, 3, noise_map=True, **kwargs)
        adapter = adapters.PyDatasetAdapter(batches, shuffle=False)
        drawn = []
        for _ in range(count):
            drawn += [degraded.copy() for degraded, _ in adapter.get_numpy_iterator()]
            adapter.on_epoch_end()
        return batches, drawn

    in_process, expected = epochs(2)
    parallel, drawn = epochs(2, workers=workers)
    assert (in_process.workers, parallel.workers) == (1, workers)
    assert parallel.use_multiprocessing
    assert len(drawn) == len(expected) == 6
    for got, want in zip(drawn, expected):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(expected[0], expected[3])  # the second epoch draws anew


def _training_tree(root):
    """Nested folders of mixed sizes: a (a/x: 3 of 40x36, a/y/z: 2 of 64x20), b (2 of 50x50),
    plus a hidden folder that must be ignored."""
    _write_folder(root / "a" / "x", count=3, size=(40, 36))
    _write_folder(root / "a" / "y" / "z", count=2, size=(64, 20))
    _write_folder(root / "b", count=2, size=(50, 50))
    _write_folder(root / "a" / ".cache", count=1, size=(40, 40))
    return root


@pytest.mark.parametrize(
    ("patch", "kept", "dropped"), [(16, 7, 0), (24, 5, 2), (40, 2, 5), (36, 5, 2)]
)
def test_training_set_reads_nested_folders_and_drops_small_images(tmp_path, patch, kept, dropped):
    root = _training_tree(tmp_path)
    sources = data.parse_sources(["a", "b"])
    training = data.load_training_set(sources, data_root=root, patch_size=patch)
    assert len(training.images) == kept
    assert all(
        image.dtype == np.uint8 and min(image.shape[:2]) >= patch for image in training.images
    )
    assert training.probabilities is None
    assert f"{kept} images from 2 folder(s)" in training.report
    assert (f"dropped {dropped} smaller" in training.report) == bool(dropped)


def test_training_set_refusals(tmp_path):
    root = _training_tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere.*elsewhere"):
        data.load_training_set(data.parse_sources(["a", "nowhere", "elsewhere"]), data_root=root)
    with pytest.raises(ValueError, match="No training image is at least 80"):
        data.load_training_set(data.parse_sources("a"), data_root=root, patch_size=80)
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match="No images found"):
        data.load_training_set(data.parse_sources(["a", "empty"]), data_root=root)


@pytest.mark.parametrize(
    "bad",
    [
        [],
        "",
        [""],
        [3],
        [{"weight": 1}],
        [{"folder": "a", "weight": 0}],
        [{"folder": "a", "weight": -1}],
        [{"folder": "a", "weight": float("nan")}],
        [{"folder": "a", "weight": True}],
        [{"folder": "a", "wieght": 2}],
        [{"folder": "a", "weight": 1}, "b"],
        ["a", "a"],
    ],
)
def test_parse_sources_refuses_bad_entries(bad):
    with pytest.raises(ValueError, match="train_data"):
        data.parse_sources(bad)


def test_weighted_sources_set_each_folders_share(tmp_path):
    root = _training_tree(tmp_path)
    sources = data.parse_sources([{"folder": "a", "weight": 1}, {"folder": "b", "weight": 3}])
    training = data.load_training_set(sources, data_root=root, patch_size=16)
    # a holds 5 images, b 2: b's images get 3/4 of the draws between them
    np.testing.assert_allclose(training.probabilities, [0.05] * 5 + [0.375] * 2)
    # both pipelines draw by those chances: b's 50x50 photos are the only ones with that size
    marked = [image.copy() for image in training.images]
    for index, image in enumerate(marked):
        image[...] = index  # each image a constant value: a patch tells its image
    counts = {}
    dataset = data.patch_dataset(
        marked, lambda x, s: x, 8, 64, seed=1, augment=False, probabilities=training.probabilities
    )
    for _, clean in dataset.take(8):
        values = np.round(np.asarray(clean)[:, 0, 0, 0] * 255).astype(int)
        for value in values:
            counts[value] = counts.get(value, 0) + 1
    share_b = (counts.get(5, 0) + counts.get(6, 0)) / 512
    assert abs(share_b - 0.75) < 0.06, counts
    batches = data.PatchBatches(
        marked,
        make_degradation("denoise", sigma=0.0),
        8,
        64,
        seed=1,
        steps_per_epoch=8,
        augment=False,
        probabilities=training.probabilities,
    )
    values = np.concatenate([np.round(batches[i][1][:, 0, 0, 0] * 255) for i in range(8)])
    assert abs(np.isin(values, [5, 6]).mean() - 0.75) < 0.06
    with pytest.raises(ValueError, match="one entry per image"):
        data.patch_dataset(marked, lambda x, s: x, 8, 8, probabilities=[0.5, 0.5])


def test_photos1k_sources_load(shared_datasets):
    sources = data.parse_sources(["Photos1k/val"])
    training = data.load_training_set(sources, data_root=shared_datasets, patch_size=96)
    # the validation split: 84 photos in three sub-folders, one T91 photo under 96 pixels
    assert len(training.images) == 83 and "dropped 1 smaller" in training.report
