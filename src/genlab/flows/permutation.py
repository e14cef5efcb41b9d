"""Fixed permutations of a vector's elements (log|det| = 0): reversal between MAF / coupling layers."""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.errors import UserError
from genlab.flows.flow import FlowLayer


class Permutation(FlowLayer):
    """z = x[:, perm]."""

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        perm = torch.as_tensor(perm).long()
        if sorted(perm.tolist()) != list(range(len(perm))):
            raise UserError(f"not a permutation of 0..{len(perm) - 1}: {perm.tolist()}")
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("inv", torch.argsort(perm), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], x.new_zeros(len(x))

    def inverse(self, z: Tensor) -> Tensor:
        return z[:, self.inv]


def reverse(dim: int) -> Permutation:
    return Permutation(torch.arange(dim - 1, -1, -1))
