"""Scaled dot-product attention, and self-attention over the spatial positions of a feature map.

:func:`attention` is ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels) except
for bf16 on the CPU up to a few hundred tokens: there the fused kernel runs forward +
backward several times slower than the explicit softmax(q k^T / sqrt(d)) v, whose two matmuls use
the CPU's bf16 units; in fp32 neither form wins consistently up to 100 tokens and the fused one
wins beyond (``benchmarks/attention_cpu.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.nn.softmax import softmax_rows

CPU_BF16_EXPLICIT_MAX_TOKENS = 512  # explicit beats fused in bf16 up to 400 tokens, ties at 1,024


def explicit_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v over (..., tokens, d), as timm's non-fused path computes it."""
    return softmax_rows((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)) @ v


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Scaled dot-product attention of (B, heads, tokens, d) tensors by the fastest form for the device."""
    if (q.device.type == "cpu" and q.dtype == torch.bfloat16
            and max(q.shape[-2], k.shape[-2]) <= CPU_BF16_EXPLICIT_MAX_TOKENS):
        return explicit_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def split_heads(x: Tensor, parts: int, heads: int) -> tuple[Tensor, ...]:
    """(B, N, parts * D) projections, e.g. qkv, as ``parts`` (B, heads, N, D / heads) tensors.

    Unbinding before the head transpose lets backward stack their gradients straight into the
    projection's (B, N, parts, heads, D / heads) layout: one copy, where permuting first takes a
    stack and a second, contiguous copy.
    """
    b, n, width = x.shape
    return tuple(t.transpose(1, 2) for t in x.view(b, n, parts, heads, width // (parts * heads)).unbind(2))


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
        q, k, v = split_heads(self.qkv(tokens), 3, self.heads)
        out = attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        return x + self.proj(out).view(b, h, w, c).permute(0, 3, 1, 2)
