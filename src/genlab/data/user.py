"""User data on disk: pick the reader for a path and make the train / test split.

Supported: a folder of PNG / JPEG images, a ``.npz`` file, MNIST IDX files (one images file or a
folder of the standard files), and a folder of CIFAR-10 python batches. Data without a given
test split is split 90 / 10, stratified by label, with ``seed``.
"""

from __future__ import annotations

import re
from pathlib import Path

from genlab.data.arrays import dataset_from_arrays
from genlab.data.cifar import is_cifar_folder, load_cifar_batch, load_cifar_folder
from genlab.data.dataset import Dataset, Splits
from genlab.data.idx import IDX_NAME, load_idx_file, load_idx_folder
from genlab.data.images import load_image_folder
from genlab.data.npz import load_npz
from genlab.data.split import split_dataset
from genlab.errors import UserError

TEST_FRACTION = 0.1
SUPPORTED = (
    "a folder of PNG/JPEG images (optionally one subfolder per class), a .npz file, an MNIST IDX "
    "file or folder (*-idx3-ubyte[.gz]), or a folder of CIFAR-10 python batches"
)


def _load_file(file: Path) -> Dataset:
    if file.suffix.lower() == ".npz":
        return load_npz(file)
    if IDX_NAME.search(file.name):
        return load_idx_file(file)
    if re.fullmatch(r"data_batch_\d+|test_batch", file.name):
        x, y = load_cifar_batch(file)
        return dataset_from_arrays(file.name, x, y, file)
    raise UserError(f"unsupported data file {file}; pass {SUPPORTED}")


def _load_folder(folder: Path, image_size: int | None) -> tuple[Dataset, Dataset | None]:
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if is_cifar_folder(folder):
        return load_cifar_folder(folder)
    if any(IDX_NAME.search(p.name) for p in folder.iterdir()):
        return load_idx_folder(folder)
    return load_image_folder(folder, image_size), None


def load_path(path: Path, *, image_size: int | None = None, seed: int = 0) -> Splits:
    """The train / test splits of the user data at ``path`` (a file or a folder)."""
    if not path.exists():
        raise UserError(f"data path '{path}' does not exist")
    if path.is_dir():
        train, test = _load_folder(path, image_size)
    elif path.is_file():
        train, test = _load_file(path), None
    else:
        raise UserError(f"data path '{path}' is neither a file nor a folder; pass {SUPPORTED}")
    return Splits(train, test) if test is not None else split_dataset(train, TEST_FRACTION, seed)
