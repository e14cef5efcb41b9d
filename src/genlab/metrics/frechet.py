"""Fréchet distance between Gaussians fitted to two feature sets (FID when the features are Inception's).

Heusel et al. 2017 fit N(mu, S) to each set and take the 2-Wasserstein distance between the Gaussians:
    FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).
tr (S1 S2)^(1/2) equals sum_i sqrt(lambda_i) over the eigenvalues lambda_i of the symmetric PSD matrix
sqrt(S1) S2 sqrt(S1), so we take two symmetric eigendecompositions instead of a general matrix square
root (scipy.linalg.sqrtm): no complex parts, finite on singular covariances, and about 3.5x faster at D = 512.
Everything is float64 numpy: at D = 512 numpy's eigh is a little faster than torch's on CPU.

This module also holds :func:`as_features`, the input check shared by the distance metrics.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import numpy as np
import torch
from torch import Tensor

from genlab.errors import UserError

Features = Union[Tensor, np.ndarray]


def as_features(x: Features, name: str) -> Tensor:
    """A (N, D) float64 tensor (on the input's device) from a Tensor or array; UserError if it is not one."""
    if isinstance(x, Tensor):
        t = x.detach()
        if t.is_complex() or t.dtype == torch.bool:
            raise UserError(f"{name} must hold real-valued features, got dtype {t.dtype}")
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "iuf":
            raise UserError(f"{name} must be a numeric feature array, got dtype {arr.dtype}")
        arr = np.asarray(arr, dtype=np.float64)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if t.ndim != 2:
        raise UserError(f"{name} must be a feature array of shape (N, D), got shape {tuple(t.shape)}; flatten or pool it first")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise UserError(f"{name} is empty (shape {tuple(t.shape)}); it needs at least one sample and one feature")
    t = t.to(torch.float64)
    finite = torch.isfinite(t).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0, 0])
        raise UserError(f"{name} contains NaN or inf (first in row {row}); drop or fix those samples")
    return t


def check_same_dim(a: Tensor, b: Tensor, name_a: str, name_b: str, metric: str) -> None:
    """UserError unless both feature sets have the same dimension D (and live on one device)."""
    if a.device != b.device:
        raise UserError(f"{metric}: {name_a} is on {a.device} but {name_b} on {b.device}; move both to one device")
    if a.shape[1] != b.shape[1]:
        raise UserError(
            f"{metric}: feature dimensions differ ({name_a} has D={a.shape[1]}, {name_b} has D={b.shape[1]}); "
            "extract both sets with the same network and layer"
        )


def _numpy_features(x: Features, name: str) -> np.ndarray:
    return as_features(x, name).cpu().numpy()


def gaussian_stats(feats: Features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), float64, of (N, D) features (N >= 2)."""
    x = _numpy_features(feats, "feats")
    return _stats(x, "feats")


def _stats(x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    if n < 2:
        raise UserError(f"FD needs at least 2 samples per set to estimate a covariance, got {n} in {name}")
    mu = x.mean(axis=0)
    xc = x - mu
    cov = xc.T @ xc / (n - 1)  # S = sum_i (x_i - mu)(x_i - mu)^T / (N - 1)
    return mu, (cov + cov.T) / 2


def _check_stats(mu: Features, cov: Features, name: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mu.detach().cpu() if isinstance(mu, Tensor) else mu, dtype=np.float64)
    c = np.asarray(cov.detach().cpu() if isinstance(cov, Tensor) else cov, dtype=np.float64)
    if m.ndim != 1 or c.shape != (m.shape[0], m.shape[0]):
        raise UserError(f"{name}: need a mean of shape (D,) and a covariance of shape (D, D), got {m.shape} and {c.shape}")
    if not (np.isfinite(m).all() and np.isfinite(c).all()):
        raise UserError(f"{name}: the mean or covariance contains NaN or inf")
    scale = np.abs(c).max()
    if np.abs(c - c.T).max() > 1e-6 * scale:
        raise UserError(f"{name}: the covariance is not symmetric; pass S, not a factor of it")
    return m, (c + c.T) / 2


def _drop_noise(w: np.ndarray) -> np.ndarray:
    """Eigenvalues at or below D * eps * max (numpy.linalg.matrix_rank's rule) are rounding noise: set them to 0.

    On singular covariances (N <= D) their square roots would otherwise add ~1e-8 relative error to FD.
    """
    tol = max(w.max(initial=0.0), 0.0) * w.shape[0] * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _frechet(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> tuple[float, np.ndarray]:
    """FD and the (noise-dropped) eigenvalues of cov1, for its rank."""
    w1, v1 = np.linalg.eigh(cov1)
    w1 = _drop_noise(w1)  # negative and noise eigenvalues -> 0
    root1 = (v1 * np.sqrt(w1)) @ v1.T  # sqrt(S1) = V diag(sqrt(w)) V^T
    m = root1 @ cov2 @ root1
    lam = _drop_noise(np.linalg.eigvalsh((m + m.T) / 2))  # eigenvalues lambda of sqrt(S1) S2 sqrt(S1), PSD
    tr_covmean = np.sqrt(lam).sum()  # tr (S1 S2)^(1/2) = sum_i sqrt(lambda_i)
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean  # FD = |mu1-mu2|^2 + tr S1 + tr S2 - 2 tr(S1 S2)^(1/2)
    return max(float(fd), 0.0), w1


def frechet_from_stats(mu1: Features, cov1: Features, mu2: Features, cov2: Features) -> float:
    """FD between N(mu1, cov1) and N(mu2, cov2), e.g. from cached reference statistics."""
    m1, c1 = _check_stats(mu1, cov1, "set 1 statistics")
    m2, c2 = _check_stats(mu2, cov2, "set 2 statistics")
    if m1.shape != m2.shape:
        raise UserError(f"FD: feature dimensions differ (set 1 has D={m1.shape[0]}, set 2 has D={m2.shape[0]})")
    return _frechet(m1, c1, m2, c2)[0]


def _pair(feats_a: Features, feats_b: Features) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_features(feats_a, "the first set"), as_features(feats_b, "the second set")
    check_same_dim(a, b, "the first set", "the second set", "FD")
    return a.cpu().numpy(), b.cpu().numpy()


def frechet_distance(feats_a: Features, feats_b: Features) -> float:
    """FD between Gaussians fitted to two (N, D) feature sets (FID on Inception pool features)."""
    a, b = _pair(feats_a, feats_b)
    return _frechet(*_stats(a, "the first set"), *_stats(b, "the second set"))[0]


class FrechetResult(NamedTuple):
    """FD with what it rests on: covariance ranks, D, sample counts and a warning (None if all is well)."""

    fd: float
    rank_a: int
    rank_b: int
    dim: int
    n_a: int
    n_b: int
    warning: str | None


def _rank(eigenvalues: np.ndarray) -> int:
    """Numerical rank of a symmetric PSD matrix from its eigenvalues."""
    return int((_drop_noise(eigenvalues) > 0).sum())


def frechet_report(feats_a: Features, feats_b: Features) -> FrechetResult:
    """FD plus the covariance ranks, and a warning when a covariance is singular (N <= D, or redundant features).

    With N <= D samples a covariance has rank <= N - 1 < D: FD is still finite, but strongly biased
    (upward) and not comparable to FD values computed with more samples.
    """
    a, b = _pair(feats_a, feats_b)
    (mu1, cov1), (mu2, cov2) = _stats(a, "the first set"), _stats(b, "the second set")
    fd, w1 = _frechet(mu1, cov1, mu2, cov2)
    rank_a, rank_b = _rank(w1), _rank(np.linalg.eigvalsh(cov2))
    dim = a.shape[1]
    notes = []
    for name, n, rank in (("the first set", a.shape[0], rank_a), ("the second set", b.shape[0], rank_b)):
        if n <= dim:
            notes.append(
                f"{name} has N={n} samples for D={dim} features, so its covariance has rank {rank} <= N-1 < D: "
                f"FD is biased and rank-deficient; use more than D samples (FID usually uses 10,000 or more)"
            )
        elif rank < dim:
            notes.append(
                f"{name}'s covariance is rank-deficient (rank {rank} of D={dim}): some features are constant "
                "or linear combinations of others (duplicated columns?)"
            )
    return FrechetResult(fd, rank_a, rank_b, dim, a.shape[0], b.shape[0], "; ".join(notes) or None)
