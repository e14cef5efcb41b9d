"""Images as sequences of patches: the ViT patch embedding and MAE's patchify / unpatchify."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import UserError


def check_patch_grid(image_hw: tuple[int, int], patch_size: int) -> tuple[int, int]:
    """The (rows, cols) patch grid of an image; a clear error when the size is not divisible."""
    h, w = image_hw
    if patch_size < 1 or h % patch_size or w % patch_size:
        raise UserError(f"image size {h}x{w} is not divisible by patch_size={patch_size}; "
                        "choose a patch size that divides both sides (or resize with --image-size)")
    return h // patch_size, w // patch_size


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> ``embed_dim`` tokens by one strided conv (timm's ``patch_embed.proj``)."""

    def __init__(self, image_hw: tuple[int, int], patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.grid_size = check_patch_grid(image_hw, patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        w = self.proj.weight.data  # MAE: initialise like a linear layer on the flattened patch
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.proj.bias)

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[-2:]) != tuple(g * self.patch_size for g in self.grid_size):
            raise UserError(f"images of size {tuple(x.shape[-2:])}, but this network takes "
                            f"{tuple(g * self.patch_size for g in self.grid_size)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        return self.proj(x).flatten(2).transpose(1, 2)

    def forward_subset(self, x: Tensor, ids: Tensor) -> Tensor:
        """Tokens (B, K, D) of only the patches ``ids`` (B, K) — equal to ``forward(x)`` gathered at ``ids``.

        MAE's encoder sees a quarter of the patches: gathering raw pixels (p*p*C wide) before the
        projection skips the other three quarters of the embedding and a D-wide gather's backward.
        """
        self._check(x)
        b, c, _, _ = x.shape
        (gh, gw), p = self.grid_size, self.patch_size
        patches = x.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * p * p)
        patches = patches.gather(1, ids[..., None].expand(-1, -1, patches.shape[-1]))  # pixels in the conv's (C, p, p) order
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


def patchify(x: Tensor, p: int) -> Tensor:
    """(B, C, H, W) -> (B, L, p*p*C), patches in row-major order, pixels (p, p, C) as MAE orders them."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(x: Tensor, p: int, c: int, grid: tuple[int, int]) -> Tensor:
    """The inverse of :func:`patchify` for a (rows, cols) patch grid."""
    b = x.shape[0]
    gh, gw = grid
    x = x.reshape(b, gh, gw, p, p, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, gh * p, gw * p)
