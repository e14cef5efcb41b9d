"""Shape-changing layers of multi-scale flows (RealNVP section 3.6, Glow): squeeze and split."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.flows.flow import FlowLayer, Sequence
from genlab.flows.transforms import soft_clamp


class Squeeze(FlowLayer):
    """(C, H, W) -> (4C, H/2, W/2): each 2x2 patch becomes 4 channels (log|det| = 0)."""

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = shape
        if h % 2 or w % 2:
            raise UserError(f"a squeeze halves height and width: {h}x{w} has an odd side")
        return (4 * c, h // 2, w // 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        self.out_shape((c, h, w))
        z = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return z, x.new_zeros(b)

    def inverse(self, z: Tensor) -> Tensor:
        b, c4, h, w = z.shape
        c = c4 // 4
        return z.view(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)


class Flatten(FlowLayer):
    """(C, H, W) -> (C * H * W,) in row-major order (log|det| = 0), for MAF on images."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(shape),)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.flatten(1), x.new_zeros(len(x))

    def inverse(self, z: Tensor) -> Tensor:
        return z.view(-1, *self.shape)


class Split(FlowLayer):
    """Factor out half the channels; ``inner`` layers continue on the other half at a coarser scale.

    The factored half goes to the base distribution, through Glow's learned prior when ``prior``
    (a network of the kept half giving mean and log-scale: z1 = (x1 - mu(x2)) exp(-log_s(x2)),
    zero-initialised, so it starts as N(0, I)), directly otherwise (RealNVP). The output is flat:
    (B, C/2 * H * W + inner's output size).
    """

    def __init__(self, shape: tuple[int, int, int], inner: list[FlowLayer], prior: nn.Module | None = None,
                 max_log_scale: float = 3.0) -> None:
        super().__init__()
        c, h, w = shape
        if c % 2:
            raise UserError(f"a split factors out half the channels: {c} channels is odd")
        self.keep, self.shape = c // 2, (c // 2, h, w)
        self.inner, self.prior, self.max_log_scale = Sequence(inner), prior, max_log_scale
        self.inner_shape = self.inner.out_shape((c - c // 2, h, w))

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(self.shape) + math.prod(self.inner_shape),)

    def _prior(self, x2: Tensor) -> tuple[Tensor, Tensor]:
        params = self.prior(x2).to(x2.dtype)  # (B, C/2, H, W, 2)
        return params[..., 0], soft_clamp(params[..., 1], self.max_log_scale)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = x[:, : self.keep], x[:, self.keep :]
        logdet = x.new_zeros(len(x))
        if self.prior is not None:
            mu, log_s = self._prior(x2)
            x1 = (x1 - mu) * torch.exp(-log_s)
            logdet = logdet - log_s.flatten(1).sum(1)
        z2, ld = self.inner(x2)
        return torch.cat([x1.flatten(1), z2.flatten(1)], 1), logdet + ld

    def inverse(self, z: Tensor) -> Tensor:
        n1 = math.prod(self.shape)
        z1, z2 = z[:, :n1].view(-1, *self.shape), z[:, n1:].view(-1, *self.inner_shape)
        x2 = self.inner.inverse(z2)
        if self.prior is not None:
            mu, log_s = self._prior(x2)
            z1 = z1 * torch.exp(log_s) + mu
        return torch.cat([z1, x2], 1)
