"""NumPy ``.npz`` archives: examples under ``x`` (or ``images`` / ``data`` / ``arr_0``).

Optional labels under ``y`` or ``labels`` and optional class names under ``classes``. Loaded with
``allow_pickle=False``: an archive holding Python objects is refused, never unpickled.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from genlab.data.arrays import dataset_from_arrays
from genlab.data.dataset import Dataset
from genlab.errors import UserError

X_KEYS: tuple[str, ...] = ("x", "images", "data", "arr_0")
Y_KEYS: tuple[str, ...] = ("y", "labels")


def load_npz(file: Path) -> Dataset:
    """The data set stored in ``file``."""
    try:
        with np.load(file, allow_pickle=False) as z:
            keys = list(z.files)
            xkey = next((k for k in X_KEYS if k in keys), None)
            if xkey is None:
                raise UserError(
                    f"{file}: no array named {', '.join(X_KEYS)} "
                    f"(found: {', '.join(keys) or 'none'}); "
                    "save the examples as x, e.g. np.savez(path, x=x, y=y)"
                )
            x = z[xkey]
            ykey = next((k for k in Y_KEYS if k in keys), None)
            y = None if ykey is None else z[ykey]
            classes = [str(c) for c in z["classes"]] if "classes" in keys else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        reason = " ".join(str(e).split())
        raise UserError(
            f"cannot read {file}: {reason}; save it with np.savez and plain numeric arrays"
        ) from None
    return dataset_from_arrays(file.stem, x, y, file, classes)
