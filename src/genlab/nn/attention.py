"""Self-attention over the spatial positions of a feature map (PyTorch SDPA)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import UserError


def num_groups(channels: int, max_groups: int = 32) -> int:
    """The largest group count <= ``max_groups`` that divides ``channels`` (GroupNorm)."""
    g = max(1, min(max_groups, channels))
    while channels % g:
        g -= 1
    return g


class SelfAttention2d(nn.Module):
    """``x + proj(MHA(GroupNorm(x)))`` over the H*W positions; ``proj`` starts at zero.

    Written for channels-last feature maps: the (B, C, H, W) -> (B, H*W, C) token view is then
    free, and so is the way back.
    """

    def __init__(self, channels: int, head_dim: int = 64, groups: int = 32) -> None:
        super().__init__()
        if channels < 1 or head_dim < 1:
            raise UserError(f"attention channels={channels}, head_dim={head_dim}: must be >= 1")
        self.heads = max(1, channels // head_dim)
        if channels % self.heads:
            raise UserError(
                f"attention over {channels} channels: not divisible into {self.heads} heads of "
                f"~{head_dim}; change channels or attn_head_dim"
            )
        self.norm = nn.GroupNorm(num_groups(channels, groups), channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        qkv = self.qkv(tokens).view(b, h * w, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        return x + self.proj(out).view(b, h, w, c).permute(0, 3, 1, 2)
