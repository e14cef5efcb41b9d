"""k-NN manifold metrics: improved precision/recall (Kynkaanniemi et al. 2019), density/coverage (Naeem et al. 2020).

Each point's k-NN ball has as radius the distance to its k-th nearest neighbour in its own set,
the point itself excluded. Precision asks how many fake points fall in some real ball (fidelity),
recall how many real points fall in some fake ball (diversity). Density counts real balls per fake
point (robust to real outliers that inflate precision); coverage asks how many real balls hold a
fake point. Points count as inside a ball when strictly closer than its radius, as in the
reference ``prdc`` package, so a set compared with itself scores exactly 1 on all four.

Euclidean distances are float64 ``torch.cdist`` on row blocks (the full N x M matrix is never
held), on the device of the inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from genlab.errors import UserError
from genlab.metrics.frechet import Features, as_features, check_same_dim

BLOCK_ELEMENTS = 1 << 22  # distances per block: 4M float64 = 32 MB


class PR(NamedTuple):
    """Improved precision and recall, each in [0, 1]."""

    precision: float
    recall: float


class DC(NamedTuple):
    """Density (>= 0, ~1 for matching distributions, can exceed 1) and coverage in [0, 1]."""

    density: float
    coverage: float


def _blocks(n_rows: int, n_cols: int):
    step = max(1, BLOCK_ELEMENTS // n_cols)
    for start in range(0, n_rows, step):
        yield start, min(start + step, n_rows)


def _knn_radii(x: Tensor, k: int) -> Tensor:
    """Distance from each row to its k-th nearest other row of x."""
    n = x.shape[0]
    radii = torch.empty(n, dtype=x.dtype, device=x.device)
    for lo, hi in _blocks(n, n):
        d = torch.cdist(x[lo:hi], x)
        rows = torch.arange(hi - lo, device=x.device)
        d[rows, rows + lo] = float("inf")  # the point itself is not its own neighbour
        radii[lo:hi] = d.topk(k, dim=1, largest=False).values[:, -1]  # r_i = NND_k(x_i)
    return radii


def _checked(real: Features, fake: Features, k: int, metric: str, need_fake_radii: bool) -> tuple[Tensor, Tensor]:
    r, f = as_features(real, "real"), as_features(fake, "fake")
    check_same_dim(r, f, "real", "fake", metric)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"{metric}: k={k!r} must be an integer >= 1")
    sets = (("real", r), ("fake", f)) if need_fake_radii else (("real", r),)
    for name, x in sets:
        if x.shape[0] <= k:
            raise UserError(f"{metric} with k={k} needs more than k samples in {name} (k-NN radii exclude the point), got {x.shape[0]}")
    return r, f


def _cross(real: Tensor, fake: Tensor, r_real: Tensor, r_fake: Tensor | None) -> dict[str, Tensor]:
    """One blocked pass over the real x fake distances; counts per fake point and hits per real point."""
    in_real_balls = torch.zeros(fake.shape[0], dtype=torch.int64, device=fake.device)
    real_hit = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    real_covered = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    for lo, hi in _blocks(real.shape[0], fake.shape[0]):
        d = torch.cdist(real[lo:hi], fake)  # d[i, j] = |x_i - y_j|
        in_real_balls += (d < r_real[lo:hi, None]).sum(dim=0)  # sum_i 1[y_j in B(x_i, r_i)]
        real_covered[lo:hi] = d.min(dim=1).values < r_real[lo:hi]  # 1[exists j: y_j in B(x_i, r_i)]
        if r_fake is not None:
            real_hit[lo:hi] = (d < r_fake[None, :]).any(dim=1)  # 1[exists j: x_i in B(y_j, s_j)]
    return {"in_real_balls": in_real_balls, "real_hit": real_hit, "real_covered": real_covered}


def precision_recall(real: Features, fake: Features, k: int = 3) -> PR:
    """Improved precision and recall of (M, D) fake against (N, D) real features with k-NN balls."""
    r, f = _checked(real, fake, k, "precision/recall", need_fake_radii=True)
    c = _cross(r, f, _knn_radii(r, k), _knn_radii(f, k))
    precision = (c["in_real_balls"] > 0).double().mean()  # P = (1/M) sum_j 1[y_j in some B(x_i, NND_k(x_i))]
    recall = c["real_hit"].double().mean()  # R = (1/N) sum_i 1[x_i in some B(y_j, NND_k(y_j))]
    return PR(float(precision), float(recall))


def density_coverage(real: Features, fake: Features, k: int = 5) -> DC:
    """Density and coverage of (M, D) fake against (N, D) real features; needs only the real k-NN radii."""
    r, f = _checked(real, fake, k, "density/coverage", need_fake_radii=False)
    c = _cross(r, f, _knn_radii(r, k), None)
    density = c["in_real_balls"].sum().double() / (k * f.shape[0])  # density = 1/(kM) sum_j sum_i 1[y_j in B(x_i, NND_k(x_i))]
    coverage = c["real_covered"].double().mean()  # coverage = (1/N) sum_i 1[exists j: y_j in B(x_i, NND_k(x_i))]
    return DC(float(density), float(coverage))
