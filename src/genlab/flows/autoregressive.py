"""Masked autoregressive layers (MAF, Papamakarios et al. 2017; NSF-AR, Durkan et al. 2019).

MADE (Germain et al. 2015) gives every output d parameters that depend only on the inputs before d
in ``order``, so z_d = tau(x_d; theta_d(x_<d)) has a triangular Jacobian and the data -> noise
direction is one network pass; the inverse needs D passes, one per position in the order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from genlab.errors import UserError
from genlab.flows.flow import FlowLayer
from genlab.flows.transforms import Transform


class MaskedLinear(nn.Linear):
    def __init__(self, mask: Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """(B, D) -> (B, D, P): output d's P parameters see inputs with a lower rank in ``order``.

    ``order`` holds each input's rank 1..D; the H hidden units of every layer get degrees
    1 + floor(k (D - 1) / H), spread evenly over 1..D-1, and connect to units of lower or equal
    degree below; output d connects to hidden units of degree < rank(d). The last layer starts at zero (the identity transform).
    """

    def __init__(self, order: Tensor, hidden: int, depth: int, params: int) -> None:
        super().__init__()
        dim = len(order)
        rank = order.long()
        if sorted(rank.tolist()) != list(range(1, dim + 1)):
            raise UserError(f"order must be a permutation of 1..{dim}, got {order.tolist()}")
        degrees = [rank] + [torch.arange(hidden) * max(dim - 1, 1) // hidden + 1 for _ in range(depth)]
        layers: list[nn.Module] = []
        for a, b in zip(degrees[:-1], degrees[1:]):
            layers += [MaskedLinear(b[:, None] >= a[None, :]), nn.ReLU()]
        out = MaskedLinear((rank[:, None] > degrees[-1][None, :]).repeat_interleave(params, dim=0))
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*layers, out)
        self.dim, self.params = dim, params

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(len(x), self.dim, self.params)


class MaskedAutoregressive(FlowLayer):
    """z_d = transform(x_d; MADE(x)_d): affine (MAF) or a rational-quadratic spline (NSF-AR)."""

    def __init__(self, order: Tensor, hidden: int, depth: int, transform: Transform) -> None:
        super().__init__()
        self.made, self.transform = MADE(order, hidden, depth, transform.num_params), transform

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, ld = self.transform.forward(x, self.made(x).to(x.dtype))
        return z, ld.sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        x = torch.zeros_like(z)
        for _ in range(self.made.dim):  # after pass k the first k positions of the order are exact
            x = self.transform.inverse(z, self.made(x).to(z.dtype))[0]
        return x
