"""Coupling layers (RealNVP, Glow, NSF-C): the masked part conditions a transform of the rest.

z_A = x_A and z_B = tau(x_B; theta(x_A)) for a binary mask A / B over one example's elements, so
the Jacobian is triangular and log|det| = sum_B log|d tau / d x_B|. Masks: halves of a vector,
RealNVP's checkerboard and channel masks for images. The transform is affine (RealNVP, Glow) or
a rational-quadratic spline (neural spline flows, Durkan et al. 2019).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.flows.flow import FlowLayer
from genlab.flows.transforms import Transform


def half_mask(dim: int, parity: int) -> Tensor:
    """Vectors: the first ceil(D/2) elements condition (parity 0), or the last floor(D/2) (parity 1)."""
    if dim < 2:
        raise UserError(f"a coupling layer needs >= 2 dimensions, got {dim}")
    first = torch.arange(dim) < (dim + 1) // 2
    return first if parity == 0 else ~first


def checkerboard_mask(shape: tuple[int, int, int], parity: int) -> Tensor:
    """Images (C, H, W): pixels with (i + j) even condition (parity 0), or odd (parity 1)."""
    c, h, w = shape
    board = (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == parity
    return board.expand(c, h, w).clone()


def channel_mask(shape: tuple[int, int, int], parity: int) -> Tensor:
    """Images (C, H, W): the first half of the channels conditions (parity 0), or the second half."""
    c, h, w = shape
    if c % 2:
        raise UserError(f"a channel-mask coupling splits channels in half: {c} channels is odd; "
                         "squeeze first or use a checkerboard mask")
    first = (torch.arange(c) < c // 2)[:, None, None].expand(c, h, w).clone()
    return first if parity == 0 else ~first


class Coupling(FlowLayer):
    """z = x on ``mask``; elsewhere z = transform(x; conditioner(x * mask)).

    ``conditioner`` maps a masked example batch (B, *shape) to parameters (B, *shape, P).
    """

    def __init__(self, mask: Tensor, conditioner: nn.Module, transform: Transform) -> None:
        super().__init__()
        if mask.all() or not mask.any():
            raise UserError("a coupling mask must keep some elements and transform the others")
        self.register_buffer("mask", mask.bool(), persistent=False)
        self.conditioner, self.transform = conditioner, transform

    def _params(self, x: Tensor) -> Tensor:
        return self.conditioner(x * self.mask.to(x.dtype)).to(x.dtype)[:, ~self.mask]  # fp32 under bf16 autocast

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        zb, ld = self.transform.forward(x[:, ~self.mask], self._params(x))
        z = x.clone()
        z[:, ~self.mask] = zb
        return z, ld.sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        xb, _ = self.transform.inverse(z[:, ~self.mask], self._params(z))  # z * mask = x * mask
        x = z.clone()
        x[:, ~self.mask] = xb
        return x
