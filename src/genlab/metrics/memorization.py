"""Memorization: generated samples that are near-copies of training examples.

Rule (stated; local scale, as the authenticity test of Alaa et al. 2022, with a margin): with t
the training example nearest to a sample x, and r(t) the distance from t to *its* nearest other
training example, x is memorized when

    ||x - t|| < ratio * r(t)      (ratio = 1/3)

i.e. x is at least 3x closer to t than any other training example is. The local scale r(t) keeps
simple classes (a "1" has close neighbours) from being flagged just for being simple. The share
of held-out test images flagged by the same rule is reported beside it as the false-positive level.
Distances are in pixel space, where a copy is a copy; 5,000 training digits are easy to memorize,
and the nearest pairs are what a user must see.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from genlab.errors import UserError

RATIO = 1.0 / 3.0


class Memorization(NamedTuple):
    share: float  # of generated samples flagged
    test_share: float  # of test examples flagged (the false-positive level)
    ratio: float
    distances: Tensor  # (N,) distance of each sample to its nearest training example t
    nearest: Tensor  # (N,) index of t
    scales: Tensor  # (N,) r(t): distance from t to its nearest other training example


@torch.no_grad()
def nearest_neighbours(x: Tensor, train: Tensor, k: int = 1, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Euclidean distances from each row of ``x`` to its ``k`` nearest rows of ``train``, and their indices."""
    a, b = x.flatten(1).double(), train.flatten(1).double()
    if a.shape[1] != b.shape[1]:
        raise UserError(f"samples of {a.shape[1]} values cannot be compared with training examples of {b.shape[1]}")
    dist, idx = [], []
    for i in range(0, len(a), chunk):
        d, j = torch.cdist(a[i : i + chunk], b).topk(k, dim=1, largest=False)
        dist.append(d)
        idx.append(j)
    return torch.cat(dist), torch.cat(idx)


def _flag(x: Tensor, train: Tensor, ratio: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    d, j = (v[:, 0] for v in nearest_neighbours(x, train))
    used = torch.unique(j)
    r_used = nearest_neighbours(train[used], train, k=2)[0][:, 1]  # the 0th neighbour is t itself
    scale = torch.empty(len(train), dtype=torch.float64)
    scale[used] = r_used
    r = scale[j]
    return d < ratio * r, d, j, r


def memorization(samples: Tensor, train: Tensor, test: Tensor, ratio: float = RATIO) -> Memorization:
    """The memorized share of ``samples`` by the rule above, and of ``test`` as the false-positive level."""
    if len(test) < 1 or len(samples) < 1 or len(train) < 2:
        raise UserError(f"memorization needs samples, test examples and 2 training examples, got {len(samples)}, "
                        f"{len(test)} and {len(train)}")
    flagged, d, j, r = _flag(samples, train, ratio)
    flagged_test = _flag(test, train, ratio)[0]
    return Memorization(float(flagged.double().mean()), float(flagged_test.double().mean()), ratio, d.float(), j,
                        r.float())
