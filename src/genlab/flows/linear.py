"""Invertible linear map over channels: Glow's invertible 1x1 convolution, LU-parameterised.

W = P L (U + diag(sign(s) exp(log|s|))) with P a fixed permutation, L unit lower-triangular and U
strictly upper-triangular (Glow section 3.2), so log|det W| = sum(log|s|) costs O(C). Applied at
every position of a (B, C, ...) tensor; for vectors (B, C) it is an invertible dense layer.
Initialised at a random rotation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genlab.flows.flow import FlowLayer


class InvertibleLinear(FlowLayer):
    def __init__(self, channels: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower.float() * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())

    def weight(self) -> Tensor:
        eye = torch.eye(len(self.log_s), device=self.log_s.device, dtype=self.log_s.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    @staticmethod
    def _mix(w: Tensor, x: Tensor) -> Tensor:
        return torch.einsum("ij,bj...->bi...", w.to(x.dtype), x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = math.prod(x.shape[2:]) * self.log_s.sum()
        with torch.autocast(x.device.type, enabled=False):  # the log-det is exact only for the W applied
            return self._mix(self.weight(), x), logdet.expand(len(x)).to(x.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        with torch.autocast(z.device.type, enabled=False):
            return self._mix(torch.linalg.inv(self.weight().double()), z)
