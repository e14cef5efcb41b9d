"""Noise schedules: every diffusion model is x_t = s(t) (x0 + sigma(t) eps)  (EDM eq. 4, Table 1).

Samplers work in sigma-space on x = x_t / s(t) = x0 + sigma eps (k-diffusion), so a schedule only
says which sigmas a model is trained on, what input scale s and noise conditioning ``c_noise`` its
network sees, and where sigma grids start and end. Time t lives in ``[t_min, t_max]``;
``sigma_min = sigma(t_min)`` and ``sigma_max = sigma(t_max)``. Methods take a tensor (or a float)
and return a tensor of the same dtype; internal tables are float64.

=========  =====================  ===============  ==================  ====================
name       sigma(t)               s(t)             t range             c_noise(sigma)
=========  =====================  ===============  ==================  ====================
``vp``     DDPM grid, log-interp  1/sqrt(1+sig^2)  [0, 1]              (T-1) t  (0..999)
``ve``     smin (smax/smin)^t     1                [0, 1]              ln(sigma / 2)
``edm``    t                      1                [smin, smax]        ln(sigma) / 4
``flow``   t / (1-t)              1 - t            [0, t_max=0.999]    999 t
=========  =====================  ===============  ==================  ====================
"""

from __future__ import annotations

import inspect
import math
from typing import ClassVar

import torch
from torch import Tensor

from genlab.errors import UserError


def _tensor(v: Tensor | float) -> Tensor:
    return v if isinstance(v, Tensor) else torch.tensor(float(v), dtype=torch.float64)


class Schedule:
    """Base class: sigma(t), s(t), their derivatives, the inverse t(sigma) and c_noise(sigma)."""

    name: ClassVar[str] = ""
    t_min: float = 0.0
    t_max: float = 1.0

    def sigma(self, t: Tensor | float) -> Tensor:
        raise NotImplementedError

    def s(self, t: Tensor | float) -> Tensor:
        t = _tensor(t)
        return torch.ones_like(t)

    def sigma_inv(self, sigma: Tensor | float) -> Tensor:
        raise NotImplementedError

    def sigma_deriv(self, t: Tensor | float) -> Tensor:
        raise NotImplementedError

    def s_deriv(self, t: Tensor | float) -> Tensor:
        t = _tensor(t)
        return torch.zeros_like(t)

    def s_at_sigma(self, sigma: Tensor | float) -> Tensor:
        """s(t(sigma)): the factor that maps sigma-space x to the network's training input x_t."""
        return self.s(self.sigma_inv(sigma))

    def c_noise(self, sigma: Tensor | float) -> Tensor:
        raise NotImplementedError

    @property
    def sigma_min(self) -> float:
        return float(self.sigma(self.t_min))

    @property
    def sigma_max(self) -> float:
        return float(self.sigma(self.t_max))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in inspect.signature(type(self)).parameters)
        return f"{type(self).__name__}({args})"


class VPSchedule(Schedule):
    """DDPM / DDIM variance preserving: the discrete T-step grid, continuous in log-sigma.

    ``kind="linear"`` is DDPM's beta_t = linspace(beta_start, beta_end, T); ``"cosine"`` is
    Nichol & Dhariwal's alpha_bar with betas capped at 0.999 (diffusers' ``squaredcos_cap_v2``).
    Grid point i (the DDPM timestep) is t = i / (T - 1); between grid points log sigma is linear
    in t (k-diffusion's DiscreteSchedule), so ``sigma_inv`` is exact on grid points and
    ``c_noise(sigma_i) == i``.
    """

    name = "vp"

    def __init__(
        self, kind: str = "linear", T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> None:
        if kind not in ("linear", "cosine"):
            raise UserError(f"VP schedule kind={kind!r}: choose one of linear, cosine")
        if T < 2:
            raise UserError(f"T={T}: a VP schedule needs at least 2 timesteps")
        if kind == "linear" and not 0 < beta_start < beta_end < 1:
            raise UserError(
                f"beta_start={beta_start}, beta_end={beta_end}: need 0 < beta_start < beta_end < 1"
            )
        self.kind, self.T, self.beta_start, self.beta_end = kind, T, beta_start, beta_end
        if kind == "linear":
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)  # DDPM sec. 4
        else:
            u = torch.arange(T + 1, dtype=torch.float64) / T
            f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # alpha_bar(t), Nichol & Dhariwal eq. 17
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)  # beta_t = 1 - abar_t / abar_{t-1}
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)  # abar_t
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()  # sigma_t (EDM Table 1)
        self._log_sigmas: dict[torch.device, Tensor] = {}

    def log_sigmas(self, device: torch.device | str | None = None) -> Tensor:
        """The float64 table of log sigma_i, cached per device."""
        device = torch.device(device or "cpu")
        if device not in self._log_sigmas:
            self._log_sigmas[device] = self.sigmas.log().to(device)
        return self._log_sigmas[device]

    def _segment(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ls = self.log_sigmas(t.device)
        idx = t.to(torch.float64) * (self.T - 1)
        lo = idx.floor().clamp(0, self.T - 2)
        i = lo.long()
        return ls[i], ls[i + 1] - ls[i], idx - lo

    def sigma(self, t: Tensor | float) -> Tensor:
        t = _tensor(t)
        ls_lo, slope, w = self._segment(t)
        return (ls_lo + w * slope).exp().to(t.dtype)

    def sigma_deriv(self, t: Tensor | float) -> Tensor:
        t = _tensor(t)
        ls_lo, slope, w = self._segment(t)
        return ((ls_lo + w * slope).exp() * slope * (self.T - 1)).to(t.dtype)

    def index(self, sigma: Tensor | float) -> Tensor:
        """The fractional DDPM timestep of sigma (exact integers on the grid), clamped to [0, T-1]."""
        sigma = _tensor(sigma)
        ls = self.log_sigmas(sigma.device)
        x = sigma.to(torch.float64).log().reshape(-1)
        lo = (torch.searchsorted(ls, x, right=True) - 1).clamp(0, self.T - 2)
        w = ((x - ls[lo]) / (ls[lo + 1] - ls[lo])).clamp(0, 1)
        return (lo + w).reshape(sigma.shape).to(sigma.dtype)

    def sigma_inv(self, sigma: Tensor | float) -> Tensor:
        return self.index(sigma) / (self.T - 1)

    def s(self, t: Tensor | float) -> Tensor:
        return self.s_at_sigma(self.sigma(t))

    def s_deriv(self, t: Tensor | float) -> Tensor:
        sigma = self.sigma(t)
        return -sigma * self.sigma_deriv(t) * (1 + sigma**2) ** -1.5  # d/dt (1 + sigma^2)^(-1/2)

    def s_at_sigma(self, sigma: Tensor | float) -> Tensor:
        return (1 + _tensor(sigma) ** 2).rsqrt()  # s = sqrt(abar) = 1 / sqrt(1 + sigma^2)

    def c_noise(self, sigma: Tensor | float) -> Tensor:
        return self.index(sigma)  # (M - 1) t, EDM Table 1 (VP)


class VESchedule(Schedule):
    """Variance exploding (Song et al. 2021): sigma(t) = sigma_min (sigma_max / sigma_min)^t, s = 1."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.02, sigma_max: float = 100.0) -> None:
        if not 0 < sigma_min < sigma_max:
            raise UserError(f"sigma_min={sigma_min}, sigma_max={sigma_max}: need 0 < sigma_min < sigma_max")
        self._sigma_min, self._sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(sigma_max / sigma_min)

    @property
    def sigma_min(self) -> float:
        return self._sigma_min

    @property
    def sigma_max(self) -> float:
        return self._sigma_max

    def sigma(self, t: Tensor | float) -> Tensor:
        return self._sigma_min * (self._log_ratio * _tensor(t)).exp()  # sigma_min (sigma_max/sigma_min)^t

    def sigma_deriv(self, t: Tensor | float) -> Tensor:
        return self.sigma(t) * self._log_ratio

    def sigma_inv(self, sigma: Tensor | float) -> Tensor:
        return (_tensor(sigma) / self._sigma_min).log() / self._log_ratio

    def c_noise(self, sigma: Tensor | float) -> Tensor:
        return (_tensor(sigma) / 2).log()  # ln(sigma / 2), EDM Table 1 (VE)


class EDMSchedule(Schedule):
    """EDM (Karras et al. 2022): sigma(t) = t, s = 1, t in [sigma_min, sigma_max]."""

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5) -> None:
        if not 0 < sigma_min < sigma_max:
            raise UserError(f"sigma_min={sigma_min}, sigma_max={sigma_max}: need 0 < sigma_min < sigma_max")
        if sigma_data <= 0:
            raise UserError(f"sigma_data={sigma_data}: must be > 0")
        self.t_min, self.t_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)

    def sigma(self, t: Tensor | float) -> Tensor:
        return _tensor(t).clone()

    def sigma_deriv(self, t: Tensor | float) -> Tensor:
        return torch.ones_like(_tensor(t))

    def sigma_inv(self, sigma: Tensor | float) -> Tensor:
        return _tensor(sigma).clone()

    def c_noise(self, sigma: Tensor | float) -> Tensor:
        return _tensor(sigma).log() / 4  # ln(sigma) / 4, EDM Table 1


class FlowSchedule(Schedule):
    """Rectified flow / flow matching: x_t = (1 - t) x0 + t eps, i.e. s = 1 - t, sigma = t / (1 - t).

    t = 1 is sigma = inf, so sampling starts at ``t_max`` (default 0.999, sigma_max = 999): pure
    noise x_t = eps there is off by (1 - t_max) x0, below any sampler's error. ``sigma_min`` is 0
    (t = 0), so the uniform-t grid ends exactly at sigma = 0. The network sees c_noise = 999 t,
    the same 0..999 range as VP timesteps, so one time embedding serves both.
    """

    name = "flow"

    def __init__(self, t_max: float = 0.999) -> None:
        if not 0 < t_max < 1:
            raise UserError(f"t_max={t_max}: must be in (0, 1)")
        self.t_min, self.t_max = 0.0, float(t_max)

    def sigma(self, t: Tensor | float) -> Tensor:
        t = _tensor(t)
        return t / (1 - t)  # sigma = t / (1 - t)

    def s(self, t: Tensor | float) -> Tensor:
        return 1 - _tensor(t)  # s = 1 - t

    def sigma_deriv(self, t: Tensor | float) -> Tensor:
        return (1 - _tensor(t)) ** -2

    def s_deriv(self, t: Tensor | float) -> Tensor:
        return -torch.ones_like(_tensor(t))

    def sigma_inv(self, sigma: Tensor | float) -> Tensor:
        sigma = _tensor(sigma)
        return sigma / (1 + sigma)  # t = sigma / (1 + sigma)

    def s_at_sigma(self, sigma: Tensor | float) -> Tensor:
        return 1 / (1 + _tensor(sigma))

    def c_noise(self, sigma: Tensor | float) -> Tensor:
        return 999 * self.sigma_inv(sigma)


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (VPSchedule, VESchedule, EDMSchedule, FlowSchedule)
}


def make_schedule(name: str, **kw: float | int | str) -> Schedule:
    """Build a schedule by name: ``make_schedule("vp", kind="cosine")``."""
    if name not in SCHEDULES:
        raise UserError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    cls = SCHEDULES[name]
    params = inspect.signature(cls).parameters
    unknown = sorted(set(kw) - set(params))
    if unknown:
        raise UserError(
            f"schedule {name!r} has no option {unknown[0]!r}; valid options: {', '.join(params) or 'none'}"
        )
    return cls(**kw)
