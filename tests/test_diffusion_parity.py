"""Parity with diffusers' schedulers: same model, same settings, same numbers (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genlab.diffusion.denoiser import Denoiser, clipped
from genlab.diffusion.samplers import (
    ddpm_timesteps,
    sample_ddim,
    sample_ddpm_ancestral,
    sample_euler,
    sample_heun,
    sigmas_ddpm,
    sigmas_karras,
)
from genlab.diffusion.schedules import VPSchedule

diffusers = pytest.importorskip("diffusers")

F64 = torch.float64
BETAS = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


class EpsNet(nn.Module):
    """A fixed eps-model eps(x_t, t) shared by both libraries: the exact noise predictor of
    x0 ~ N(0, 0.25 I) plus a small random MLP of (x_t, t), so trajectories stay O(1)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.randn(5, 64, dtype=F64, generator=g) / 2
        self.w2 = torch.randn(64, 4, dtype=F64, generator=g) / 80
        self.abar = VPSchedule().alphas_cumprod

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, class_labels=None) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=F64).expand(x.shape[0])[:, None]
        a = self.abar[t.round().long()]
        exact = (1 - a).sqrt() * x / (0.25 * a + 1 - a)  # E[eps | x_t]
        return exact + torch.tanh(torch.cat([x, t / 1000], 1) @ self.w1) @ self.w2


NET = EpsNet()


pytestmark = pytest.mark.usefixtures("one_thread")


def use_float64_table(sched, vp: VPSchedule) -> None:
    """diffusers keeps abar in float32 (our float64 differs by ~3e-7); with our table parity is ~1e-15."""
    sched.alphas_cumprod = vp.alphas_cumprod
    sched.one = sched.final_alpha_cumprod = torch.tensor(1.0, dtype=F64)


# measured: <= 3e-6 and <= 3e-15 (1e-10 for trailing DDPM: diffusers' variance clamp 1e-20 adds noise at t=99)
TABLES = [("float32", 1e-5), ("float64", 1e-9)]


def start(n: int = 16) -> torch.Tensor:
    return torch.randn(n, 4, dtype=F64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_betas_and_alphas_cumprod(kind: str) -> None:
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=BETAS[kind])
    ours = VPSchedule(kind)
    assert (ours.betas - ref.betas.double()).abs().max() < 1e-6
    assert (ours.alphas_cumprod - ref.alphas_cumprod.double()).abs().max() < 1e-6


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("table, tol", TABLES)
@pytest.mark.parametrize("spacing, steps", [("leading", 10), ("leading", 30), ("leading", 50), ("trailing", 10),
                                            ("trailing", 25), ("trailing", 50)])
def test_ddim_eta0_trajectory(spacing: str, steps: int, table: str, tol: float, clip: bool) -> None:
    """Every intermediate x_t and the final x0. (diffusers' DDIM steps to t - T // steps, which is
    the next grid timestep for leading spacing and for trailing when steps divides T.) Clipped: the
    clipped x0 with its own eps, diffusers' ``use_clipped_model_output=True``."""
    sched = diffusers.DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", set_alpha_to_one=True, steps_offset=0,
        clip_sample=clip, prediction_type="epsilon", timestep_spacing=spacing,
    )
    sched.set_timesteps(steps)
    vp = VPSchedule()
    if table == "float64":
        use_float64_table(sched, vp)
    sigmas = sigmas_ddpm(vp, steps, spacing)
    assert sched.timesteps.tolist() == ddpm_timesteps(1000, steps, spacing).tolist()
    D = Denoiser(NET, vp, "eps")
    x_t = start()  # x_T ~ N(0, I)
    x = x_t / vp.s_at_sigma(sigmas[0])  # sigma-space: x = x_T / sqrt(abar_T)
    plain = sample_ddim(D, x, sigmas)
    for i, t in enumerate(sched.timesteps):
        x_t = sched.step(NET(x_t, t), t, x_t, eta=0.0, use_clipped_model_output=clip).prev_sample
        x = sample_ddim(clipped(D) if clip else D, x, sigmas[i : i + 2])
        assert (x * vp.s_at_sigma(sigmas[i + 1]) - x_t).abs().max() < tol, i  # x_t = s x
    assert (x - x_t).abs().max() < tol
    assert ((x - plain).abs().max() > 1e-3) == clip  # the clip is engaged


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("table, tol", TABLES)
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddpm_ancestral_same_noise(spacing: str, table: str, tol: float, clip: bool) -> None:
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip,
                                    variance_type="fixed_small", timestep_spacing=spacing)
    sched.set_timesteps(40)
    vp = VPSchedule()
    if table == "float64":
        use_float64_table(sched, vp)
    sigmas = sigmas_ddpm(vp, 40, spacing)
    x_t = start()
    g = torch.Generator().manual_seed(2)
    for t in sched.timesteps:
        x_t = sched.step(NET(x_t, t), t, x_t, generator=g).prev_sample
    D = Denoiser(NET, vp, "eps")
    x = {}
    for on in (False, True):
        g = torch.Generator().manual_seed(2)
        x[on] = sample_ddpm_ancestral(clipped(D) if on else D, start() / vp.s_at_sigma(sigmas[0]), sigmas,
                                      noise=lambda: torch.randn(16, 4, dtype=F64, generator=g))
    assert (x[clip] - x_t).abs().max() < tol
    assert (x[True] - x[False]).abs().max() > 1e-3  # the clip is engaged


def run_discrete(sched, x: torch.Tensor) -> torch.Tensor:
    for t in sched.timesteps:
        x = sched.step(NET(sched.scale_model_input(x, t), t), t, x).prev_sample
    return x


@pytest.mark.parametrize("name", ["euler", "heun"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_euler_heun_discrete(name: str, spacing: str) -> None:
    cls = {"euler": diffusers.EulerDiscreteScheduler, "heun": diffusers.HeunDiscreteScheduler}[name]
    sched = cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                prediction_type="epsilon", timestep_spacing=spacing)
    sched.set_timesteps(25)
    sigmas = sched.sigmas.double()
    if name == "heun":  # diffusers repeats each inner sigma: [s0, s1, s1, ..., s24, s24, 0]
        sigmas = torch.cat([sigmas[::2], sigmas[-1:]])
    assert len(sigmas) == 26 and sigmas[-1] == 0
    x = start() * sigmas[0]
    ours = {"euler": sample_euler, "heun": sample_heun}[name](Denoiser(NET, VPSchedule(), "eps"), x, sigmas)
    assert (ours - run_discrete(sched, x)).abs().max() < 1e-5


def test_karras_grid_matches_diffusers() -> None:
    """Same formula (EDM eq. 5) given the same end points; diffusers' own float32 sigma_min is off by
    ~3e-5 relative (1 - abar_0 = 1e-4 cancels in float32), so its end points are passed in."""
    sched = diffusers.EulerDiscreteScheduler(beta_schedule="linear", use_karras_sigmas=True)
    sched.set_timesteps(18)
    ref = sched.sigmas.double()
    ours = sigmas_karras(18, ref[-2].item(), ref[0].item())
    assert torch.allclose(ours, ref, rtol=1e-6)
    vp = VPSchedule()
    assert torch.allclose(sigmas_karras(18, vp.sigma_min, vp.sigma_max), ref, rtol=1e-4)
