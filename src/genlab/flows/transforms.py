"""Element-wise bijections with parameters, shared by coupling and autoregressive layers.

A transform maps x to z element by element given ``params`` of shape x.shape + (num_params,),
returning log|dz/dx| per element; all-zero parameters are the identity, so a layer whose network
ends in a zero-initialised projection starts as the identity map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.flows.splines import num_params as spline_params
from genlab.flows.splines import spline_forward, spline_inverse


def soft_clamp(s: Tensor, bound: float) -> Tensor:
    """bound * tanh(s / bound): a log-scale kept in (-bound, bound) with slope 1 at 0."""
    return bound * torch.tanh(s / bound)


@dataclass(frozen=True)
class Affine:
    """z = x exp(s) + t (RealNVP, Glow, MAF) with the log-scale s soft-bounded by ``max_log_scale``."""

    max_log_scale: float = 3.0

    @property
    def num_params(self) -> int:
        return 2

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        s, t = soft_clamp(params[..., 0], self.max_log_scale), params[..., 1]
        return x * torch.exp(s) + t, s

    def inverse(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        s, t = soft_clamp(params[..., 0], self.max_log_scale), params[..., 1]
        return (z - t) * torch.exp(-s), s


@dataclass(frozen=True)
class RationalQuadraticSpline:
    """Durkan et al.'s monotone rational-quadratic spline: K bins on [-B, B], identity outside."""

    bins: int = 8
    bound: float = 3.0

    @property
    def num_params(self) -> int:
        return spline_params(self.bins)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return spline_forward(x, params, self.bound)

    def inverse(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return spline_inverse(z, params, self.bound)


Transform = Affine | RationalQuadraticSpline
