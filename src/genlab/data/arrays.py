"""Turn raw numpy arrays from a user's file into a checked :class:`Dataset`.

Shared by the ``.npz``, IDX and CIFAR readers so that every format gets the same rules: 8-bit
pixels become ``v / 127.5 - 1`` with ``bins=256``, float data is used as given (``bins=0``), and
a wrong shape, NaN or bad label is a one-line error naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab.data.dataset import Dataset
from genlab.errors import UserError

SHAPES = "(N, H, W), (N, H, W, C) or (N, C, H, W) images with C in {1, 3}, or (N, D) vectors"


def images_from_uint8(x: np.ndarray) -> torch.Tensor:
    """8-bit pixel values -> float32 in [-1, 1] (``v / 127.5 - 1``)."""
    return torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)


def _to_layout(x: np.ndarray, file: Path) -> np.ndarray:
    """(N, D) vectors or (N, C, H, W) images, from any supported layout."""
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    if x.ndim == 4 and x.shape[3] in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise UserError(f"{file}: unsupported data shape {x.shape}; expected {SHAPES}")


def labels_from_array(y: np.ndarray, n: int, file: Path) -> np.ndarray:
    """Check labels: ``n`` non-negative integers (int64)."""
    if y.shape != (n,):
        raise UserError(
            f"{file}: labels have shape {y.shape} but there are {n} examples; expected ({n},)"
        )
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise UserError(f"{file}: labels have dtype {y.dtype}; expected integers 0..K-1")
    if n and (not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or y.min() < 0):
        raise UserError(f"{file}: labels must be non-negative integers 0..K-1")
    return y.astype(np.int64)


def dataset_from_arrays(
    name: str, x: np.ndarray, y: np.ndarray | None, file: Path, classes: list[str] | None = None
) -> Dataset:
    """A :class:`Dataset` from examples ``x`` and optional labels ``y`` read from ``file``.

    Integer data must be 8-bit pixel values (0..255); float data must be finite, and float images
    must lie in [-1, 1]. Class names default to ``"0".."K-1"`` for labels up to ``K-1``.
    """
    if x.ndim == 0 or len(x) == 0:
        raise UserError(f"{file}: no examples (array shape {x.shape})")
    x = _to_layout(x, file)
    if np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise UserError(
                f"{file}: integer values span {x.min()}..{x.max()}, outside 0..255; "
                "save 8-bit pixels as uint8 or floats in [-1, 1]"
            )
        data, bins = images_from_uint8(x), 256
    elif np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            raise UserError(f"{file}: contains NaN or Inf values; remove or fix those examples")
        if x.ndim == 4 and (x.min() < -1.001 or x.max() > 1.001):
            raise UserError(
                f"{file}: float images span [{x.min():.3g}, {x.max():.3g}]; rescale them to "
                "[-1, 1] or save 8-bit pixels as uint8"
            )
        data, bins = torch.from_numpy(np.clip(x, -1, 1) if x.ndim == 4 else x).float(), 0
    else:
        raise UserError(f"{file}: unsupported dtype {x.dtype}; save uint8 pixels or float values")
    if y is None:
        return Dataset(name, data, None, [], bins)
    labels = labels_from_array(y, len(x), file)
    k = int(labels.max()) + 1
    if classes is None:
        classes = [str(i) for i in range(k)]
    elif len(classes) < k:
        raise UserError(f"{file}: {len(classes)} class names for labels up to {k - 1}")
    return Dataset(name, data, torch.from_numpy(labels), classes, bins)
