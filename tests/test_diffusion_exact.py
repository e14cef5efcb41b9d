"""Exact denoisers: closed forms, Tweedie's formula and the limits sigma -> 0 / infinity."""

from __future__ import annotations

import torch

from genlab.diffusion.exact import EmpiricalDenoiser, GaussianMixtureDenoiser
from genlab.diffusion.samplers import sample_heun, sigmas_karras

F64 = torch.float64
G = torch.Generator().manual_seed(0)
POINTS = torch.randn(50, 2, dtype=F64, generator=G)
X = 2 * torch.randn(300, 2, dtype=F64, generator=G)
SIGMA = torch.logspace(-1.5, 1, 300, dtype=F64)


def test_single_gaussian_is_linear_shrinkage() -> None:
    m, s = torch.tensor([[0.5, -1.0]], dtype=F64), 0.3
    expected = m + s**2 / (s**2 + SIGMA[:, None] ** 2) * (X - m)
    assert torch.allclose(GaussianMixtureDenoiser(m, s)(X, SIGMA), expected)


def test_mixture_of_deltas_equals_empirical() -> None:
    assert torch.allclose(GaussianMixtureDenoiser(POINTS, 0.0)(X, SIGMA), EmpiricalDenoiser(POINTS)(X, SIGMA))


def test_empirical_tweedie_and_limits() -> None:
    x = X.clone().requires_grad_(True)
    log_p = (-(x[:, None] - POINTS).square().sum(-1) / (2 * SIGMA[:, None] ** 2)).logsumexp(-1)
    (score,) = torch.autograd.grad(log_p.sum(), x)
    D = EmpiricalDenoiser(POINTS, chunk=7)  # several chunks
    assert torch.allclose(D(X, SIGMA), X + SIGMA[:, None] ** 2 * score)  # D = x + sigma^2 grad log p_sigma
    nearest = POINTS[torch.cdist(X, POINTS).argmin(-1)]
    assert torch.allclose(D(X, torch.full((300,), 1e-3, dtype=F64)), nearest)
    assert torch.allclose(D(X, torch.full((300,), 1e4, dtype=F64)), POINTS.mean(0).expand(300, 2), atol=1e-6)


def test_weights_and_float32() -> None:
    D = GaussianMixtureDenoiser(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 0.1, torch.tensor([3.0, 1.0]))
    out = D(torch.zeros(2, 2), torch.tensor([0.5, 0.5]))
    assert out.dtype == torch.float32 and (out[:, 0] < 0).all()  # the heavier mode wins at the midpoint


def test_heun_on_empirical_lands_on_the_points() -> None:
    x = 80 * torch.randn(200, 2, dtype=F64, generator=G)
    out = sample_heun(EmpiricalDenoiser(POINTS), x, sigmas_karras(40, 0.01, 80))
    assert torch.cdist(out, POINTS).min(-1).values.max() < 1e-3
