"""Preconditioning: any network becomes a denoiser D(x, sigma) ~ E[x0 | x] (EDM eq. 7).

``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` with x = x0 + sigma eps in sigma-space. The
parameterization says what the network F predicts, and fixes c_skip and c_out:

============  =======================  ===============================  ======================================
name          c_skip                   c_out                            F predicts
============  =======================  ===============================  ======================================
``eps``       1                        -sigma                           eps (DDPM)
``x0``        0                        1                                x0
``v``         1 / (sigma^2 + 1)        -sigma / sqrt(sigma^2 + 1)       alpha eps - sigma_t x0 (Salimans & Ho)
``velocity``  1 / (1 + sigma)          -sigma / (1 + sigma)             eps - x0 (flow matching, ``flow``)
``edm``       sd^2 / (sigma^2 + sd^2)  sigma sd / sqrt(sigma^2 + sd^2)  EDM's F (Table 1)
============  =======================  ===============================  ======================================

For every parameterization but ``edm`` the network sees its schedule's x_t: c_in = s(t(sigma))
and c_noise = ``schedule.c_noise(sigma)``; ``edm`` uses EDM's c_in and c_noise = ln(sigma) / 4.
The network's contract is ``net(x_in, c_noise, class_labels=None) -> F`` with c_noise of shape (B,).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from genlab.diffusion.schedules import Schedule
from genlab.errors import UserError

_SKIP_OUT: dict[str, Callable[[Tensor, float], tuple[Tensor, Tensor]]] = {
    "eps": lambda s, sd: (torch.ones_like(s), -s),  # x0 = x - sigma eps
    "x0": lambda s, sd: (torch.zeros_like(s), torch.ones_like(s)),  # x0 = F
    "v": lambda s, sd: (1 / (s**2 + 1), -s * (s**2 + 1).rsqrt()),  # x0 = alpha x_t - sigma_t v
    "velocity": lambda s, sd: (1 / (1 + s), -s / (1 + s)),  # x0 = x_t - t v; x_t = x/(1+s), t = s/(1+s)
    "edm": lambda s, sd: (sd**2 / (s**2 + sd**2), s * sd * (s**2 + sd**2).rsqrt()),  # EDM Table 1
}
PARAMETERIZATIONS: tuple[str, ...] = tuple(_SKIP_OUT)


def _check(parameterization: str) -> None:
    if parameterization not in _SKIP_OUT:
        raise UserError(
            f"unknown parameterization {parameterization!r}; choose one of: {', '.join(PARAMETERIZATIONS)}"
        )


def append_dims(v: Tensor | float, x: Tensor) -> Tensor:
    """A scalar or per-example (B,) value shaped to broadcast against x of shape (B, ...)."""
    v = torch.as_tensor(v, device=x.device)
    return v.reshape(-1, *([1] * (x.ndim - 1))) if v.ndim else v


def c_skip_out(parameterization: str, sigma: Tensor, sigma_data: float = 0.5) -> tuple[Tensor, Tensor]:
    """(c_skip, c_out) of a parameterization at noise level sigma."""
    _check(parameterization)
    return _SKIP_OUT[parameterization](sigma, sigma_data)


def eps_from_D(x: Tensor, sigma: Tensor | float, D: Tensor) -> Tensor:
    """The noise prediction implied by a denoised estimate: eps_hat = (x - D) / sigma."""
    return (x - D) / append_dims(sigma, x)


def to_param(
    parameterization: str, x: Tensor, sigma: Tensor | float, D: Tensor, sigma_data: float = 0.5
) -> Tensor:
    """What a network of ``parameterization`` outputs to produce D: F = (D - c_skip x) / c_out."""
    c_skip, c_out = c_skip_out(parameterization, append_dims(sigma, x).to(x.dtype), sigma_data)
    return (D - c_skip * x) / c_out


class Denoiser(nn.Module):
    """D(x, sigma, class_labels) = c_skip x + c_out F(c_in x, c_noise(sigma))  (EDM eq. 7).

    The preconditioning runs in float32 (float64 for float64 inputs) even when the network runs
    under bf16 autocast; F is cast back before it is combined with x. ``sigma_data`` defaults to the
    schedule's (EDM) or 0.5.
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: Schedule,
        parameterization: str = "eps",
        sigma_data: float | None = None,
    ) -> None:
        super().__init__()
        _check(parameterization)
        self.net, self.schedule, self.parameterization = net, schedule, parameterization
        if sigma_data is None:
            sigma_data = getattr(schedule, "sigma_data", 0.5)
        self.sigma_data = float(sigma_data)

    def preconditioning(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) for per-example sigma of shape (B,)."""
        sd = self.sigma_data
        c_skip, c_out = c_skip_out(self.parameterization, sigma, sd)
        if self.parameterization == "edm":
            return c_skip, c_out, (sigma**2 + sd**2).rsqrt(), sigma.log() / 4  # EDM Table 1
        return c_skip, c_out, self.schedule.s_at_sigma(sigma), self.schedule.c_noise(sigma)

    def forward(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        x = x.to(dtype)
        sigma = torch.as_tensor(sigma, dtype=dtype, device=x.device).reshape(-1).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = self.preconditioning(sigma)
        F = self.net(append_dims(c_in, x) * x, c_noise, class_labels=class_labels)
        return append_dims(c_skip, x) * x + append_dims(c_out, x) * F.to(dtype)


def guided(
    denoiser: Callable[..., Tensor], class_labels: Tensor, scale: float, null_label: int
) -> Callable[[Tensor, Tensor], Tensor]:
    """Classifier-free guidance: D(x, sigma) = D_u + scale (D_c - D_u)  (Ho & Salimans 2022, eq. 6).

    Conditional and unconditional (``null_label``, i.e. ``num_classes``) run in one batched call,
    so the result is one network evaluation of batch 2B. ``scale == 1`` is the plain conditional D.
    """
    if scale == 1:
        return lambda x, sigma: denoiser(x, sigma, class_labels=class_labels)
    labels = torch.cat([class_labels, torch.full_like(class_labels, null_label)])

    def D(x: Tensor, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0])
        d_c, d_u = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), class_labels=labels).chunk(2)
        return d_u + scale * (d_c - d_u)

    return D


def clipped(denoiser: Callable[..., Tensor], low: float = -1.0, high: float = 1.0) -> Callable[..., Tensor]:
    """D clamped to the data range: the predicted x0 clipped as in DDPM's sampler (Ho et al. 2020's
    ``clip_denoised``) and diffusers' ``clip_sample``. Samplers that derive eps from D (DDIM) then
    use the eps of the clipped x0 (diffusers' ``use_clipped_model_output=True``, as GLIDE)."""
    return lambda x, sigma, **kw: denoiser(x, sigma, **kw).clamp(low, high)
