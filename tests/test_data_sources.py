import tarfile

import pytest
from PIL import Image

from keras_resunet import data, data_sources
from keras_resunet.io import to_uint8
from tests.support import smooth_image


def test_data_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(data_sources.DATA_ROOT_ENV, str(tmp_path))
    assert data_sources.resolve_data_root() == tmp_path
    assert data_sources.resolve_data_root(tmp_path / "..") == tmp_path / ".."
    with pytest.raises(FileNotFoundError, match="argument"):
        data_sources.resolve_data_root(tmp_path / "missing")
    monkeypatch.setenv(data_sources.DATA_ROOT_ENV, str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=data_sources.DATA_ROOT_ENV):
        data_sources.resolve_data_root()


def test_folders_resolve_under_the_data_root_unless_absolute(tmp_path, monkeypatch):
    monkeypatch.delenv(data_sources.DATA_ROOT_ENV, raising=False)
    absolute = tmp_path / "photos"
    # an absolute folder never looks the root up, so a missing root does not matter
    assert data_sources.resolve_folder(absolute, tmp_path / "missing") == absolute
    for relative in ("Photos1k/val", "BSDS300/images/train"):
        assert data_sources.resolve_folder(relative, tmp_path) == tmp_path / relative
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_sources.resolve_folder("Photos1k/val", tmp_path / "missing")


def test_download_refuses_existing_target_and_checks_digest(tmp_path):
    (tmp_path / "BSDS300").mkdir()
    with pytest.raises(FileExistsError):
        data_sources.download_bsds300(tmp_path)
    # a local archive through a file:// URL: the digest check rejects the wrong content
    source = tmp_path / "src" / "BSDS300" / "images" / "train"
    source.mkdir(parents=True)
    Image.fromarray(to_uint8(smooth_image(36, 40))).save(source / "img0.png")
    archive = tmp_path / "fake.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source.parents[1], arcname="BSDS300")
    target = tmp_path / "dest"
    with pytest.raises(ValueError, match="digest mismatch"):
        data_sources.download_bsds300(target, url=archive.as_uri())
    assert list(target.iterdir()) == []  # nothing half-written
    digest = data_sources.tree_digest(source.parents[1] / "images", suffixes=(".png",))
    assert len(digest) == 64


def test_shared_bsds300_matches_the_shipped_digest(shared_datasets):
    assert (
        data_sources.tree_digest(shared_datasets / "BSDS300" / "images")
        == data_sources.BSDS300_IMAGES_DIGEST
    )
    images, paths = data.load_images(shared_datasets / "CBSD68", limit=2)
    assert len(images) == 2 and images[0].shape[-1] == 3 and paths[0].suffix == ".png"
