import pytest
from PIL import Image

from keras_resunet import datasets, io
from tests.support import smooth_image


def test_a_set_is_read_recursively_sorted_with_names_relative_to_its_folder(tmp_path):
    folder = tmp_path / "Photos1k" / "val"
    for name in ("b/2.png", "a/1.png", "3.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(io.to_uint8(smooth_image(20, 24, seed=len(name)))).save(folder / name)
    images, names = datasets.load_test_set("Photos1k/val", tmp_path)
    assert names == ["3.png", "a/1.png", "b/2.png"]
    assert [image.shape for image in images] == [(20, 24, 3)] * 3
    gray, _ = datasets.load_test_set("Photos1k/val", tmp_path, limit=2, gray=True)
    assert len(gray) == 2 and gray[0].shape == (20, 24, 1)


def test_unknown_and_missing_sets_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown test set 'CBSD69'"):
        datasets.load_test_set("CBSD69", tmp_path)
    with pytest.raises(FileNotFoundError):
        datasets.load_test_set("CBSD68", tmp_path)
