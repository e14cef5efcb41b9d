"""The logit pre-processing of dequantized images (RealNVP section 4.1), with its log-det counted.

Quantized data x = v delta - 1 (v in 0..bins-1, delta = 2 / (bins - 1)) is dequantized to
y = x + u delta in [-1, 1 + delta); then p = (y + 1) / (2 + delta) = (v + u) / bins in [0, 1),
q = alpha + (1 - 2 alpha) p, and z = logit(q). Every step's log-derivative enters the likelihood,
so bits/dim are those of the discrete data, comparable with the literature.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import UserError
from genlab.flows.flow import FlowLayer


class Logit(FlowLayer):
    def __init__(self, bins: int, alpha: float = 0.05) -> None:
        super().__init__()
        if bins < 2:
            raise UserError(f"the logit pre-processing needs quantized data (bins >= 2), got bins={bins}")
        if not 0 < alpha < 0.5:
            raise UserError(f"logit alpha={alpha}: must be in (0, 0.5) (RealNVP: 0.05)")
        self.span = 2 + 2 / (bins - 1)  # y + 1 ranges over [0, 2 + delta)
        self.alpha = alpha

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        q = self.alpha + (1 - 2 * self.alpha) * (y + 1) / self.span
        z = torch.log(q) - torch.log1p(-q)
        ld = math.log((1 - 2 * self.alpha) / self.span) + F.softplus(-z) + F.softplus(z)  # - log q - log(1 - q)
        return z, ld.flatten(1).sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha) * self.span - 1
