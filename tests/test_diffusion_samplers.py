"""Samplers against closed-form denoisers: a 2-D Gaussian mixture and a single Gaussian."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

from genlab.diffusion.samplers import (
    GRIDS,
    SAMPLERS,
    NFECounter,
    PerSampleNoise,
    get_sampler,
    make_sigmas,
    sample_ddim,
    sample_ddpm_ancestral,
    sample_dpmpp_2m,
    sample_edm,
    sample_euler,
    sample_heun,
    sigmas_ddpm,
    sigmas_karras,
    sigmas_uniform_t,
)
from genlab.diffusion.schedules import EDMSchedule, FlowSchedule, VESchedule, VPSchedule
from genlab.errors import UserError

F64 = torch.float64


class GMM:
    """Isotropic Gaussian mixture with its exact denoiser D(x, sigma) = E[x0 | x0 + sigma n = x]."""

    def __init__(self, means: list[list[float]], stds: list[float], weights: list[float]) -> None:
        self.means, self.stds, self.weights = (torch.tensor(v, dtype=F64) for v in (means, stds, weights))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], dtype=F64, generator=generator)
        return self.means[k] + self.stds[k, None] * z

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        var = self.stds**2 + sigma.to(F64)[:, None] ** 2  # (B, K): x | k ~ N(m_k, (s_k^2 + sigma^2) I)
        diff = x.to(F64)[:, None, :] - self.means  # (B, K, d)
        logp = self.weights.log() - diff.square().sum(-1) / (2 * var) - x.shape[1] / 2 * var.log()
        post = logp.softmax(-1)  # p(k | x)
        cond = self.means + (self.stds**2 / var)[..., None] * diff  # E[x0 | x, k]: per-component shrinkage
        return (post[..., None] * cond).sum(1).to(x.dtype)


MIX = GMM([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]], [0.15, 0.25, 0.2], [0.5, 0.3, 0.2])
VP = VPSchedule()


pytestmark = pytest.mark.usefixtures("one_thread")


def w2_squared(a: torch.Tensor, b: torch.Tensor) -> float:
    M = ot.dist(a.numpy(), b.numpy())  # squared Euclidean costs
    return float(ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), M))


CASES = {
    # name: (sampler, sigmas, kwargs, expected NFE)
    "euler": (sample_euler, sigmas_karras(100, 0.002, 80), {}, 100),
    "heun": (sample_heun, sigmas_karras(18, 0.002, 80), {}, 35),
    "edm": (sample_edm, sigmas_karras(40, 0.002, 80), {"S_churn": 10.0, "S_tmin": 0.05, "S_tmax": 50.0}, 79),
    "dpmpp_2m": (sample_dpmpp_2m, sigmas_karras(20, 0.002, 80), {}, 20),
    "ddim": (sample_ddim, sigmas_ddpm(VP, 100), {}, 100),
    "ddim_eta1": (sample_ddim, sigmas_ddpm(VP, 100), {"eta": 1.0}, 100),
    "ddpm": (sample_ddpm_ancestral, sigmas_ddpm(VP, 100, "trailing"), {}, 100),
}


def run(name: str, n: int, seed: int, denoiser=None) -> torch.Tensor:
    sampler, sigmas, kw, _ = CASES[name]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, dtype=F64, generator=g) * sigmas[0]
    if "noise" in sampler.__kwdefaults__:
        kw = {**kw, "noise": lambda: torch.randn(n, 2, dtype=F64, generator=g)}
    return sampler(denoiser or MIX, x, sigmas, **kw)


@pytest.mark.parametrize("name", list(CASES))
def test_mixture(name: str) -> None:
    """Mode weights within 0.04 (binomial SE 0.011) and per-mode W2^2 / s_k^2 < 0.3 (POT).

    Two true samples give W2^2 / s_k^2 ~ 0.04-0.1; 10 Euler or 4 Heun steps give 0.5-300.
    """
    D = NFECounter(MIX)
    out = run(name, 2000, seed=1, denoiser=D)
    assert D.nfe == CASES[name][3]
    g = torch.Generator().manual_seed(7)
    sq = (out[:, None] - MIX.means).square().sum(-1)
    k = (MIX.weights.log() - sq / (2 * MIX.stds**2) - 2 * MIX.stds.log()).argmax(-1)  # most likely mode
    assert (torch.bincount(k, minlength=3) / len(out) - MIX.weights).abs().max() < 0.04
    for j in range(3):
        xs = out[k == j]
        truth = MIX.means[j] + MIX.stds[j] * torch.randn(len(xs), 2, dtype=F64, generator=g)
        assert w2_squared(xs, truth) / MIX.stds[j] ** 2 < 0.3, j


def gaussian_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    m = torch.tensor([0.5, -1.0], dtype=F64)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=F64)
    lam, U = torch.linalg.eigh(cov)
    return m, cov, lam, U


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    m, _, lam, U = gaussian_case()
    shrink = lam / (lam + sigma[:, None] ** 2)  # Sigma (Sigma + sigma^2 I)^-1 in the eigenbasis
    return m + ((x - m) @ U * shrink) @ U.T


@pytest.mark.parametrize("name, order, tol", [("euler", 1, 0.15), ("heun", 2, 0.01), ("dpmpp_2m", 2, 0.01)])
def test_gaussian_exact_ode_flow_and_order(name: str, order: int, tol: float) -> None:
    """Against the exact PF-ODE map of N(m, C): x0 = m + U diag(sqrt(lam / (lam + smax^2))) U^T (x - m).

    Max error over 500 samples at 72 Karras steps, and its convergence order from 36 to 72 steps.
    """
    m, _, lam, U = gaussian_case()
    x = torch.randn(500, 2, dtype=F64, generator=torch.Generator().manual_seed(2)) * 80
    exact = m + ((x - m) @ U * (lam / (lam + 80**2)).sqrt()) @ U.T
    sampler = SAMPLERS[name]
    err = [(sampler(gaussian_denoiser, x, sigmas_karras(n, 0.002, 80)) - exact).abs().max().item() for n in (36, 72)]
    assert err[1] < tol, err
    assert abs(math.log2(err[0] / err[1]) - order) < 0.2, err


def test_gaussian_ddim_on_ddpm_grid() -> None:
    m, _, lam, U = gaussian_case()
    sigmas = sigmas_ddpm(VP, 100)
    x = torch.randn(500, 2, dtype=F64, generator=torch.Generator().manual_seed(2)) * sigmas[0]
    exact = m + ((x - m) @ U * (lam / (lam + sigmas[0] ** 2)).sqrt()) @ U.T
    assert (sample_ddim(gaussian_denoiser, x, sigmas) - exact).abs().max() < 0.1  # measured 0.059


def ddpm_law(schedule: VPSchedule, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and covariance of DDPM ancestral sampling (x_t-space, DDPM eq. 6-7) for N(m, C)."""
    m, C, _, _ = gaussian_case()
    ts = list(range(schedule.T - 1, -1, -schedule.T // steps))
    abar = schedule.alphas_cumprod
    mu, cov = torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)  # x_T ~ N(0, I)
    for t, t_prev in zip(ts, ts[1:] + [None]):
        a_t, a_p = abar[t], (abar[t_prev] if t_prev is not None else torch.tensor(1.0, dtype=F64))
        beta = 1 - a_t / a_p
        c1, c2 = a_p.sqrt() * beta / (1 - a_t), (a_t / a_p).sqrt() * (1 - a_p) / (1 - a_t)
        eye = torch.eye(2, dtype=F64)
        A = C @ torch.linalg.inv(C + (1 - a_t) / a_t * eye)  # E[x0 | x_t] = m + A (x_t / sqrt(a_t) - m)
        B = c2 * eye + c1 * A / a_t.sqrt()
        mu, cov = B @ mu + c1 * (m - A @ m), B @ cov @ B.T + (1 - a_p) / (1 - a_t) * beta * eye
    return mu, cov


def test_ddpm_matches_its_exact_law_on_a_gaussian() -> None:
    """DDPM with 100 fixed_small steps under-disperses (cov 1.0 -> ~0.93); the sample follows that law."""
    sigmas = sigmas_ddpm(VP, 100, "trailing")
    mu, cov = ddpm_law(VP, 100)
    assert cov[0, 0] < 0.95  # the discretization bias is real, so the check below is sharp
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20000, 2, dtype=F64, generator=g) * (1 + sigmas[0] ** 2).sqrt()  # x_T / s
    noise = lambda: torch.randn(20000, 2, dtype=F64, generator=g)  # noqa: E731
    out = sample_ddpm_ancestral(gaussian_denoiser, x, sigmas, noise=noise)
    assert (out.mean(0) - mu).abs().max() < 0.03  # standard error ~0.007
    assert (torch.cov(out.T) - cov).abs().max() < 0.035  # standard error ~0.01


def test_edm_churn_gaussian_mean_cov() -> None:
    m, cov, _, _ = gaussian_case()
    sigmas = sigmas_karras(80, 0.002, 80)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20000, 2, dtype=F64, generator=g) * 80
    out = sample_edm(gaussian_denoiser, x, sigmas, noise=lambda: torch.randn(20000, 2, dtype=F64, generator=g),
                     S_churn=10.0, S_tmin=0.05, S_tmax=50.0)
    assert (out.mean(0) - m).abs().max() < 0.03
    assert (torch.cov(out.T) - cov).abs().max() < 0.04


def test_identities_between_samplers() -> None:
    x = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(4)) * 80
    karras = sigmas_karras(12, 0.002, 80)
    heun = sample_heun(MIX, x, karras)
    assert torch.equal(sample_edm(MIX, x, karras), heun)  # S_churn = 0 is Algorithm 1
    assert torch.allclose(sample_ddim(MIX, x, karras), sample_euler(MIX, x, karras), atol=1e-10)

    def noise_stream() -> PerSampleNoise:
        return PerSampleNoise(range(64), (2,), dtype=F64)

    a = sample_ddim(MIX, x, karras, eta=1.0, noise=noise_stream())
    b = sample_ddpm_ancestral(MIX, x, karras, noise=noise_stream())
    assert torch.allclose(a, b, atol=1e-10)  # DDIM eta = 1 is DDPM's posterior (fixed_small)


def test_per_sample_noise_is_batch_independent() -> None:
    sigmas = sigmas_karras(8, 0.002, 80)
    outs = []
    for seeds in ([10, 11, 12, 13], [10, 11], [12, 13]):
        noise = PerSampleNoise(seeds, (2,))
        x = noise() * sigmas[0]
        outs.append(sample_edm(MIX, x.double(), sigmas, noise=lambda: noise().double(), S_churn=20.0))
    assert torch.equal(outs[0], torch.cat(outs[1:]))
    x = PerSampleNoise([10, 11, 12, 13], (2,))()
    assert not torch.equal(x[:2], x[2:])


def test_class_labels_are_forwarded() -> None:
    seen = []

    def D(x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        seen.append(class_labels)
        return x / (1 + sigma[:, None] ** 2)

    labels = torch.tensor([1, 2])
    sample_heun(D, torch.ones(2, 2), sigmas_karras(3, 0.1, 10), class_labels=labels)
    assert len(seen) == 5 and all(s is labels for s in seen)


def test_grids() -> None:
    k = sigmas_karras(18, 0.002, 80)
    assert len(k) == 19 and k[0] == 80 and abs(k[-2].item() - 0.002) < 1e-12 and k[-1] == 0
    assert (k.diff() < 0).all()
    rho = 7
    i = 5  # EDM eq. 5
    ref = (80 ** (1 / rho) + i / 17 * (0.002 ** (1 / rho) - 80 ** (1 / rho))) ** rho
    assert math.isclose(k[i].item(), ref, rel_tol=1e-12)
    lead = sigmas_ddpm(VP, 10, "leading")
    assert torch.equal(lead[:-1], VP.sigmas[torch.arange(900, -1, -100)]) and lead[-1] == 0
    trail = sigmas_ddpm(VP, 10, "trailing")
    assert torch.equal(trail[:-1], VP.sigmas[torch.arange(999, 0, -100)])
    assert len(sigmas_ddpm(VP, 61, "trailing")) == 62  # diffusers' arange would give 62 timesteps
    lin = sigmas_ddpm(VP, 4, "linspace")
    assert torch.equal(lin[:-1], VP.sigmas[[999, 666, 333, 0]])
    flow = sigmas_uniform_t(FlowSchedule(), 4)
    assert torch.allclose(FlowSchedule().sigma_inv(flow), torch.linspace(0.999, 0, 5, dtype=F64), atol=1e-12)
    assert flow[0].item() == pytest.approx(999) and flow[-1] == 0
    ve = sigmas_uniform_t(VESchedule(), 3)
    assert torch.allclose(ve, torch.tensor([100.0, math.sqrt(2), 0.02, 0.0], dtype=F64))
    assert torch.equal(make_sigmas("karras", 18, EDMSchedule()), k)
    vp_k = make_sigmas("karras", 18, VP)  # capped at EDM's sigma_max = 80, as NVlabs/edm samples VP models
    assert torch.equal(vp_k, sigmas_karras(18, VP.sigma_min, 80.0)) and vp_k[0].item() == pytest.approx(80.0)
    assert make_sigmas("karras", 18, VP, sigma_max=VP.sigma_max)[0].item() == pytest.approx(VP.sigma_max)
    assert torch.equal(make_sigmas("ddpm", 10, VP, spacing="trailing"), trail)
    assert set(GRIDS) == {"karras", "ddpm", "uniform_t"}


def test_flow_euler_is_rectified_flow_euler() -> None:
    """Euler in sigma-space on a uniform-t grid is Euler on x_t = (1-t) x0 + t eps with v = eps - x0."""
    flow = FlowSchedule()
    sigmas = sigmas_uniform_t(flow, 8)
    t = flow.sigma_inv(sigmas)
    x_t = torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    ours = sample_euler(MIX, x_t / flow.s_at_sigma(sigmas[0]), sigmas)
    for i in range(8):
        s = sigmas[i].repeat(16)
        v = (x_t - MIX(x_t / flow.s_at_sigma(sigmas[i]), s)) / t[i]  # v = (x_t - x0_hat) / t
        x_t = x_t + (t[i + 1] - t[i]) * v
    assert torch.allclose(ours, x_t, atol=1e-10)


def test_bad_input() -> None:
    with pytest.raises(UserError, match="unknown sampler 'heunn'.*did you mean 'heun'.*euler"):
        get_sampler("heunn")
    assert get_sampler("dpmpp_2m") is SAMPLERS["dpmpp_2m"]
    with pytest.raises(UserError, match="steps=0: must be an integer >= 1"):
        make_sigmas("karras", 0, EDMSchedule())
    with pytest.raises(UserError, match="sigma_min=80, sigma_max=1: need 0 < sigma_min < sigma_max"):
        make_sigmas("karras", 10, sigma_min=80, sigma_max=1)
    with pytest.raises(UserError, match="karras grid needs sigma_min > 0.*use grid=uniform_t"):
        make_sigmas("karras", 10, FlowSchedule())
    with pytest.raises(UserError, match="rho=0: the Karras grid needs rho > 0"):
        make_sigmas("karras", 10, EDMSchedule(), rho=0)
    with pytest.raises(UserError, match="unknown sigma grid 'cosine'; choose one of: karras, ddpm, uniform_t"):
        make_sigmas("cosine", 10, VP)
    with pytest.raises(UserError, match="needs a VP schedule"):
        make_sigmas("ddpm", 10, EDMSchedule())
    with pytest.raises(UserError, match="unknown timestep spacing 'middle'"):
        sigmas_ddpm(VP, 10, "middle")
    with pytest.raises(UserError, match="at most T=1000"):
        sigmas_ddpm(VP, 1001)
    with pytest.raises(UserError, match="eta=1.5: must be in"):
        sample_ddim(MIX, torch.zeros(1, 2), sigmas_karras(2, 0.1, 1), eta=1.5)
