"""ActNorm (Glow, Kingma & Dhariwal 2018): a per-channel affine map initialised from data.

z = (x + b) * exp(log_s) per channel (dimension 1), log|det| = (elements per channel) * sum(log_s).
Data-dependent initialisation sets b and log_s so that the first batch leaves the layer with zero
mean and unit variance per channel: call :meth:`init_next` and pass a batch through the flow.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genlab.flows.flow import FlowLayer


class ActNorm(FlowLayer):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.pending = False

    def init_next(self) -> None:
        """Initialise from the statistics of the next batch seen by ``forward``."""
        self.pending = True

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        return p.view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.pending:
            with torch.no_grad():
                dims = [0, *range(2, x.dim())]
                self.bias.copy_(-x.mean(dim=dims))
                self.log_scale.copy_(-torch.log(x.std(dim=dims, unbiased=False) + 1e-6))
            self.pending = False
        z = (x + self._view(self.bias, x)) * torch.exp(self._view(self.log_scale, x))
        per_channel = math.prod(x.shape[2:])
        return z, (per_channel * self.log_scale.sum()).expand(len(x))

    def inverse(self, z: Tensor) -> Tensor:
        return z * torch.exp(-self._view(self.log_scale, z)) - self._view(self.bias, z)
