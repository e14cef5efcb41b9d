"""Exact toy metrics: mode coverage, W_p (exact and sliced), MMD and true likelihood, with numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from genlab.data.toys import sample_toy, toy_modes
from genlab.errors import UserError
from genlab.metrics.toy import (
    mmd,
    mode_coverage,
    sliced_wasserstein,
    toy_mode_coverage,
    true_log_likelihood,
    wasserstein,
)

HQ_2D = 1 - math.exp(-4.5)  # P(||z|| < 3) for z ~ N(0, I_2): Rayleigh tail, 98.9%


@pytest.fixture(scope="module")
def gauss_1d():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2000, 1)), rng.standard_normal((2000, 1)) + 1.5


@pytest.mark.parametrize("name, k", [("ring8", 8), ("grid25", 25)])
def test_exact_samples_cover_every_mode(name, k):
    x, y, _ = sample_toy(name, 4000, seed=0)
    cov = toy_mode_coverage(x, name)
    assert cov.modes == k and cov.per_mode.shape == (k,)
    assert abs(cov.high_quality - HQ_2D) < 0.005 and cov.high_quality >= 0.98
    assert cov.per_mode.sum() == round(cov.high_quality * len(x))
    # every high-quality sample is assigned to the mode it was drawn from
    assert np.array_equal(cov.per_mode, np.bincount(y, minlength=k) - np.bincount(
        y[np.linalg.norm(x - toy_modes(name)[0][y], axis=1) >= 3 * toy_modes(name)[1]], minlength=k))
    assert toy_mode_coverage(torch.from_numpy(x), name, n_std=10).high_quality == 1.0


def test_collapsed_and_off_mode_samples():
    centers, std = toy_modes("ring8")
    one = centers[3] + std * np.random.default_rng(1).standard_normal((500, 2))
    cov = mode_coverage(one, centers, std)
    assert cov.modes == 1 and cov.per_mode[3] == cov.per_mode.sum() > 480
    between = (centers + np.roll(centers, 1, axis=0)) / 2  # midpoints: far from every mode
    cov = mode_coverage(between, centers, std)
    assert cov.modes == 0 and cov.high_quality == 0.0 and cov.per_mode.sum() == 0


def test_w1_of_shifted_gaussians(gauss_1d):
    x, y = gauss_1d
    w1 = wasserstein(x, y, p=1)
    assert abs(w1 - 1.5) < 0.05
    assert w1 == pytest.approx(wasserstein_distance(x[:, 0], y[:, 0]), abs=1e-9)  # exact 1-D reference
    assert sliced_wasserstein(x, y, n_projections=1, p=1) == pytest.approx(w1, abs=1e-9)


def test_w2_exact_and_sliced(gauss_1d):
    x, y = (a[:500] for a in gauss_1d)
    assert wasserstein(x, x, p=2) == 0.0
    assert wasserstein(torch.from_numpy(x).float(), x.astype(np.float32)) == 0.0
    w2 = wasserstein(x, y, p=2)
    assert abs(w2 - 1.5) < 0.1 and w2 >= wasserstein(x, y, p=1) - 1e-12  # W1 <= W2
    # 1-D: slicing is exact, for equal sizes (sorting) and unequal sizes (common quantile grid)
    assert sliced_wasserstein(x, y, n_projections=1) == pytest.approx(w2, abs=1e-10)
    assert sliced_wasserstein(x, y[:317], n_projections=1) == pytest.approx(wasserstein(x, y[:317]), abs=1e-10)
    assert sliced_wasserstein(x[:5], y[:3], n_projections=1, p=1) == pytest.approx(
        wasserstein_distance(x[:5, 0], y[:3, 0]), abs=1e-12)


def test_sliced_in_2d_is_seeded_and_below_w2():
    a, _, _ = sample_toy("grid25", 400, seed=0)
    b, _, _ = sample_toy("grid25", 300, seed=1)
    sw = sliced_wasserstein(a, b, seed=3)
    assert sw == sliced_wasserstein(torch.from_numpy(a), b, seed=3)
    assert sw != sliced_wasserstein(a, b, seed=4)
    assert 0 < sw <= wasserstein(a, b)  # projections are 1-Lipschitz: SW_p <= W_p
    assert sliced_wasserstein(a, a) == 0.0


def test_mmd_same_near_zero_shifted_positive():
    a, _, _ = sample_toy("ring8", 500, seed=1)
    b, _, _ = sample_toy("ring8", 500, seed=2)
    same, shifted = mmd(a, b), mmd(a, torch.from_numpy(b) + 0.5)
    assert abs(same) < 0.005 and shifted > 0.1
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((400, 2)), rng.standard_normal((300, 2))
    # analytic, kernel h = 1, N(0, I_2) vs N(m, I_2): MMD^2 = 2 (h^2/(h^2+2)) (1 - exp(-|m|^2 / (2 (h^2+2))))
    assert abs(mmd(x, y, bandwidths=(1.0,))) < 0.01
    assert mmd(x, y + 1.0, bandwidths=(1.0,)) == pytest.approx(2 / 3 * (1 - math.exp(-2 / 6)), abs=0.02)
    # unbiased: a single kernel on two points each is exact arithmetic
    p, q = np.array([[0.0], [1.0]]), np.array([[0.0], [2.0]])
    k = lambda d: math.exp(-d * d / 2)  # noqa: E731
    expect = k(1) + k(2) - 2 * (k(0) + k(2) + k(1) + k(1)) / 4
    assert mmd(p, q, bandwidths=[1.0]) == pytest.approx(expect, abs=1e-14)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_true_log_likelihood(name):
    centers, std = toy_modes(name)
    x, _, _ = sample_toy(name, 4000, seed=0)
    expect = -math.log(len(centers)) - math.log(2 * math.pi * std**2) - 1  # -entropy, separated modes
    assert true_log_likelihood(x, name) == pytest.approx(expect, abs=0.05)
    # the density itself, against torch's mixture at a few points near and between modes
    pts = torch.from_numpy(centers[:3] + np.array([[0.0, 0.0], [std, -std], [0.3, 0.1]]))
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(len(centers), dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(torch.from_numpy(centers), std), 1))
    for pt in pts:
        assert true_log_likelihood(pt[None], name) == pytest.approx(float(mix.log_prob(pt)), rel=1e-10)


def test_bad_inputs_raise_user_error():
    x2, x3 = np.zeros((10, 2)), np.zeros((10, 3))
    centers, std = toy_modes("ring8")
    cases = [
        (lambda: wasserstein(x2, x3), "same dimension"),
        (lambda: wasserstein(np.zeros(10), np.zeros(10)), r"\(N, 1\)"),
        (lambda: wasserstein(np.zeros((10_001, 1)), np.zeros((5, 1))), "subsample"),
        (lambda: wasserstein(x2, x2, p=0.5), "p >= 1"),
        (lambda: wasserstein(np.zeros((0, 2)), x2), "at least 1"),
        (lambda: sliced_wasserstein(x2, x3), "same dimension"),
        (lambda: sliced_wasserstein(x2, x2, n_projections=0), "n_projections"),
        (lambda: mmd(np.zeros((1, 2)), x2), "at least 2"),
        (lambda: mmd(x2, x2), "bandwidths"),  # all points equal: no median heuristic
        (lambda: mmd(x2, x2 + 1, bandwidths=()), "empty"),
        (lambda: mmd(x2, x2 + 1, bandwidths=(1.0, -1.0)), "positive"),
        (lambda: mmd(x2, np.full((4, 2), np.nan)), "NaN"),
        (lambda: mode_coverage(x3, centers, std), "dimension"),
        (lambda: mode_coverage(x2, centers, 0.0), "std"),
        (lambda: toy_mode_coverage(x2, "moons"), "not a Gaussian mixture"),
        (lambda: true_log_likelihood(x2, "moons"), "no known density"),
        (lambda: true_log_likelihood(x3, "ring8"), "2-D"),
        (lambda: true_log_likelihood([["a", "b"]], "ring8"), "numeric"),
    ]
    for call, match in cases:
        with pytest.raises(UserError, match=match):
            call()
