"""Exact metrics for 2-D toy data, where the true distribution is known (``genlab.data.toys``).

On ``ring8`` and ``grid25`` (equal-weight isotropic Gaussian mixtures) the modes and the density
are known exactly, so mode collapse and sample quality can be measured without a feature network:
mode coverage (VEEGAN's protocol, PAPERS.md), exact and sliced Wasserstein distances, kernel MMD
and the log-likelihood of samples under the true density.

Inputs are ``(N, D)`` torch Tensors or numpy arrays (1-D data as ``(N, 1)``); everything is
computed in float64 on the CPU, and results are Python floats or small NamedTuples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from genlab.data.toys import MIXTURES, toy_modes
from genlab.errors import UserError

MAX_EXACT_POINTS = 10_000  # per side for exact OT: network simplex is ~O(n^3), the cost matrix O(n m)


def _points(x: object, what: str = "x", min_n: int = 1) -> np.ndarray:
    """``x`` as a finite float64 (N, D) array, or a UserError saying what is wrong with it."""
    if isinstance(x, torch.Tensor):
        a = x.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            a = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise UserError(f"{what} must be a numeric (N, D) array or tensor ({e})") from None
    if a.ndim != 2:
        hint = "; reshape 1-D data to (N, 1)" if a.ndim == 1 else ""
        raise UserError(f"{what} must have shape (N, D), got shape {a.shape}{hint}")
    if len(a) < min_n:
        raise UserError(f"{what} has {len(a)} samples; at least {min_n} needed")
    if not np.isfinite(a).all():
        raise UserError(f"{what} holds NaN or infinite values; drop or fix those samples first")
    return a


def _pair(x: object, y: object, min_n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    a, b = _points(x, "x", min_n), _points(y, "y", min_n)
    if a.shape[1] != b.shape[1]:
        raise UserError(f"x and y must have the same dimension D, got {a.shape[1]} and {b.shape[1]}")
    return a, b


def _positive(value: float, what: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{what} must be a positive number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Mode coverage


class ModeCoverage(NamedTuple):
    """``modes`` covered (with >= 1 high-quality sample), fraction of ``high_quality`` samples,
    and ``per_mode`` (K,) counts of high-quality samples assigned to each mode."""

    modes: int
    high_quality: float
    per_mode: np.ndarray


def mode_coverage(x: object, centers: object, std: float, n_std: float = 3.0) -> ModeCoverage:
    """VEEGAN's 2-D protocol (PAPERS.md): modes covered and fraction of high-quality samples.

    A sample is high quality when its Euclidean distance to its nearest mode center is below
    ``n_std * std``; a mode is covered when at least one high-quality sample is nearest to it.
    Note that for exact samples of a 2-D isotropic Gaussian the distance is Rayleigh-distributed,
    so the expected high-quality fraction at 3 std is 1 - exp(-9/2) = 98.9%, not 99.7%.
    """
    a = _points(x, "x")
    c = _points(centers, "centers")
    if a.shape[1] != c.shape[1]:
        raise UserError(f"x has dimension {a.shape[1]} but the centers have dimension {c.shape[1]}")
    radius = _positive(n_std, "n_std") * _positive(std, "std")
    d = cdist(a, c)  # (N, K)
    nearest = d.argmin(1)
    good = d[np.arange(len(a)), nearest] < radius
    per_mode = np.bincount(nearest[good], minlength=len(c)).astype(np.int64)
    return ModeCoverage(int((per_mode > 0).sum()), float(good.mean()), per_mode)


def toy_mode_coverage(x: object, name: str, n_std: float = 3.0) -> ModeCoverage:
    """:func:`mode_coverage` against the modes of toy ``name`` (``ring8`` or ``grid25``)."""
    centers, std = toy_modes(name)
    return mode_coverage(x, centers, std, n_std)


# ---------------------------------------------------------------------------------------------
# Wasserstein distances


def wasserstein(x: object, y: object, p: float = 2, max_points: int = MAX_EXACT_POINTS) -> float:
    """Exact W_p between the empirical distributions of ``x`` (N, D) and ``y`` (M, D); N != M allowed.

    Solves the discrete optimal transport problem with POT's network simplex (``ot.emd2``), uniform
    weights 1/N and 1/M, ground cost ||x_i - y_j||^p (Euclidean for p = 1, squared for p = 2):
        W_p = (min_{T in Pi(a, b)} sum_ij T_ij ||x_i - y_j||^p)^(1/p)     # Villani's W_p
    Exact OT costs ~O(n^3) time and O(N M) memory, so more than ``max_points`` per side is refused.
    """
    p = _positive(p, "p")
    if p < 1:
        raise UserError(f"W_p is a distance for p >= 1 only, got p={p}")
    a, b = _pair(x, y)
    if max(len(a), len(b)) > max_points:
        raise UserError(
            f"exact OT of {len(a)} x {len(b)} points is too slow (O(n^3)); subsample both sides to at "
            f"most {max_points} points, or use sliced_wasserstein"
        )
    try:
        import ot  # deferred: POT takes seconds to import, and is a dev dependency
    except ImportError:
        raise UserError("exact Wasserstein distances need POT: pip install pot") from None
    cost = cdist(a, b, "sqeuclidean") if p == 2 else cdist(a, b) ** p
    wa, wb = np.full(len(a), 1.0 / len(a)), np.full(len(b), 1.0 / len(b))
    value, log = ot.emd2(wa, wb, cost, numItermax=max(100_000, 50 * len(a) * len(b)), log=True)
    if log.get("warning"):
        raise RuntimeError(f"exact OT did not reach the optimum: {log['warning']}")
    return float(max(float(value), 0.0) ** (1.0 / p))


def _wasserstein_1d_pp(u: np.ndarray, v: np.ndarray, p: float) -> np.ndarray:
    """W_p^p per column between the empirical distributions of the columns of u (N, L) and v (M, L).

    In 1-D the optimal plan is monotone: W_p^p = int_0^1 |F^-1(t) - G^-1(t)|^p dt. Equal sizes:
    match sorted values. Unequal sizes: both quantile functions are step functions, constant between
    consecutive levels of the common grid {i/N} U {j/M}, so the integral is an exact finite sum.
    """
    u, v = np.sort(u, axis=0), np.sort(v, axis=0)
    n, m = len(u), len(v)
    if n == m:
        return (np.abs(u - v) ** p).mean(0)
    levels = np.union1d(np.arange(n + 1) / n, np.arange(m + 1) / m)
    mid, width = (levels[1:] + levels[:-1]) / 2, np.diff(levels)
    iu = np.minimum((mid * n).astype(np.int64), n - 1)  # F^-1(t) = u_(ceil(t N)) on (i/N, (i+1)/N]
    iv = np.minimum((mid * m).astype(np.int64), m - 1)
    return (width[:, None] * np.abs(u[iu] - v[iv]) ** p).sum(0)


def sliced_wasserstein(x: object, y: object, n_projections: int = 256, p: float = 2, seed: int = 0) -> float:
    """Sliced W_p: exact 1-D W_p averaged over random directions, an O(L n log n) stand-in for W_p.

        SW_p(x, y) = (E_theta W_p^p(<theta, x>, <theta, y>))^(1/p)     # Bonneel et al. 2015
    ``n_projections`` directions theta are uniform on the unit sphere (normalised Gaussians from a
    ``numpy.random.default_rng(seed)``), so a seed gives the same value every time. Each 1-D distance
    is exact: for N == M by sorting; for N != M by comparing the two quantile functions on the common
    grid of levels {i/N} U {j/M}. In 1-D with one projection this equals :func:`wasserstein`.
    """
    p = _positive(p, "p")
    if p < 1:
        raise UserError(f"W_p is a distance for p >= 1 only, got p={p}")
    if int(n_projections) != n_projections or n_projections < 1:
        raise UserError(f"n_projections must be a positive integer, got {n_projections!r}")
    a, b = _pair(x, y)
    theta = np.random.default_rng(seed).standard_normal((int(n_projections), a.shape[1]))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    return float(_wasserstein_1d_pp(a @ theta.T, b @ theta.T, p).mean() ** (1.0 / p))


# ---------------------------------------------------------------------------------------------
# Kernel MMD

BANDWIDTH_SCALES: tuple[float, ...] = (0.5, 1.0, 2.0)
_MEDIAN_POINTS = 2000  # pooled points used for the median heuristic (a seeded subsample beyond that)


def _kernel_sums(a: np.ndarray, b: np.ndarray, bandwidths: np.ndarray, same: bool) -> float:
    """sum_ij sum_h exp(-||a_i - b_j||^2 / (2 h^2)), without i == j when ``same``; in row blocks."""
    total, inv = 0.0, -0.5 / bandwidths**2
    for start in range(0, len(a), 1024):
        d2 = cdist(a[start : start + 1024], b, "sqeuclidean")
        k = np.exp(d2[..., None] * inv).sum(-1)
        if same:
            k[np.arange(len(k)), np.arange(start, start + len(k))] = 0.0
        total += float(k.sum())
    return total


def mmd(x: object, y: object, bandwidths: Sequence[float] | None = None) -> float:
    """Unbiased MMD^2 between ``x`` (N, D) and ``y`` (M, D) with a sum of Gaussian kernels.

        MMD_u^2 = 1/(N(N-1)) sum_{i!=j} k(x_i,x_j) + 1/(M(M-1)) sum_{i!=j} k(y_i,y_j) - 2/(NM) sum_ij k(x_i,y_j)
        k(a, b) = sum_h exp(-||a - b||^2 / (2 h^2))                      # Gretton et al. 2012, eq. 3
    ``bandwidths=None`` (default) uses the median heuristic: h = m * (0.5, 1, 2), m the median
    pairwise distance of the pooled samples (over at most 2,000 of them, a seed-0 subsample), so
    the value is scale-free; pass fixed bandwidths to compare runs on one scale. The estimate is
    unbiased, so it can be slightly negative when the distributions are equal.
    """
    a, b = _pair(x, y, min_n=2)
    if bandwidths is None:
        pooled = np.concatenate([a, b])
        if len(pooled) > _MEDIAN_POINTS:
            pooled = pooled[np.random.default_rng(0).choice(len(pooled), _MEDIAN_POINTS, replace=False)]
        d = cdist(pooled, pooled)[np.triu_indices(len(pooled), 1)]
        median = float(np.median(d))
        if median <= 0:
            raise UserError("most pooled samples coincide (median distance 0); pass explicit bandwidths")
        h = median * np.asarray(BANDWIDTH_SCALES)
    else:
        h = np.asarray([_positive(float(v), "each bandwidth") for v in bandwidths], dtype=np.float64)
        if h.size == 0:
            raise UserError("bandwidths is empty; pass at least one positive bandwidth, or None")
    n, m = len(a), len(b)
    kxx = _kernel_sums(a, a, h, same=True) / (n * (n - 1))
    kyy = _kernel_sums(b, b, h, same=True) / (m * (m - 1))
    kxy = _kernel_sums(a, b, h, same=False) / (n * m)
    return float(kxx + kyy - 2 * kxy)


# ---------------------------------------------------------------------------------------------
# True density


def true_log_likelihood(x: object, name: str) -> float:
    """Mean log-density (nats per sample) of ``x`` (N, 2) under the true density of toy ``name``.

    ``ring8`` and ``grid25`` are equal-weight mixtures of K isotropic Gaussians N(c_k, std^2 I):
        log p(x) = logsumexp_k(-||x - c_k||^2 / (2 std^2)) - log K - (D/2) log(2 pi std^2)
    For exact samples of well-separated modes the expectation is -H = -log K - log(2 pi std^2) - 1.
    """
    if name not in MIXTURES:
        raise UserError(f"no known density for data set {name!r}; true likelihoods exist for {', '.join(MIXTURES)}")
    centers, std = toy_modes(name)
    a = _points(x, "x")
    if a.shape[1] != centers.shape[1]:
        raise UserError(f"{name} is {centers.shape[1]}-D, but x has dimension {a.shape[1]}")
    d2 = cdist(a, centers, "sqeuclidean")
    dims = a.shape[1]
    log_p = logsumexp(-d2 / (2 * std**2), axis=1) - math.log(len(centers)) - dims / 2 * math.log(2 * math.pi * std**2)
    return float(log_p.mean())
