"""Built-in data sets (``mnist5k``, ``digits``, 2-D toys) and user data, as train / test splits.

Images are float32 (N, C, H, W) in [-1, 1]; 2-D toys are (N, 2). See :func:`load_dataset`.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from genlab.data.builtin import DATASETS
from genlab.data.dataset import Dataset, Splits
from genlab.data.images import resize_dataset
from genlab.data.split import split_dataset, stratified_split
from genlab.data.toys import TOYS, sample_toy, toy_modes
from genlab.data.user import load_path
from genlab.errors import UserError

__all__ = [
    "DATASETS",
    "Dataset",
    "Splits",
    "TOYS",
    "list_datasets",
    "load_dataset",
    "sample_toy",
    "split_dataset",
    "stratified_split",
    "toy_modes",
]


def list_datasets() -> list[str]:
    """The built-in data set names."""
    return DATASETS.names()


def load_dataset(name_or_path: str, *, image_size: int | None = None, seed: int = 0) -> Splits:
    """The train / test splits of a built-in data set or of user data at a path.

    Built-in names win over paths: pass ``./digits`` to load a folder called ``digits``.
    ``image_size`` resizes images to ``image_size`` x ``image_size`` (an error for vector data).
    ``seed`` only chooses the split of user data that has no test split of its own; built-in
    sets always use their canonical split.
    """
    if image_size is not None and image_size < 1:
        raise UserError(f"--image-size {image_size}: must be a positive number of pixels")
    if name_or_path in DATASETS:
        splits = DATASETS.get(name_or_path)()
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            close = difflib.get_close_matches(name_or_path, DATASETS.names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(
                f"data path {name_or_path!r} does not exist and is not a built-in data set{hint}; "
                f"built-in: {', '.join(DATASETS.names())}"
            )
        splits = load_path(path, image_size=image_size, seed=seed)
    if image_size is None:
        return splits
    return Splits(resize_dataset(splits.train, image_size), resize_dataset(splits.test, image_size))
