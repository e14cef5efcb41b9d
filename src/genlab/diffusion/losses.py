"""Denoising score matching in sigma-space: E[lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2].

One loss (EDM eq. 2 and 8) covers every family; the families differ only in where sigma comes
from (a :class:`SigmaSampler`) and in the weighting lambda(sigma). With lambda = 1 / c_out^2 of
the denoiser's parameterization the D-loss equals the familiar loss on the network's output:

=============  ============================  =====================================
weighting      lambda(sigma)                 equals
=============  ============================  =====================================
``snr``        1 / sigma^2                   ||eps_hat - eps||^2 (DDPM L_simple)
``v``          1 + 1 / sigma^2               ||v_hat - v||^2 (VP v-prediction)
``velocity``   ((1 + sigma) / sigma)^2       ||v_hat - (eps - x0)||^2 (flow matching)
``edm``        (sigma^2 + sd^2)/(sigma sd)^2 ||F - F_target||^2 (EDM)
``unit``       1                             ||x0_hat - x0||^2
=============  ============================  =====================================
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import Tensor

from genlab.diffusion.denoiser import Denoiser, append_dims
from genlab.diffusion.schedules import Schedule, VPSchedule
from genlab.errors import UserError
from genlab.nn.random import Source, rand, randint, randn


class SigmaSampler(Protocol):
    """Draws n training noise levels: ``sampler(n, device=..., dtype=..., generator=...) -> (n,)``.

    ``generator`` is a random source of ``genlab.nn.random`` (None, a CPU generator, or the
    trainer's ``RowRandom``), so a seed gives the same sigmas on every device and world size.
    """

    def __call__(
        self, n: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
        generator: Source = None,
    ) -> Tensor: ...


class UniformDiscreteT:
    """DDPM (Ho et al. 2020, Alg. 1): timestep i ~ U{0, ..., T-1}, sigma = sigma_i."""

    def __init__(self, schedule: VPSchedule) -> None:
        if not isinstance(schedule, VPSchedule):
            raise UserError(f"uniform discrete t needs a VP schedule, got {type(schedule).__name__}")
        self.schedule = schedule

    def __call__(
        self, n: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
        generator: Source = None,
    ) -> Tensor:
        i = randint(self.schedule.T, (n,), generator, device or "cpu")
        return self.schedule.log_sigmas(i.device)[i].exp().to(dtype)


class UniformT:
    """Continuous t ~ U(t_min + t_eps, t_max), sigma = sigma(t) (Song et al. 2021; flow matching).

    ``t_eps`` keeps sigma away from 0, where the D-loss is 0 * inf for flows.
    """

    def __init__(self, schedule: Schedule, t_eps: float = 1e-3) -> None:
        if not 0 <= t_eps < schedule.t_max - schedule.t_min:
            raise UserError(f"t_eps={t_eps}: must be in [0, {schedule.t_max - schedule.t_min})")
        self.schedule, self.t_eps = schedule, t_eps

    def __call__(
        self, n: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
        generator: Source = None,
    ) -> Tensor:
        lo, hi = self.schedule.t_min + self.t_eps, self.schedule.t_max
        u = rand((n,), generator, device or "cpu", torch.float64)
        return self.schedule.sigma(lo + (hi - lo) * u).to(dtype)


class LogNormalSigma:
    """EDM (Table 1, p_train): ln sigma ~ N(P_mean, P_std^2)."""

    def __init__(self, P_mean: float = -1.2, P_std: float = 1.2) -> None:
        if P_std <= 0:
            raise UserError(f"P_std={P_std}: must be > 0")
        self.P_mean, self.P_std = P_mean, P_std

    def __call__(
        self, n: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
        generator: Source = None,
    ) -> Tensor:
        z = randn((n,), generator, device or "cpu", dtype)
        return (z * self.P_std + self.P_mean).exp()  # ln sigma = P_mean + P_std z


Weighting = Callable[[Tensor, float], Tensor]

WEIGHTINGS: dict[str, Weighting] = {
    "snr": lambda sigma, sd: sigma**-2,  # SNR = abar / (1 - abar) = 1 / sigma^2
    "v": lambda sigma, sd: 1 + sigma**-2,  # SNR + 1
    "velocity": lambda sigma, sd: ((1 + sigma) / sigma) ** 2,  # 1 / c_out^2 of velocity
    "edm": lambda sigma, sd: (sigma**2 + sd**2) / (sigma * sd) ** 2,  # EDM Table 1 lambda(sigma)
    "unit": lambda sigma, sd: torch.ones_like(sigma),
}


def get_weighting(name: str) -> Weighting:
    """The weighting lambda(sigma, sigma_data) called ``name``."""
    if name not in WEIGHTINGS:
        raise UserError(f"unknown loss weighting {name!r}; choose one of: {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name]


def diffusion_loss(
    denoiser: Denoiser, x0: Tensor, sigma_sampler: SigmaSampler, weighting: str | Weighting,
    class_labels: Tensor | None = None, generator: Source = None, noise: Tensor | None = None,
) -> Tensor:
    """Per-example lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2, mean over dims (EDM eq. 2, 8).

    sigma is drawn first, then n, both from the random source ``generator`` when given. ``noise`` fixes n
    instead (reflow: the noise paired with x0 by an ODE, Liu et al. 2022).
    """
    weight = get_weighting(weighting) if isinstance(weighting, str) else weighting
    dtype = torch.promote_types(x0.dtype, torch.float32)
    x0 = x0.to(dtype)
    sigma = sigma_sampler(x0.shape[0], device=x0.device, dtype=dtype, generator=generator)
    if noise is not None and noise.shape != x0.shape:
        raise UserError(f"noise of shape {tuple(noise.shape)} for x0 of shape {tuple(x0.shape)}: they must match")
    n = randn(tuple(x0.shape), generator, x0.device, dtype) if noise is None else noise.to(dtype)
    D = denoiser(x0 + append_dims(sigma, x0) * n, sigma, class_labels=class_labels)
    return weight(sigma, denoiser.sigma_data) * (D - x0).square().flatten(1).mean(1)
