"""Samplers: stateless functions over a descending tensor of sigmas ending in 0 (k-diffusion).

Every sampler is ``sample_xxx(denoiser, x, sigmas, *, class_labels=None, ...) -> Tensor`` and works
in sigma-space on x = x0 + sigma eps: start from ``x = sigmas[0] * eps`` (for exact VP parity
``x = x_T * sqrt(1 + sigma_max^2)``) and get x0 back. ``denoiser(x, sigma, [class_labels=...])``
is any D ~ E[x0 | x] (a :class:`~genlab.diffusion.denoiser.Denoiser`, a ``guided`` closure, a
closed form) and receives sigma as a (B,) tensor; ``class_labels`` is passed only when given.

Conventions:
- NFE: wrap the denoiser in :class:`NFECounter`; one call is one NFE (a batched guided call too).
  For n = len(sigmas) - 1 steps: euler, ddim, ddpm, dpmpp_2m use n; heun and edm use 2n - 1.
- Noise: stochastic samplers call ``noise()`` for fresh N(0, I) shaped like x (default
  ``torch.randn_like``); :class:`PerSampleNoise` makes results independent of batch size.
- Control flow uses ``sigmas.tolist()`` once, so a sampler never synchronises a GPU per step.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from genlab.diffusion.schedules import Schedule, VPSchedule
from genlab.errors import UserError

Noise = Callable[[], Tensor]
DenoiserFn = Callable[..., Tensor]


class NFECounter:
    """Wraps a denoiser and counts its calls in ``.nfe``."""

    def __init__(self, denoiser: DenoiserFn) -> None:
        self.denoiser, self.nfe = denoiser, 0

    def __call__(self, x: Tensor, sigma: Tensor, **kw: Any) -> Tensor:
        self.nfe += 1
        return self.denoiser(x, sigma, **kw)


class PerSampleNoise:
    """``noise()`` returns N(0, I) of shape (len(seeds), *shape), each row from its own generator.

    Sample i's stream depends only on ``seeds[i]``, so a batch of 4 equals two batches of 2 with
    the same seeds; rows are drawn on the CPU and moved (``genlab.nn.random``), so CPU and CUDA
    agree. Call it once for the initial noise, then pass it to a sampler as ``noise``.
    """

    def __init__(
        self, seeds: Sequence[int], shape: Sequence[int], device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.shape, self.device, self.dtype = tuple(shape), torch.device(device), dtype
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def __call__(self) -> Tensor:
        rows = [torch.randn(self.shape, generator=g, dtype=self.dtype) for g in self.generators]
        return torch.stack(rows).to(self.device)


def _denoise(denoiser: DenoiserFn, x: Tensor, sigma: float, class_labels: Tensor | None) -> Tensor:
    s = x.new_full((x.shape[0],), sigma)
    return denoiser(x, s) if class_labels is None else denoiser(x, s, class_labels=class_labels)


def sample_euler(
    denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, class_labels: Tensor | None = None
) -> Tensor:
    """Euler on the probability-flow ODE dx/dsigma = (x - D) / sigma (EDM eq. 3, s = 1, sigma = t)."""
    sig = sigmas.tolist()
    for s, s_next in zip(sig[:-1], sig[1:]):
        d = (x - _denoise(denoiser, x, s, class_labels)) / s
        x = x + (s_next - s) * d
    return x


def _heun_step(
    denoiser: DenoiserFn, x: Tensor, s: float, s_next: float, class_labels: Tensor | None
) -> Tensor:
    d = (x - _denoise(denoiser, x, s, class_labels)) / s  # d_i (EDM Alg. 1 line 4)
    x_next = x + (s_next - s) * d  # Euler step (line 5)
    if s_next == 0:
        return x_next
    d_next = (x_next - _denoise(denoiser, x_next, s_next, class_labels)) / s_next  # d'_i (line 7)
    return x + (s_next - s) * (d + d_next) / 2  # trapezoidal rule (line 8)


def sample_heun(
    denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, class_labels: Tensor | None = None
) -> Tensor:
    """EDM Algorithm 1: Heun's 2nd order method, plain Euler on the last step to sigma = 0."""
    sig = sigmas.tolist()
    for s, s_next in zip(sig[:-1], sig[1:]):
        x = _heun_step(denoiser, x, s, s_next, class_labels)
    return x


def sample_edm(
    denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, class_labels: Tensor | None = None,
    noise: Noise | None = None, S_churn: float = 0.0, S_tmin: float = 0.0, S_tmax: float = float("inf"),
    S_noise: float = 1.0,
) -> Tensor:
    """EDM Algorithm 2: stochastic churn (raise sigma by gamma, add noise), then a Heun step."""
    noise = noise or (lambda: torch.randn_like(x))
    sig = sigmas.tolist()
    n = len(sig) - 1
    for s, s_next in zip(sig[:-1], sig[1:]):
        gamma = min(S_churn / n, math.sqrt(2) - 1) if S_tmin <= s <= S_tmax else 0.0  # line 4
        s_hat = s * (1 + gamma)  # line 5
        if gamma > 0:
            x = x + math.sqrt(s_hat**2 - s**2) * S_noise * noise()  # line 6
        x = _heun_step(denoiser, x, s_hat, s_next, class_labels)
    return x


def sample_ddim(
    denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, class_labels: Tensor | None = None,
    noise: Noise | None = None, eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12 and 16) in sigma-space; eta = 0 is deterministic (= Euler).

    Dividing DDIM's x_{t-1} = sqrt(abar') x0 + sqrt(1 - abar' - s_t^2) eps + s_t z by sqrt(abar')
    gives x' = D + sigma_down eps_hat + sigma_up z with sigma_up = s_t / sqrt(abar').
    """
    if not 0 <= eta <= 1:
        raise UserError(f"eta={eta}: must be in [0, 1]")
    noise = noise or (lambda: torch.randn_like(x))
    sig = sigmas.tolist()
    for s, s_next in zip(sig[:-1], sig[1:]):
        denoised = _denoise(denoiser, x, s, class_labels)
        eps = (x - denoised) / s  # eps_theta(x_t)
        s_up = eta * math.sqrt(max(s_next**2 * (s**2 - s_next**2) / s**2, 0.0))  # sigma_t(eta) / sqrt(abar')
        s_down = math.sqrt(s_next**2 - s_up**2)  # "direction pointing to x_t"
        x = denoised + s_down * eps
        if s_up > 0:
            x = x + s_up * noise()
    return x


def sample_ddpm_ancestral(
    denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, class_labels: Tensor | None = None,
    noise: Noise | None = None,
) -> Tensor:
    """DDPM ancestral sampling from the posterior q(x' | x, x0 = D) with fixed_small variance.

    DDPM eq. 7 divided by sqrt(abar') is, for any grid, mu = r x + (1 - r) D and
    var = sigma'^2 (1 - r) with r = sigma'^2 / sigma^2 (beta_tilde; equals DDIM with eta = 1).
    """
    noise = noise or (lambda: torch.randn_like(x))
    sig = sigmas.tolist()
    for s, s_next in zip(sig[:-1], sig[1:]):
        denoised = _denoise(denoiser, x, s, class_labels)
        r = (s_next / s) ** 2
        x = r * x + (1 - r) * denoised  # posterior mean mu_tilde(x_t, x0)
        if s_next > 0:
            x = x + s_next * math.sqrt(1 - r) * noise()  # sqrt(beta_tilde) z
    return x


def sample_dpmpp_2m(
    denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, class_labels: Tensor | None = None
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) with lambda = -log sigma; first order at both ends."""
    sig = sigmas.tolist()
    old, h_last = None, 0.0
    for s, s_next in zip(sig[:-1], sig[1:]):
        denoised = _denoise(denoiser, x, s, class_labels)
        if s_next == 0:
            x = denoised
        else:
            h = math.log(s / s_next)  # h = lambda_next - lambda
            d = denoised
            if old is not None:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old  # D_i = (1 + 1/2r) x0_i - 1/2r x0_{i-1}
            x = (s_next / s) * x - math.expm1(-h) * d  # x' = sigma'/sigma x - (e^-h - 1) D_i
            h_last = h
        old = denoised
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "edm": sample_edm,
    "ddim": sample_ddim,
    "ddpm": sample_ddpm_ancestral,
    "dpmpp_2m": sample_dpmpp_2m,
}


def get_sampler(name: str) -> Callable[..., Tensor]:
    """The sampler called ``name``; an unknown name is a UserError listing the valid ones."""
    if name not in SAMPLERS:
        close = difflib.get_close_matches(name, SAMPLERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown sampler {name!r}{hint}; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


# -- sigma grids: n steps are n + 1 float64 sigmas, descending, the last one 0 -----------------


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"steps={steps!r}: must be an integer >= 1")


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def sigmas_karras(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: torch.device | str | None = None
) -> Tensor:
    """EDM eq. 5: sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0."""
    _check_steps(n)
    if not 0 < sigma_min < sigma_max:
        raise UserError(f"sigma_min={sigma_min}, sigma_max={sigma_max}: need 0 < sigma_min < sigma_max")
    if not rho > 0:
        raise UserError(f"rho={rho}: the Karras grid needs rho > 0 (EDM uses 7)")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64, device=device)
    max_inv, min_inv = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return _append_zero((max_inv + ramp * (min_inv - max_inv)) ** rho)


def ddpm_timesteps(T: int, steps: int, spacing: str = "leading") -> np.ndarray:
    """diffusers' timestep spacings (steps_offset=0), descending integer timesteps.

    ``trailing`` takes exactly ``steps`` values: diffusers' ``np.arange`` emits a spurious extra
    timestep -1 for some step counts (e.g. 61).
    """
    _check_steps(steps)
    if steps > T:
        raise UserError(f"steps={steps}: a DDPM grid has at most T={T} steps")
    if spacing == "leading":
        return (np.arange(steps) * (T // steps)).round()[::-1].astype(np.int64)
    if spacing == "trailing":
        return np.round(T - np.arange(steps) * (T / steps)).astype(np.int64) - 1
    if spacing == "linspace":
        return np.linspace(0, T - 1, steps).round()[::-1].astype(np.int64)
    raise UserError(f"unknown timestep spacing {spacing!r}; choose one of: {', '.join(SPACINGS)}")


SPACINGS: tuple[str, ...] = ("leading", "trailing", "linspace")


def sigmas_ddpm(schedule: Schedule, steps: int, spacing: str = "leading") -> Tensor:
    """The sigmas of a VP schedule at diffusers' DDPM / DDIM timesteps, then 0."""
    if not isinstance(schedule, VPSchedule):
        raise UserError(f"the ddpm grid needs a VP schedule, got {type(schedule).__name__}")
    ts = torch.from_numpy(ddpm_timesteps(schedule.T, steps, spacing).copy())
    return _append_zero(schedule.sigmas[ts])


def sigmas_uniform_t(schedule: Schedule, n: int) -> Tensor:
    """n steps uniform in t from t_max down to t_min, then 0 (flows reach sigma = 0 at t_min)."""
    _check_steps(n)
    if schedule.sigma_min == 0:
        return schedule.sigma(torch.linspace(schedule.t_max, schedule.t_min, n + 1, dtype=torch.float64))
    t = torch.linspace(schedule.t_max, schedule.t_min, n, dtype=torch.float64)
    return _append_zero(schedule.sigma(t))


GRIDS: tuple[str, ...] = ("karras", "ddpm", "uniform_t")
KARRAS_SIGMA_MAX = 80.0  # EDM's sigma_max (Karras et al. 2022, Table 1)


def make_sigmas(
    grid: str, steps: int, schedule: Schedule | None = None, *, sigma_min: float | None = None,
    sigma_max: float | None = None, rho: float = 7.0, spacing: str = "leading",
) -> Tensor:
    """A grid by name. Karras' sigma_min defaults to the schedule's and sigma_max to
    min(KARRAS_SIGMA_MAX, schedule's), as NVlabs/edm's ``generate.py`` samples VP (157) and VE
    (100) models: the highest noise levels add steps but no quality, and an eps-network's error
    there is multiplied by sigma (``benchmarks/results/diffusion_nfe.md``: the ``80`` rows)."""
    _check_steps(steps)
    if grid not in GRIDS:
        raise UserError(f"unknown sigma grid {grid!r}; choose one of: {', '.join(GRIDS)}")
    if grid == "karras":
        if schedule is not None:
            sigma_min = schedule.sigma_min if sigma_min is None else sigma_min
            sigma_max = min(KARRAS_SIGMA_MAX, schedule.sigma_max) if sigma_max is None else sigma_max
            if not sigma_min > 0:
                raise UserError(f"the karras grid needs sigma_min > 0, but the {type(schedule).__name__} starts at "
                                "sigma = 0; use grid=uniform_t (or grid=ddpm for VP)")
        if sigma_min is None or sigma_max is None:
            raise UserError("the karras grid needs a schedule or both sigma_min and sigma_max")
        return sigmas_karras(steps, sigma_min, sigma_max, rho)
    if schedule is None:
        raise UserError(f"the {grid} grid needs a schedule")
    if grid == "ddpm":
        return sigmas_ddpm(schedule, steps, spacing)
    return sigmas_uniform_t(schedule, steps)
