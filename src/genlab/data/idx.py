"""MNIST-style IDX files (raw or gzipped), parsed with numpy from their documented header.

Header: two zero bytes, a dtype code, the number of dimensions, then each dimension as a
big-endian uint32; the data follows big-endian. A folder with the standard ``train-*`` and
``t10k-*`` files keeps their train / test split.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from pathlib import Path

import numpy as np

from genlab.data.arrays import dataset_from_arrays
from genlab.data.dataset import Dataset
from genlab.errors import UserError

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_NAME = re.compile(r"idx\d-ubyte(\.gz)?$")


def read_idx(file: Path) -> np.ndarray:
    """The array stored in IDX ``file`` (gzip detected by its magic bytes), native byte order."""
    try:
        raw = file.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"cannot read IDX file {file}: {' '.join(str(e).split())}") from None
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _DTYPES or raw[3] == 0:
        raise UserError(
            f"{file} is not an IDX file (bad magic number 0x{raw[:4].hex()}); "
            "expected MNIST-style idx data"
        )
    ndim, start = raw[3], 4 + 4 * raw[3]
    if len(raw) < start:
        raise UserError(f"IDX file {file} is truncated: its header is cut short")
    dims = [int(d) for d in np.frombuffer(raw, ">u4", ndim, 4)]
    dtype = np.dtype(_DTYPES[raw[2]])
    need = math.prod(dims) * dtype.itemsize
    if len(raw) - start != need:
        raise UserError(
            f"IDX file {file} is truncated or corrupt: header shape {tuple(dims)} needs "
            f"{need} data bytes, file has {len(raw) - start}"
        )
    return np.frombuffer(raw, dtype, offset=start).reshape(dims).astype(dtype.newbyteorder("="))


def _labels_file(images: Path) -> Path | None:
    """The labels file next to an images file (``*-images-idx3-*`` -> ``*-labels-idx1-*``)."""
    stem = images.name.removesuffix(".gz").replace("images", "labels").replace("idx3", "idx1")
    return next(
        (p for p in (images.with_name(stem), images.with_name(stem + ".gz")) if p.exists()), None
    )


def load_idx_file(images: Path) -> Dataset:
    """An IDX images file, labelled by its sibling labels file when there is one."""
    x = read_idx(images)
    labels = _labels_file(images)
    y = None
    if labels is not None:
        y = read_idx(labels)
        if len(y) != len(x):
            raise UserError(f"{labels} has {len(y)} labels but {images} has {len(x)} examples")
    name = images.name.removesuffix(".gz")
    return dataset_from_arrays(name, x, y, images)


def find_idx_images(folder: Path, part: str) -> Path | None:
    """``{part}-images-idx3-ubyte`` (or ``.`` separated, or gzipped) inside ``folder``."""
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            p = folder / f"{part}-images{sep}idx3-ubyte{suffix}"
            if p.is_file():
                return p
    return None


def load_idx_folder(folder: Path) -> tuple[Dataset, Dataset | None]:
    """The ``train`` and (when present) ``t10k`` data sets of an MNIST-style folder."""
    train, test = find_idx_images(folder, "train"), find_idx_images(folder, "t10k")
    found = [p for p in (train, test) if p is not None]
    if not found:
        raise UserError(
            f"folder {folder} has IDX files but no train-images-idx3-ubyte[.gz] or "
            "t10k-images-idx3-ubyte[.gz]; pass the images file itself"
        )
    if len(found) == 1:
        return load_idx_file(found[0]), None
    tr, te = (load_idx_file(p) for p in found)
    if (tr.y is None) != (te.y is None):
        missing = found[0] if tr.y is None else found[1]
        raise UserError(
            f"no labels file for {missing}; add its *-labels-idx1-ubyte file or remove the others"
        )
    tr.name = te.name = folder.name
    tr.classes = te.classes = max(tr.classes, te.classes, key=len)
    return tr, te
