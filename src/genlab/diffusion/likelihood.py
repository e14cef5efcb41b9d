"""Log-likelihood by the probability-flow ODE (Song et al. 2021, appendix D; EDM eq. 3 with s = 1).

In sigma-space x = x0 + sigma eps the ODE is dx/dsigma = f(x, sigma) = (x - D(x, sigma)) / sigma and the
instantaneous change of variables gives d log p(x(sigma)) / dsigma = -div_x f, hence
    log p_{sigma_min}(x) = log N(x(sigma_max); 0, sigma_max^2 I) + int_{sigma_min}^{sigma_max} div_x f dsigma.
This is EDM's ODE (eq. 3, s = 1, sigma = t), integrated jointly with the log-density from the data
side; for an ideal denoiser sigma div_x f = dim - div_x D lies in [0, dim].
Two approximations, both small for sensible arguments: the data point is taken as x(sigma_min), so
the result is the log-density of the data convolved with N(0, sigma_min^2 I) (a shift of order
dim * sigma_min^2 / s_data^2 nats); and p_{sigma_max} is taken as N(0, sigma_max^2 I), exact up to terms
of order |mean| / sigma_max + dim * var_data / sigma_max^2.

Integrator: classical RK4 in sigma on a log-spaced grid (4 NFE per step). The error comes mostly from
x(sigma_max), which grows like sigma (the prior term sees its relative error); with the default 64
steps Gaussian log-densities from sigma = 0.002 to 80 come out within 2e-4 nats per point in 2-5
dimensions (1.5e-3 up to sigma_max = 1e4); Heun needs over 10x the NFE for the same error.

Divergence: exact (trace of the Jacobian from one backward pass through ``dim`` stacked copies of the
batch, probing with the basis vectors) when dim <= 16, else Hutchinson's estimator eps^T (df/dx) eps
with K probes, fixed along the trajectory (Grathwohl et al. 2019) and batched as K stacked copies:
Rademacher (default; no error from the Jacobian's diagonal) or Gaussian (several times noisier).
Either way each stage is one denoiser call (one NFE) on a batch of dim * B or K * B, so the denoiser
must treat batch elements independently (eval mode). The estimate is unbiased: the trajectory does
not depend on the probes and the log-density update is linear in them. No graph is kept across steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from genlab.errors import UserError
from genlab.metrics.likelihood import bits_per_dim, dequantize, discrete_log_prob
from genlab.nn.random import rand, randn

DenoiserFn = Callable[..., Tensor]
EXACT_MAX_DIM = 16
PROBES: tuple[str, ...] = ("rademacher", "gaussian")


@dataclass
class LikelihoodResult:
    """Per-example log-likelihood in nats (B,), its bits/dim (B,), and the denoiser calls used."""

    log_prob: Tensor
    bits_per_dim: Tensor
    nfe: int


def _probes(x: Tensor, exact: bool, k: int, probe: str, generator: torch.Generator | None) -> Tensor:
    """(P, B, *shape) probe vectors: the dim basis vectors (exact) or k random probes."""
    b, shape = x.shape[0], x.shape[1:]
    dim = math.prod(shape)
    if exact:
        eye = torch.eye(dim, device=x.device, dtype=x.dtype)
        return eye[:, None, :].expand(dim, b, dim).reshape(dim, b, *shape)
    if probe == "gaussian":
        return randn((k, *x.shape), generator, x.device, x.dtype)
    return rand((k, *x.shape), generator, x.device, x.dtype).round() * 2 - 1  # Rademacher +-1


def _drift_and_div(
    denoiser: DenoiserFn, x: Tensor, sigma: float, probes: Tensor, weight: float,
    class_labels: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """(f, div_x f) with f = dx/dsigma = (x - D) / sigma, computed on a detached x (no kept graph)."""
    p, b = probes.shape[:2]
    eps = probes.reshape(p * b, *x.shape[1:])
    with torch.enable_grad():
        xs = x.detach().repeat(p, *([1] * (x.ndim - 1))).requires_grad_(True)  # P stacked copies of x
        kw: dict[str, Tensor] = {}
        if class_labels is not None:
            kw["class_labels"] = class_labels.repeat(p, *([1] * (class_labels.ndim - 1)))
        D = denoiser(xs, xs.new_full((p * b,), sigma), **kw)
        (vjp,) = torch.autograd.grad(D, xs, eps)  # eps^T dD/dx per copy
    div = (eps * (eps - vjp)).reshape(p, b, -1).sum((0, 2)) * weight  # eps^T (I - dD/dx) eps -> 0 as sigma -> 0
    return (x - D.detach()[:b]) / sigma, div / sigma


def ode_log_likelihood(
    denoiser: DenoiserFn, x: Tensor, *, sigma_min: float, sigma_max: float, steps: int = 64,
    class_labels: Tensor | None = None, exact: bool | None = None, hutchinson_samples: int = 1,
    probe: str = "rademacher", generator: torch.Generator | None = None,
) -> LikelihoodResult:
    """log p_{sigma_min}(x) in nats per example by the probability-flow ODE from sigma_min to sigma_max.

    ``x`` is (B, ...) (vectors or images); ``exact=None`` picks the exact divergence for dim <= 16.
    Probes come from ``generator`` (a CPU generator), so results do not depend on the device.
    """
    if not 0 < sigma_min < sigma_max:
        raise UserError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    if hutchinson_samples < 1:
        raise UserError(f"hutchinson_samples must be >= 1, got {hutchinson_samples}")
    if probe not in PROBES:
        raise UserError(f"unknown probe {probe!r}; choose one of: {', '.join(PROBES)}")
    if x.ndim < 2:
        raise UserError(f"x must be batched, of shape (B, ...), got shape {tuple(x.shape)}")
    x = x.detach().to(torch.promote_types(x.dtype, torch.float32))
    dim = math.prod(x.shape[1:])
    exact = dim <= EXACT_MAX_DIM if exact is None else exact
    probes = _probes(x, exact, hutchinson_samples, probe, generator)
    weight = 1.0 if exact else 1.0 / hutchinson_samples  # trace = sum over basis, mean over probes

    def F(x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        return _drift_and_div(denoiser, x, sigma, probes, weight, class_labels)

    grid = torch.linspace(math.log(sigma_min), math.log(sigma_max), steps + 1, dtype=torch.float64).exp()
    sigmas = [sigma_min, *grid[1:-1].tolist(), sigma_max]
    delta = x.new_zeros(x.shape[0])  # int div_x f dsigma so far
    with torch.no_grad():
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            h, s_mid = s_next - s, (s + s_next) / 2
            k1, l1 = F(x, s)  # classical RK4 on (x, delta log p)
            k2, l2 = F(x + h / 2 * k1, s_mid)
            k3, l3 = F(x + h / 2 * k2, s_mid)
            k4, l4 = F(x + h * k3, s_next)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            delta = delta + h / 6 * (l1 + 2 * l2 + 2 * l3 + l4)
    prior = -x.flatten(1).square().sum(1) / (2 * sigma_max**2) - dim / 2 * math.log(2 * math.pi * sigma_max**2)
    log_prob = prior + delta  # log N(x(sigma_max); 0, sigma_max^2 I) + int div f dsigma
    return LikelihoodResult(log_prob, bits_per_dim(log_prob, dim), 4 * steps)


def bits_per_dim_ode(
    denoiser: DenoiserFn, x: Tensor, *, bins: int, sigma_min: float, sigma_max: float,
    generator: torch.Generator | None = None, **kwargs: Any,
) -> LikelihoodResult:
    """Discrete log-likelihood bound of quantized data x in [-1, 1] (``bins`` levels, 0: continuous).

    Dequantizes x + u delta (u ~ U[0, 1), from ``generator``), runs :func:`ode_log_likelihood` (same
    generator for the probes, ``kwargs`` passed on) and adds D log delta: log P(v) >= E_u log p(x + u delta).
    """
    if bins == 1 or bins < 0:
        raise UserError(f"bins must be 0 (continuous) or >= 2, got {bins}")
    res = ode_log_likelihood(
        denoiser, dequantize(x, bins, generator), sigma_min=sigma_min, sigma_max=sigma_max,
        generator=generator, **kwargs,
    )
    dim = math.prod(x.shape[1:])
    log_prob = discrete_log_prob(res.log_prob, dim, bins)
    return LikelihoodResult(log_prob, bits_per_dim(log_prob, dim), res.nfe)
