"""Schedules, preconditioning (Denoiser, conversions, guidance) and the diffusion loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlab.diffusion.denoiser import PARAMETERIZATIONS, Denoiser, c_skip_out, eps_from_D, guided, to_param
from genlab.diffusion.losses import (
    LogNormalSigma,
    UniformDiscreteT,
    UniformT,
    WEIGHTINGS,
    diffusion_loss,
    get_weighting,
)
from genlab.diffusion.schedules import (
    SCHEDULES,
    EDMSchedule,
    FlowSchedule,
    VESchedule,
    VPSchedule,
    make_schedule,
)
from genlab.errors import UserError

F64 = torch.float64
ALL = [VPSchedule(), VPSchedule("cosine"), VESchedule(), EDMSchedule(), FlowSchedule()]
IDS = ["vp-linear", "vp-cosine", "ve", "edm", "flow"]


pytestmark = pytest.mark.usefixtures("one_thread")


def interior_t(schedule, n: int = 257) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    u = torch.rand(n, dtype=F64, generator=g) * 0.98 + 0.01
    return schedule.t_min + (schedule.t_max - schedule.t_min) * u


@pytest.mark.parametrize("schedule", ALL, ids=IDS)
def test_inverse_and_derivatives(schedule) -> None:
    t = interior_t(schedule).requires_grad_()
    sigma, s = schedule.sigma(t), schedule.s(t)
    assert torch.allclose(schedule.sigma_inv(sigma), t, rtol=1e-10, atol=1e-12)
    (dsigma,) = torch.autograd.grad(sigma.sum(), t)
    ds = torch.autograd.grad(s.sum(), t)[0] if s.requires_grad else torch.zeros_like(t)  # s = 1: constant
    assert torch.allclose(schedule.sigma_deriv(t), dsigma, rtol=1e-10)
    assert torch.allclose(schedule.s_deriv(t), ds, rtol=1e-10, atol=1e-14)
    assert torch.allclose(schedule.s_at_sigma(sigma), s, rtol=1e-12)
    assert (sigma.diff()[t.detach().diff() > 0] > 0).all()  # increasing in t


def test_vp_grid() -> None:
    vp = VPSchedule()
    assert vp.betas[0].item() == pytest.approx(1e-4, rel=1e-12) and vp.betas[-1].item() == pytest.approx(0.02)
    assert vp.betas[1].item() == pytest.approx(1e-4 + (0.02 - 1e-4) / 999, rel=1e-12)
    assert vp.alphas_cumprod[-1].item() == pytest.approx(4.0358e-5, rel=1e-3)  # DDPM's abar_T
    i = torch.arange(1000)
    assert torch.allclose(vp.s(i.to(F64) / 999) ** 2, vp.alphas_cumprod, rtol=1e-12)  # s = sqrt(abar)
    assert torch.equal(vp.c_noise(vp.sigmas), i.to(F64))  # exact DDPM timesteps on grid points
    assert torch.allclose(vp.sigma_inv(vp.sigmas) * 999, i.to(F64), rtol=0, atol=1e-12)
    assert vp.c_noise(torch.tensor([1e-5, 1e6], dtype=F64)).tolist() == [0.0, 999.0]  # clamped
    mid = (vp.sigmas[10] * vp.sigmas[11]).sqrt()  # log-sigma midpoint -> t index 10.5
    assert vp.c_noise(mid).item() == pytest.approx(10.5, abs=1e-9)
    assert vp.c_noise(vp.sigmas.float()).sub(i).abs().max() < 1e-3  # float32 sigmas: near-exact

    cos = VPSchedule("cosine")
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert cos.betas[0].item() == pytest.approx(1 - f(1e-3) / f(0), rel=1e-10)
    assert cos.betas[-1].item() == 0.999  # capped
    assert cos.alphas_cumprod[499].item() == pytest.approx(f(0.5) / f(0), rel=1e-8)


def test_closed_forms() -> None:
    ve, edm, flow = VESchedule(), EDMSchedule(), FlowSchedule()
    assert ve.sigma(0.5).item() == pytest.approx(math.sqrt(0.02 * 100))
    assert ve.c_noise(torch.tensor(2.0)).item() == 0.0  # ln(sigma / 2)
    assert (ve.sigma_min, ve.sigma_max, ve.s(0.3).item()) == (0.02, 100.0, 1.0)
    assert edm.c_noise(torch.tensor(math.e**4)).item() == pytest.approx(1.0)  # ln(sigma) / 4
    assert (edm.sigma_min, edm.sigma_max, edm.sigma(7.0).item()) == (0.002, 80.0, 7.0)
    t = torch.tensor(0.25, dtype=F64)
    assert flow.sigma(t).item() == pytest.approx(1 / 3) and flow.s(t).item() == 0.75
    assert flow.c_noise(flow.sigma(t)).item() == pytest.approx(999 * 0.25)
    assert flow.sigma_min == 0.0 and flow.sigma_max == pytest.approx(999)
    x0, eps = torch.randn(3, dtype=F64), torch.randn(3, dtype=F64)
    assert torch.allclose(flow.s(t) * (x0 + flow.sigma(t) * eps), (1 - t) * x0 + t * eps)  # x_t


def test_make_schedule() -> None:
    assert isinstance(make_schedule("vp", kind="cosine"), VPSchedule)
    assert make_schedule("edm", sigma_max=10.0).sigma_max == 10.0
    assert set(SCHEDULES) == {"vp", "ve", "edm", "flow"}
    with pytest.raises(UserError, match="unknown schedule 'ddpm'; choose one of: vp, ve, edm, flow"):
        make_schedule("ddpm")
    with pytest.raises(UserError, match="schedule 've' has no option 'rho'"):
        make_schedule("ve", rho=7)
    with pytest.raises(UserError, match="kind='sigmoid'"):
        VPSchedule("sigmoid")
    with pytest.raises(UserError, match="sigma_min=5, sigma_max=1: need 0 < sigma_min < sigma_max"):
        VESchedule(5, 1)
    with pytest.raises(UserError, match="t_max=1.0"):
        FlowSchedule(1.0)


# -- preconditioning -----------------------------------------------------------------------------


class EpsNet(nn.Module):
    """A fixed random eps-predictor of (x_t, timestep)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mlp = nn.Sequential(nn.Linear(3, 32), nn.SiLU(), nn.Linear(32, 2)).double()

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels=None) -> torch.Tensor:
        return self.mlp(torch.cat([x, c_noise[:, None] / 1000], 1))


class Reparam(nn.Module):
    """The eps network re-expressed as a network of another parameterization (inverting c_in, c_noise)."""

    def __init__(self, inner: Denoiser, parameterization: str) -> None:
        super().__init__()
        self.inner, self.parameterization = inner, parameterization

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, class_labels=None) -> torch.Tensor:
        sd, vp = self.inner.sigma_data, self.inner.schedule
        if self.parameterization == "edm":
            sigma = (4 * c_noise).exp()
            x = x_in * (sigma**2 + sd**2).sqrt()[:, None]
        else:
            sigma = vp.sigma(c_noise / 999)
            x = x_in / vp.s_at_sigma(sigma)[:, None]
        return to_param(self.parameterization, x, sigma, self.inner(x, sigma), sd)


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_same_network_any_parameterization(parameterization: str) -> None:
    vp = VPSchedule()
    eps_D = Denoiser(EpsNet(), vp, "eps")
    other = Denoiser(Reparam(eps_D, parameterization), vp, parameterization)
    x = torch.randn(64, 2, dtype=F64) * 3
    sigma = vp.sigmas[torch.randint(0, 1000, (64,))]
    assert torch.allclose(other(x, sigma), eps_D(x, sigma), rtol=1e-10, atol=1e-10)  # measured 2e-14
    D = eps_D(x, sigma)
    F = eps_D.net(x * vp.s_at_sigma(sigma)[:, None], vp.c_noise(sigma))
    assert torch.allclose(to_param("eps", x, sigma, D), F)
    assert torch.allclose(eps_from_D(x, sigma, D), to_param("eps", x, sigma, D))


def test_coefficients() -> None:
    sigma = torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    for p in PARAMETERIZATIONS:  # x0 = c_skip (x0 + sigma eps) + c_out F_target for the named target
        c_skip, c_out = c_skip_out(p, sigma, 0.5)
        x0, eps = torch.randn(3, dtype=F64), torch.randn(3, dtype=F64)
        alpha, sig_t = (1 + sigma**2).rsqrt(), sigma * (1 + sigma**2).rsqrt()
        target = {"eps": eps, "x0": x0, "v": alpha * eps - sig_t * x0, "velocity": eps - x0}.get(p)
        if target is not None:
            assert torch.allclose(c_skip * (x0 + sigma * eps) + c_out * target, x0), p
    c_skip, c_out = c_skip_out("edm", torch.tensor(0.5), 0.5)
    assert (c_skip.item(), c_out.item()) == pytest.approx((0.5, 0.5 / math.sqrt(2)))
    with pytest.raises(UserError, match="unknown parameterization 'score'; choose one of: eps, x0, v, velocity"):
        Denoiser(EpsNet(), VPSchedule(), "score")


def test_network_input_and_bf16_autocast() -> None:
    seen = {}

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x, c_noise, class_labels=None):
            seen.update(x=x, c_noise=c_noise)
            return self.lin(x)

    flow = FlowSchedule()
    D = Denoiser(Probe(), flow, "velocity")
    x = torch.randn(4, 2)
    sigma = torch.tensor(3.0)  # t = 0.75
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = D(x, sigma)
    assert out.dtype == torch.float32 and seen["x"].dtype == torch.float32
    assert torch.allclose(seen["x"], x / 4) and torch.allclose(seen["c_noise"], torch.full((4,), 999 * 0.75))
    edm = Denoiser(Probe(), EDMSchedule(), "edm")
    edm(x, torch.full((4,), 2.0))
    assert torch.allclose(seen["x"], x / math.sqrt(4.25))
    assert torch.allclose(seen["c_noise"], torch.full((4,), math.log(2) / 4))
    assert edm.sigma_data == 0.5


def test_classifier_free_guidance() -> None:
    calls = []

    def D(x, sigma, class_labels=None):
        calls.append(len(x))
        return x * 0 + class_labels[:, None].to(x.dtype)  # D_c = label, D_u = null label

    labels = torch.tensor([1, 2, 3])
    x, sigma = torch.zeros(3, 2), torch.ones(3)
    out = guided(D, labels, 3.0, null_label=10)(x, sigma)
    assert calls == [6]  # one batched call
    assert torch.equal(out[:, 0], 10 + 3.0 * (labels - 10.0))  # D_u + w (D_c - D_u)
    assert torch.equal(guided(D, labels, 1.0, 10)(x, sigma)[:, 0], labels.float()) and calls[-1] == 3
    assert guided(D, labels, 0.0, 10)(x, torch.tensor(1.0)).eq(10).all()


# -- losses ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("parameterization, schedule, sampler, weighting", [
    ("eps", VPSchedule(), "discrete", "snr"),
    ("v", VPSchedule("cosine"), "discrete", "v"),
    ("velocity", FlowSchedule(), "uniform", "velocity"),
    ("edm", EDMSchedule(), "lognormal", "edm"),
    ("x0", VESchedule(), "uniform", "unit"),
])
def test_loss_equals_network_target_loss(parameterization, schedule, sampler, weighting) -> None:
    net = EpsNet()
    D = Denoiser(net, schedule, parameterization)
    make = {"discrete": UniformDiscreteT, "uniform": UniformT, "lognormal": lambda s: LogNormalSigma()}
    sampler = make[sampler](schedule)
    x0 = torch.randn(256, 2, dtype=F64)
    loss = diffusion_loss(D, x0, sampler, weighting, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)  # replay: sigma first, then n
    sigma = sampler(256, dtype=F64, generator=g)
    n = torch.randn(x0.shape, dtype=F64, generator=g)
    x = x0 + sigma[:, None] * n
    _, _, c_in, c_noise = D.preconditioning(sigma)
    F = net(c_in[:, None] * x, c_noise)
    alpha, sig_t = (1 + sigma**2).rsqrt()[:, None], (sigma * (1 + sigma**2).rsqrt())[:, None]
    target = {
        "eps": n,  # DDPM L_simple
        "v": alpha * n - sig_t * x0,  # v = alpha eps - sigma_t x0
        "velocity": n - x0,  # flow matching: v = eps - x0
        "edm": to_param("edm", x, sigma, x0),  # EDM eq. 8: F_target = (x0 - c_skip x) / c_out
        "x0": x0,
    }[parameterization]
    assert torch.allclose(loss, (F - target).square().mean(1), rtol=1e-10, atol=1e-12)  # measured 5e-14
    assert loss.shape == (256,)


def test_sigma_samplers() -> None:
    vp = VPSchedule()
    g = torch.Generator().manual_seed(0)
    s = UniformDiscreteT(vp)(4000, generator=g)
    assert s.dtype == torch.float32 and torch.isin(s, vp.sigmas.float()).all()
    assert abs(vp.c_noise(s.double()).mean().item() - 499.5) < 15  # uniform over 0..999
    ln = LogNormalSigma(-1.2, 1.2)(20000, generator=g).log()
    assert abs(ln.mean().item() + 1.2) < 0.03 and abs(ln.std().item() - 1.2) < 0.03
    t = FlowSchedule().sigma_inv(UniformT(FlowSchedule())(20000, dtype=F64, generator=g))
    assert t.min() >= 1e-3 and t.max() <= 0.999 and abs(t.mean().item() - 0.5) < 0.01
    with pytest.raises(UserError, match="needs a VP schedule"):
        UniformDiscreteT(EDMSchedule())
    with pytest.raises(UserError, match="unknown loss weighting 'min_snr'; choose one of: snr, v, velocity, edm"):
        get_weighting("min_snr")
    sigma = torch.tensor([0.5, 2.0])
    assert torch.allclose(WEIGHTINGS["edm"](sigma, 0.5), (sigma**2 + 0.25) / (0.25 * sigma**2))
