"""Pre-norm transformer blocks with timm's module and parameter names (``blocks.N.attn.qkv`` ...).

``Block``: x + attn(norm1(x)), then x + mlp(norm2(x)); LayerNorm eps 1e-6 and exact GELU, as
timm's ``VisionTransformer`` and the MAE reference, so their state dicts load unchanged.
Attention runs through ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels
where the device has them; the explicit form for bf16 on the CPU up to a few hundred tokens, see
:func:`genlab.nn.attention.attention`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.nn.attention import attention, split_heads

LN_EPS = 1e-6


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LN_EPS)


class Attention(nn.Module):
    """Multi-head self-attention over tokens (B, N, D): ``qkv`` -> SDPA -> ``proj``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise UserError(f"embed_dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, first: int | None = None) -> Tensor:
        """Outputs for every token, or for the ``first`` tokens only (keys and values from all)."""
        b, n, d = x.shape
        heads = self.num_heads
        if first is None:
            q, k, v = split_heads(self.qkv(x), 3, heads)
        else:  # the rows of qkv: queries, then keys and values
            bias_q, bias_kv = (None, None) if self.qkv.bias is None else (self.qkv.bias[:d], self.qkv.bias[d:])
            (q,) = split_heads(F.linear(x[:, :first], self.qkv.weight[:d], bias_q), 1, heads)
            k, v = split_heads(F.linear(x, self.qkv.weight[d:], bias_kv), 2, heads)
            n = first
        return self.proj(attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """One pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, first: int | None = None) -> Tensor:
        """The block's output for every token, or for the ``first`` tokens only: what a class-token
        readout after the last block needs, at a fraction of the block's cost."""
        x = (x if first is None else x[:, :first]) + self.attn(self.norm1(x), first)
        return x + self.mlp(self.norm2(x))


def init_transformer_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linear layers with zero bias, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
