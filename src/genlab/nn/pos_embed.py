"""Position embeddings for patch grids: fixed 2-D sin-cos (MAE) and resizing learned ones (timm)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import UserError


def _sincos_1d(dim: int, pos: Tensor) -> Tensor:
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = pos.reshape(-1, 1).double() * omega  # (M, dim/2)
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim: int, grid: tuple[int, int], prefix_tokens: int = 0) -> Tensor:
    """MAE's ``get_2d_sincos_pos_embed``: half the channels encode the column, half the row,
    each as [sin, cos] of positions x 1/10000^(2i/d); zero rows for class tokens. (prefix + H*W, dim)."""
    if dim % 4:
        raise UserError(f"sin-cos position embeddings need embed_dim divisible by 4, got {dim}")
    gh, gw = grid
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    emb = torch.cat([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], dim=1)
    return torch.cat([torch.zeros(prefix_tokens, dim, dtype=emb.dtype), emb]).float()


def resize_pos_embed(pos: Tensor, new_grid: tuple[int, int], prefix_tokens: int,
                     old_grid: tuple[int, int] | None = None) -> Tensor:
    """Bicubic resampling of a (1, prefix + H*W, D) position embedding to another grid (timm's
    ``resample_abs_pos_embed``); the prefix (class-token) rows are kept. ``old_grid`` defaults to square."""
    n = pos.shape[1] - prefix_tokens
    if old_grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise UserError(f"{n} patches are not a square grid; pass the checkpoint's grid=(rows, columns)")
        old_grid = (side, side)
    elif math.prod(old_grid) != n:
        raise UserError(f"grid={tuple(old_grid)} holds {math.prod(old_grid)} patches, the checkpoint {n}")
    if tuple(old_grid) == tuple(new_grid):
        return pos
    prefix, grid = pos[:, :prefix_tokens], pos[:, prefix_tokens:]
    d = grid.shape[-1]
    grid = grid.reshape(1, *old_grid, d).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, d).to(pos.dtype)
    return torch.cat([prefix, grid], dim=1)
