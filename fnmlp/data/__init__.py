"""Datasets, one module per source; every loader returns host numpy arrays.

* :mod:`fnmlp.data.toy`: the lesson's 2D two-class problem and other seeded 2D sets.
* :mod:`fnmlp.data.regression`: seeded regression sets.
* :mod:`fnmlp.data.mnist`: MNIST from IDX files, tensorflow-datasets, or a download
  through tfds's downloader (no TensorFlow).

Shapes: ``N`` examples, ``D`` features, ``C`` classes or regression outputs. Inputs are
``x: [N, D]`` float32; targets are int32 labels ``[N]`` or float32 ``[N, C]``.
"""

from fnmlp.data._common import Dataset, split_sizes, stratified_subset, train_test_split
from fnmlp.data.mnist import (
    IDX_FILES,
    MIRROR_ENV,
    FileInfo,
    MnistChecksumError,
    MnistUnavailableError,
    download_mnist,
    load_mnist,
    load_mnist_idx,
    load_mnist_tfds,
    read_idx,
    registered_files,
    write_idx,
)
from fnmlp.data.regression import (
    REGRESSION_SETS,
    make_multi_output,
    make_sine,
    make_surface,
)
from fnmlp.data.toy import (
    TOY_SETS,
    make_blobs,
    make_circles,
    make_classification,
    make_imbalanced,
    make_linear,
    make_moons,
    make_spirals,
    make_xor,
)


def __getattr__(name: str):
    """``fnmlp.data.images`` and the other submodules, imported on first use."""
    import importlib
    import importlib.util

    if not name.startswith("_") and importlib.util.find_spec(f"fnmlp.data.{name}"):
        return importlib.import_module(f"fnmlp.data.{name}")
    raise AttributeError(f"module 'fnmlp.data' has no attribute {name!r}")


__all__ = [
    "IDX_FILES", "MIRROR_ENV", "REGRESSION_SETS", "TOY_SETS", "Dataset", "FileInfo",
    "MnistChecksumError", "MnistUnavailableError", "download_mnist", "load_mnist",
    "load_mnist_idx", "load_mnist_tfds", "make_blobs", "make_circles", "make_classification",
    "make_imbalanced", "make_linear", "make_moons", "make_multi_output", "make_sine",
    "make_spirals", "make_surface", "make_xor", "read_idx", "registered_files", "split_sizes",
    "stratified_subset", "train_test_split",
    "write_idx",
]
