"""Probability-flow ODE log-likelihood against closed-form denoisers (Gaussians, a Gaussian mixture)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.likelihood import bits_per_dim_ode, ode_log_likelihood
from genlab.diffusion.samplers import NFECounter
from genlab.diffusion.schedules import EDMSchedule
from genlab.errors import UserError
from genlab.metrics.likelihood import dequantize

F64 = torch.float64
S_MIN, S_MAX = 0.002, 80.0


pytestmark = pytest.mark.usefixtures("one_thread")


class Gaussian:
    """x0 ~ N(mu, cov) on (B, *shape) data, with its exact denoiser D = mu + cov (cov + sigma^2 I)^-1 (x - mu)."""

    def __init__(self, mu: torch.Tensor, cov: torch.Tensor, shape: tuple[int, ...] | None = None) -> None:
        self.mu, self.cov, self.shape = mu, cov, shape or tuple(mu.shape)
        self.lam, self.Q = torch.linalg.eigh(cov)

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, len(self.mu), dtype=F64, generator=g)
        return (self.mu + z * self.lam.sqrt() @ self.Q.T).reshape(n, *self.shape)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        y = (x.flatten(1) - self.mu) @ self.Q  # eigen-coordinates
        shrink = self.lam / (self.lam + sigma[:, None] ** 2)
        return (self.mu + (shrink * y) @ self.Q.T).reshape(x.shape)

    def log_prob(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """log N(x; mu, cov + sigma^2 I): the density at noise level sigma."""
        cov = self.cov + sigma**2 * torch.eye(len(self.mu), dtype=F64)
        return torch.distributions.MultivariateNormal(self.mu, cov).log_prob(x.flatten(1))

    def flow(self, x: torch.Tensor, s0: float, s1: float) -> torch.Tensor:
        """The exact ODE solution from x at s0 to s1: per eigen-direction, scaled by sqrt((lam + s1^2)/(lam + s0^2))."""
        y = (x.flatten(1) - self.mu) @ self.Q
        return self.mu + (y * ((self.lam + s1**2) / (self.lam + s0**2)).sqrt()) @ self.Q.T


def same_prior(gauss: Gaussian, x: torch.Tensor, s0: float, s1: float) -> torch.Tensor:
    """The exact answer of the method: log N(x(s1); 0, s1^2 I) + log p_s0(x) - log p_s1(x(s1)) (exact flow)."""
    xT = gauss.flow(x, s0, s1)
    return torch.distributions.Normal(0.0, s1).log_prob(xT).sum(1) + gauss.log_prob(x, s0) - gauss.log_prob(xT, s1)


def diagonal(d: int, seed: int) -> Gaussian:
    g = torch.Generator().manual_seed(seed)
    mu, s = torch.randn(d, generator=g, dtype=F64), torch.rand(d, generator=g, dtype=F64) + 0.3
    return Gaussian(mu, torch.diag(s**2))


def rotated(d: int, seed: int, shape: tuple[int, ...] | None = None) -> Gaussian:
    """Full covariance with eigenvalues in [0.05, 1.05] (Rademacher probes are exact for diagonal ones)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    lam = torch.rand(d, generator=g, dtype=F64) + 0.05
    return Gaussian(0.5 * torch.randn(d, generator=g, dtype=F64), Q @ torch.diag(lam) @ Q.T, shape)


@pytest.mark.parametrize("d", [2, 5])
def test_gaussian_exact_divergence(d: int) -> None:
    gauss = diagonal(d, seed=d)
    x = gauss.sample(64, torch.Generator().manual_seed(1))
    res = ode_log_likelihood(gauss, x, sigma_min=S_MIN, sigma_max=S_MAX)
    assert res.log_prob.shape == (64,) and res.nfe == 4 * 64
    # integrator error: the exact answer under the same N(0, sigma_max^2) prior, < 1e-3 nats (measured 8e-5, 2e-4)
    assert (res.log_prob - same_prior(gauss, x, S_MIN, S_MAX)).abs().max() < 1e-3
    # against the true density: the prior mismatch is ~|mu| / sigma_max per point, so go to sigma_max = 1e4
    res = ode_log_likelihood(gauss, x, sigma_min=S_MIN, sigma_max=1e4, steps=128)
    assert (res.log_prob - gauss.log_prob(x, S_MIN)).abs().max() < 1e-3
    assert torch.allclose(res.bits_per_dim, -res.log_prob / (d * math.log(2)))


def test_gaussian_mixture() -> None:
    """Two components, equal weights, means +-m (zero overall mean, so the prior mismatch is ~1e-4)."""
    means, stds = torch.tensor([[1.0, 0.5], [-1.0, -0.5]], dtype=F64), torch.tensor([0.3, 0.6], dtype=F64)

    def log_components(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        var = stds**2 + torch.as_tensor(sigma, dtype=F64).reshape(-1, 1) ** 2  # (B, 2)
        return math.log(0.5) - (x[:, None] - means).square().sum(-1) / (2 * var) - torch.log(2 * math.pi * var)

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        post = log_components(x, sigma).softmax(-1)  # p(k | x)
        shrink = stds**2 / (stds**2 + sigma[:, None] ** 2)
        return (post[..., None] * (means + shrink[..., None] * (x[:, None] - means))).sum(1)

    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 2, (64,), generator=g)
    x = means[k] + stds[k, None] * torch.randn(64, 2, generator=g, dtype=F64)
    x = torch.cat([x, torch.zeros(1, 2, dtype=F64)])  # and the low-density point between the modes
    res = ode_log_likelihood(D, x, sigma_min=S_MIN, sigma_max=S_MAX)
    truth = log_components(x, S_MIN).logsumexp(-1)
    assert (res.log_prob - truth).abs().max() < 2e-3


def test_hutchinson_unbiased_rademacher() -> None:
    """dim 32, 512 points x 2 probes: mean error within 3 standard errors and 2% of the mean log-likelihood."""
    gauss = rotated(32, seed=0)
    x = gauss.sample(512, torch.Generator().manual_seed(1))
    ref = same_prior(gauss, x, S_MIN, S_MAX)
    g = torch.Generator().manual_seed(2)
    res = ode_log_likelihood(gauss, x, sigma_min=S_MIN, sigma_max=S_MAX, steps=32, hutchinson_samples=2, generator=g)
    err = res.log_prob - ref
    assert 1.0 < err.std() < 3.0  # measured 2.1 nats per point: really stochastic
    assert err.mean().abs() < 3 * err.std() / math.sqrt(len(err))
    assert err.mean().abs() < 0.02 * ref.mean().abs()
    exact = ode_log_likelihood(gauss, x[:8], sigma_min=S_MIN, sigma_max=S_MAX, steps=32, exact=True)
    assert (exact.log_prob - ref[:8]).abs().max() < 2e-2  # 32 steps in dim 32 (64 steps: 1e-3)


def test_hutchinson_unbiased_gaussian_probes() -> None:
    """Gaussian probes are unbiased too but ~6x noisier than Rademacher here (std 13 nats with 8 probes)."""
    gauss = rotated(32, seed=0)
    x = gauss.sample(512, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(0)
    res = ode_log_likelihood(
        gauss, x, sigma_min=S_MIN, sigma_max=S_MAX, steps=32, hutchinson_samples=8, probe="gaussian", generator=g
    )
    err = res.log_prob - same_prior(gauss, x, S_MIN, S_MAX)
    assert err.mean().abs() < 3 * err.std() / math.sqrt(len(err))


class TinyNet(nn.Module):
    """A nonlinear image network: F = conv(tanh(conv(x))) + a noise-level bias."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x))) + c_noise[:, None, None, None]


def test_image_shaped_exact_and_hutchinson_agree() -> None:
    torch.manual_seed(0)
    denoiser = Denoiser(TinyNet().double(), EDMSchedule(), parameterization="edm")
    x = torch.rand(64, 1, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    counter = NFECounter(denoiser)
    exact = ode_log_likelihood(counter, x, sigma_min=S_MIN, sigma_max=S_MAX, steps=16)  # dim 16: exact
    assert counter.nfe == exact.nfe == 4 * 16
    assert exact.log_prob.shape == (64,) and not exact.log_prob.requires_grad
    assert all(p.grad is None for p in denoiser.parameters())  # only d/dx was taken
    g = torch.Generator().manual_seed(2)
    hutch = ode_log_likelihood(
        denoiser, x, sigma_min=S_MIN, sigma_max=S_MAX, steps=16, exact=False, hutchinson_samples=4, generator=g
    )
    err = hutch.log_prob - exact.log_prob
    assert 0 < err.std() and err.mean().abs() < 3 * err.std() / math.sqrt(len(err))
    # one network evaluation per stage, float32 works too
    res32 = ode_log_likelihood(denoiser.float(), x.float(), sigma_min=S_MIN, sigma_max=S_MAX, steps=16)
    assert res32.log_prob.dtype == torch.float32
    assert (res32.log_prob.double() - exact.log_prob).abs().max() < 1e-2


def test_class_labels() -> None:
    """A conditional Gaussian with mean +-mu by label: each point gets its own class's density."""
    pos, neg = diagonal(3, seed=0), diagonal(3, seed=0)
    neg.mu = -pos.mu

    def D(x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        return torch.where(class_labels[:, None] == 1, pos(x, sigma), neg(x, sigma))

    labels = torch.tensor([0, 1, 1, 0, 1])
    x = pos.sample(5, torch.Generator().manual_seed(0))
    res = ode_log_likelihood(D, x, sigma_min=S_MIN, sigma_max=S_MAX, class_labels=labels)
    ref = torch.where(labels == 1, same_prior(pos, x, S_MIN, S_MAX), same_prior(neg, x, S_MIN, S_MAX))
    assert (res.log_prob - ref).abs().max() < 1e-3


def test_bits_per_dim_dequantization_arithmetic() -> None:
    """8-bit (1, 2, 2) images: log P = log p(x + u delta) + D log(2 / 255), bits/dim = -log P / (D ln 2)."""
    gauss = rotated(4, seed=3, shape=(1, 2, 2))
    v = torch.randint(0, 256, (16, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    x = (v / 127.5 - 1).double()
    g = torch.Generator().manual_seed(5)
    res = bits_per_dim_ode(gauss, x, bins=256, sigma_min=S_MIN, sigma_max=S_MAX, generator=g)
    xd = dequantize(x, 256, torch.Generator().manual_seed(5))  # the same uniform draws
    assert ((xd - x) * 127.5).min() >= 0 and ((xd - x) * 127.5).max() < 1
    log_P = same_prior(gauss, xd, S_MIN, S_MAX) + 4 * math.log(2 / 255)
    assert (res.log_prob - log_P).abs().max() < 1e-3
    assert torch.allclose(res.bits_per_dim, -log_P / (4 * math.log(2)), atol=1e-3)
    cont = bits_per_dim_ode(gauss, x, bins=0, sigma_min=S_MIN, sigma_max=S_MAX)  # continuous: no dequantization
    assert torch.allclose(cont.log_prob, ode_log_likelihood(gauss, x, sigma_min=S_MIN, sigma_max=S_MAX).log_prob)


def test_probes_follow_the_generator() -> None:
    gauss = rotated(32, seed=0)
    x = gauss.sample(4, torch.Generator().manual_seed(1))
    run = lambda seed: ode_log_likelihood(  # noqa: E731
        gauss, x, sigma_min=S_MIN, sigma_max=S_MAX, steps=2, generator=torch.Generator().manual_seed(seed)
    ).log_prob
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sigma_min": 1.0, "sigma_max": 1.0},
        {"sigma_min": 2.0, "sigma_max": 1.0},
        {"sigma_min": 0.0, "sigma_max": 1.0},
        {"sigma_min": 0.1, "sigma_max": 1.0, "steps": 0},
        {"sigma_min": 0.1, "sigma_max": 1.0, "hutchinson_samples": 0},
        {"sigma_min": 0.1, "sigma_max": 1.0, "probe": "sphere"},
    ],
)
def test_bad_arguments(kwargs: dict) -> None:
    gauss = diagonal(2, seed=0)
    with pytest.raises(UserError):
        ode_log_likelihood(gauss, torch.zeros(3, 2, dtype=F64), **kwargs)
    with pytest.raises(UserError):
        ode_log_likelihood(gauss, torch.zeros(2, dtype=F64), sigma_min=0.1, sigma_max=1.0)  # unbatched
    with pytest.raises(UserError):
        bits_per_dim_ode(gauss, torch.zeros(3, 2, dtype=F64), bins=1, sigma_min=0.1, sigma_max=1.0)
