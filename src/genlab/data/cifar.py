"""CIFAR-10 "python version" batches, read with an unpickler that can only rebuild numpy arrays.

The batch format is a pickled dict (``b"data"``: (N, 3072) uint8, ``b"labels"``: N ints).
Pickle can run arbitrary code, so :class:`CifarUnpickler` admits only the few numpy callables
that rebuild arrays, dtypes and scalars; any other global is refused with a one-line error.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from genlab.data.arrays import dataset_from_arrays
from genlab.data.dataset import Dataset
from genlab.errors import UserError


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes, limited to latin1."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing codec {encoding!r}")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """The numpy reconstruction callables, under their numpy 1.x and 2.x module names."""
    reconstruct = np.array(0).__reduce__()[0]
    frombuffer = np.array(0).__reduce_ex__(5)[0]
    scalar = np.int64(0).__reduce__()[0]
    out: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        out[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        out[(f"{core}.multiarray", "scalar")] = scalar
        out[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return out


class CifarUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; every other global is refused."""

    _allowed = _numpy_globals()

    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UserError(f"refusing to unpickle {module}.{name} from {self.source}") from None


def load_cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) of one CIFAR-10 batch file."""
    batch = _unpickle_cifar(file)
    data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
    labels = batch.get(b"labels", batch.get("labels")) if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or labels is None:
        raise UserError(f"{file} is not a CIFAR-10 batch: expected a dict with 'data' and 'labels'")
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise UserError(
            f"{file}: CIFAR-10 data has shape {data.shape} and dtype {data.dtype}; "
            "expected (N, 3072) uint8"
        )
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise UserError(f"{file}: CIFAR-10 labels are not integers") from None
    return data.reshape(-1, 3, 32, 32), y


def _unpickle_cifar(file: Path) -> Any:
    """The object pickled in CIFAR file ``file``, through :class:`CifarUnpickler`."""
    try:
        with open(file, "rb") as f:
            return CifarUnpickler(f, file).load()
    except UserError:
        raise
    except Exception as e:  # a malformed pickle can fail in many ways; all mean "bad file"
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UserError(f"cannot read CIFAR-10 batch {file}: {reason}") from None


def cifar_class_names(folder: Path) -> list[str] | None:
    """Label names from ``batches.meta`` when the folder has one."""
    meta = folder / "batches.meta"
    if not meta.is_file():
        return None
    names = _unpickle_cifar(meta)
    names = names.get(b"label_names", names.get("label_names")) if isinstance(names, dict) else None
    if not isinstance(names, list):
        raise UserError(f"{meta} has no 'label_names' list")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _batch_number(p: Path) -> int:
    return int(p.name.rsplit("_", 1)[1])


def is_cifar_folder(folder: Path) -> bool:
    return (folder / "test_batch").is_file() or any(folder.glob("data_batch_*"))


def load_cifar_folder(folder: Path) -> tuple[Dataset, Dataset | None]:
    """``data_batch_*`` as train and, when present, ``test_batch`` as test."""
    files = sorted(
        (p for p in folder.glob("data_batch_*") if re.fullmatch(r"data_batch_\d+", p.name)),
        key=_batch_number,
    )
    test_file: Path | None = folder / "test_batch"
    if not test_file.is_file():
        test_file = None
    if not files and test_file is not None:
        files, test_file = [test_file], None
    if not files:
        raise UserError(f"no CIFAR-10 batches (data_batch_N, test_batch) in folder {folder}")
    classes = cifar_class_names(folder)
    parts = [load_cifar_batch(f) for f in files]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    train = dataset_from_arrays(folder.name, x, y, files[0], classes)
    if test_file is None:
        return train, None
    tx, ty = load_cifar_batch(test_file)
    test = dataset_from_arrays(folder.name, tx, ty, test_file, classes)
    train.classes = test.classes = max(train.classes, test.classes, key=len)
    return train, test
