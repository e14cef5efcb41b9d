"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel.

Unlike FD it has an unbiased estimator, so values from different sample sizes are comparable and
two samples of one distribution give ~0 (possibly slightly negative). As in torch-fidelity and
torchmetrics, the estimate is averaged over random equal-size subsets of both sets; the std over
subsets shows how much a single subset estimate varies.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from genlab.errors import UserError
from genlab.metrics.frechet import Features, as_features, check_same_dim


class KID(NamedTuple):
    """Mean and (population) std of the subset MMD^2 estimates."""

    mean: float
    std: float


def _kernel(x: Tensor, y: Tensor) -> Tensor:
    return (x @ y.T / x.shape[1] + 1.0) ** 3  # k(x, y) = (x^T y / d + 1)^3


def _mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD^2 of two equal-size samples (m >= 2) under the cubic kernel."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = _kernel(x, x), _kernel(y, y), _kernel(x, y)
    sum_xx = k_xx.sum() - k_xx.diagonal().sum()  # sum_{i != j} k(x_i, x_j)
    sum_yy = k_yy.sum() - k_yy.diagonal().sum()  # sum_{i != j} k(y_i, y_j)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))  # MMD^2_u = (S_xx + S_yy)/(m(m-1)) - 2 S_xy/m^2


def kernel_inception_distance(a: Features, b: Features, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> KID:
    """KID between (N, D) feature sets: MMD^2 over `subsets` random subsets of min(subset_size, N_a, N_b) rows.

    Each subset is drawn without replacement by ``numpy.random.default_rng(seed)``, so a seed gives
    the same value on every machine; the sets may have different sizes.
    """
    x, y = as_features(a, "a"), as_features(b, "b")
    check_same_dim(x, y, "a", "b", "KID")
    if isinstance(subsets, bool) or not isinstance(subsets, int) or subsets < 1:
        raise UserError(f"KID: subsets={subsets!r} must be an integer >= 1")
    if isinstance(subset_size, bool) or not isinstance(subset_size, int) or subset_size < 2:
        raise UserError(f"KID: subset_size={subset_size!r} must be an integer >= 2")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise UserError(f"KID needs at least 2 samples per set, got {min(x.shape[0], y.shape[0])}")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(subsets):
        ia = torch.from_numpy(rng.choice(x.shape[0], m, replace=False)).to(x.device)
        ib = torch.from_numpy(rng.choice(y.shape[0], m, replace=False)).to(y.device)
        scores.append(_mmd2_unbiased(x[ia], y[ib]))
    s = np.asarray(scores)
    return KID(float(s.mean()), float(s.std()))
