"""The standard test and validation sets under the data root (`../shared/datasets`, or
`$KERAS_RESUNET_DATA`): their folders, channels, and loading them by name."""

from keras_resunet import data, data_sources

# name -> (folder under the data root, channels)
COLOR_TEST_SETS = {"BSDS300": ("BSDS300/images/test", 3), "CBSD68": ("CBSD68", 3)}
GRAY_TEST_SETS = {"BSD68": ("BSD68", 1), "Set12": ("Set12", 1)}
# Held-out photos that choose recipes and checkpoints (never a test set), reported beside them
VALIDATION_SETS = {"Photos1k/val": ("Photos1k/val", 3)}
SETS = {**COLOR_TEST_SETS, **GRAY_TEST_SETS, **VALIDATION_SETS}


def load_test_set(name, data_root=None, limit=None, gray=False):
    """(images, names) of a standard test or validation set under the data root (read
    recursively, sorted; names are paths relative to the set's folder)."""
    if name not in SETS:
        raise ValueError(f"Unknown test set {name!r}. Valid names: {sorted(SETS)}")
    folder, channels = SETS[name]
    root = data_sources.resolve_data_root(data_root) / folder
    images, paths = data.load_images(
        root, channels=1 if gray else channels, limit=limit, recursive=True
    )
    return images, [p.relative_to(root).as_posix() for p in paths]
