"""Deterministic, stratified train / test splits.

Every data set without a given test split is divided here, so a seed always gives the same split
and every class with at least two members is present in both parts (evaluation per class works).
"""

from __future__ import annotations

import numpy as np
import torch

from genlab.data.dataset import Dataset, Splits
from genlab.errors import UserError


def stratified_split(
    n: int, labels: np.ndarray | None, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into ``(train_idx, test_idx)``, both int64 and in shuffled order.

    The test part holds ``round(n * test_fraction)`` examples allocated over classes by largest
    remainder, plus any needed so that each class with >= 2 members has at least one test and
    one train example; it is non-empty whenever ``n >= 2``. Same arguments, same split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}: must be in (0, 1)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if labels is None:
        groups = [order]
    else:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels of shape {labels.shape} for {n} examples")
        by_class = order[np.argsort(labels[order], kind="stable")]
        _, starts = np.unique(labels[by_class], return_index=True)
        groups = np.split(by_class, starts[1:])
    sizes = np.array([len(g) for g in groups])
    quota = sizes * test_fraction
    k = np.floor(quota).astype(np.int64)
    extra = int(np.floor(n * test_fraction + 0.5)) - int(k.sum())
    if extra > 0:
        k[np.argsort(-(quota - k), kind="stable")[:extra]] += 1
    k = np.where(sizes >= 2, np.clip(k, 1, sizes - 1), 0)
    if n >= 2 and k.sum() == 0:
        k[0] = 1
    test = np.concatenate([g[:m] for g, m in zip(groups, k)]).astype(np.int64)
    train = np.concatenate([g[m:] for g, m in zip(groups, k)]).astype(np.int64)
    return train[rng.permutation(len(train))], test[rng.permutation(len(test))]


def split_dataset(ds: Dataset, test_fraction: float, seed: int) -> Splits:
    """The stratified (by label when labelled) split of ``ds`` into train and test."""
    if len(ds) < 2:
        raise UserError(
            f"data set {ds.name!r} has {len(ds)} example; "
            "need at least 2 to split into train and test"
        )
    labels = None if ds.y is None else ds.y.numpy()
    train, test = stratified_split(len(ds), labels, test_fraction, seed)
    return Splits(ds.subset(torch.from_numpy(train)), ds.subset(torch.from_numpy(test)))
