"""Monotone rational-quadratic splines with linear tails (Durkan et al. 2019, "Neural Spline Flows").

The spline maps [-B, B] onto itself through K bins whose widths, heights and interior knot
derivatives come from unconstrained parameters; outside [-B, B] it is the identity (the "linear
tails"), and the boundary derivatives are 1 so that the map is C^1 there. Elements outside the
domain are routed to the identity *before* any spline arithmetic (boolean selection, not
masking afterwards), so no NaN or inf can appear in a gradient, and inputs that all fall in the
tails are an empty selection, not a crash.

Parameters per element: K width logits, K height logits, K - 1 interior derivative logits,
laid out in that order on the last axis (3K - 1 values). All-zero parameters give the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.nn.softmax import softmax_rows

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


def num_params(bins: int) -> int:
    """Unconstrained parameters per element for K bins: K widths, K heights, K - 1 derivatives."""
    return 3 * bins - 1


def _knots(logits: Tensor, bound: float, minimum: float) -> tuple[Tensor, Tensor]:
    """Bin sizes (K) and knot positions (K + 1) spanning [-B, B], each bin at least ``minimum`` of it."""
    k = logits.shape[-1]
    share = minimum + (1 - minimum * k) * softmax_rows(logits)  # K-long rows: vectorised across them on the CPU
    knots = F.pad(torch.cumsum(share, dim=-1), (1, 0)) * 2 * bound - bound
    knots = torch.cat([torch.full_like(knots[..., :1], -bound), knots[..., 1:-1], torch.full_like(knots[..., :1], bound)], -1)
    return knots[..., 1:] - knots[..., :-1], knots


# softplus(DERIVATIVE_SHIFT) + MIN_DERIVATIVE = 1: zero logits give unit derivatives (the identity)
DERIVATIVE_SHIFT = math.log(math.expm1(1 - MIN_DERIVATIVE))


def _unpack(params: Tensor, bound: float):
    bins = (params.shape[-1] + 1) // 3
    widths, cum_x = _knots(params[..., :bins], bound, MIN_BIN_WIDTH)
    heights, cum_y = _knots(params[..., bins:2 * bins], bound, MIN_BIN_HEIGHT)
    interior = MIN_DERIVATIVE + F.softplus(params[..., 2 * bins:] + DERIVATIVE_SHIFT)
    ones = torch.ones_like(interior[..., :1])
    return widths, cum_x, heights, cum_y, torch.cat([ones, interior, ones], dim=-1)  # boundary derivatives 1


def _gather(t: Tensor, idx: Tensor) -> Tensor:
    return t.gather(-1, idx).squeeze(-1)


def _bin_index(knots: Tensor, v: Tensor) -> Tensor:
    """The bin holding v, in 0..K-1 (v = B falls in the last bin)."""
    return torch.searchsorted(knots[..., 1:-1].contiguous(), v[..., None].contiguous(), right=True)


def _spline(x: Tensor, params: Tensor, bound: float, inverse: bool) -> tuple[Tensor, Tensor]:
    """The spline (or its inverse) on elements inside [-B, B]; log|dy/dx| of the forward map."""
    widths, cum_x, heights, cum_y, derivs = _unpack(params, bound)
    idx = _bin_index(cum_y if inverse else cum_x, x)
    x_k, w_k = _gather(cum_x, idx), _gather(widths, idx)
    y_k, h_k = _gather(cum_y, idx), _gather(heights, idx)
    d_k, d_k1 = _gather(derivs, idx), _gather(derivs[..., 1:], idx)
    s_k = h_k / w_k  # the bin's slope
    if inverse:  # solve the quadratic a xi^2 + b xi + c = 0 for xi in [0, 1] (Durkan eq. 6-8)
        dy = x - y_k
        a = h_k * (s_k - d_k) + dy * (d_k1 + d_k - 2 * s_k)
        b = h_k * d_k - dy * (d_k1 + d_k - 2 * s_k)
        c = -s_k * dy
        xi = (2 * c / (-b - torch.sqrt((b * b - 4 * a * c).clamp(min=0)))).clamp(0, 1)
        out = x_k + xi * w_k
    else:
        xi = ((x - x_k) / w_k).clamp(0, 1)
    one_minus = xi * (1 - xi)
    denom = s_k + (d_k1 + d_k - 2 * s_k) * one_minus
    if not inverse:
        out = y_k + h_k * (s_k * xi**2 + d_k * one_minus) / denom  # Durkan eq. 4
    dydx = s_k**2 * (d_k1 * xi**2 + 2 * s_k * one_minus + d_k * (1 - xi) ** 2) / denom**2  # Durkan eq. 5
    return out, torch.log(dydx)


def _apply(x: Tensor, params: Tensor, bound: float, inverse: bool) -> tuple[Tensor, Tensor]:
    if params.shape[:-1] != x.shape:
        raise ValueError(f"spline parameters {tuple(params.shape)} must be the input's shape {tuple(x.shape)} + (3K-1,)")
    inside = (x >= -bound) & (x <= bound)
    y, ld = _spline(x[inside], params[inside], bound, inverse)  # only the inside elements enter the spline
    return x.masked_scatter(inside, y), torch.zeros_like(x).masked_scatter(inside, ld)  # the tails: identity


def spline_forward(x: Tensor, params: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """y = spline(x) and log|dy/dx| per element; params has shape x.shape + (3K - 1,)."""
    return _apply(x, params, bound, inverse=False)


def spline_inverse(y: Tensor, params: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """x = spline^-1(y) and log|dy/dx| at x (the forward map's, so the inverse's is its negative)."""
    return _apply(y, params, bound, inverse=True)
