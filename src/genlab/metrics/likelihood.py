"""Likelihood bookkeeping: dequantization and nats <-> bits/dim.

Data with ``bins`` quantization levels is stored as x = v * delta - 1 with delta = 2 / (bins - 1)
(8-bit pixels: v / 127.5 - 1). A continuous density p_x fitted to uniformly dequantized data
x + u * delta, u ~ U[0, 1)^D, bounds the discrete log-likelihood:
    log P(v) >= E_u[log p_x(x + u delta)] + D log delta.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.nn.random import rand


def bin_width(bins: int) -> float:
    """Spacing of quantized values in [-1, 1] units: delta = 2 / (bins - 1)."""
    return 2.0 / (bins - 1)


def dequantize(x: Tensor, bins: int, generator: torch.Generator | None = None) -> Tensor:
    """x + u * delta with u ~ U[0, 1); identity for continuous data (bins == 0)."""
    if bins == 0:
        return x
    return x + rand(tuple(x.shape), generator, x.device, x.dtype) * bin_width(bins)


def discrete_log_prob(log_density: Tensor, dims: int, bins: int) -> Tensor:
    """Turn a density on dequantized [-1, 1] data into a log-probability of the discrete data."""
    if bins == 0:
        return log_density
    return log_density + dims * math.log(bin_width(bins))


def bits_per_dim(log_prob_nats: Tensor | float, dims: int) -> Tensor | float:
    """-log p / (D ln 2)."""
    return -log_prob_nats / (dims * math.log(2.0))
