"""Sample pictures: an image grid (PIL) or a scatter plot of 2-D points (matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def image_grid(x: Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one uint8 (rows*H, cols*W, C) picture with a white gutter."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top : top + h, left : left + w] = x[i].permute(1, 2, 0).numpy()
    return grid


def save_image_grid(x: Tensor, path: str | Path, nrow: int | None = None, scale: int = 0) -> None:
    """Write an image grid PNG; small images are upscaled (nearest) to stay legible."""
    grid = image_grid(x, nrow)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    scale = scale or max(1, 256 // max(x.shape[-2:]) // 2)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(path)


def save_scatter(x: Tensor, path: str | Path, reference: Tensor | None = None, title: str = "") -> None:
    """Scatter plot of 2-D samples, over a light cloud of reference data when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if reference is not None:
        r = reference.detach().float().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="0.8", label="data")
    p = x.detach().float().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=3, c="C0", label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def class_columns(num_classes: int) -> int | None:
    """Columns for a grid of class-conditional samples whose labels cycle 0..K-1: one class each."""
    return num_classes if 2 <= num_classes <= 16 else None


def save_samples(
    x: Tensor, path: str | Path, reference: Tensor | None = None, title: str = "", nrow: int | None = None
) -> None:
    """Images -> grid (``nrow`` columns); 2-D vectors -> scatter plot."""
    if x.dim() == 4:
        save_image_grid(x, path, nrow)
    elif x.dim() == 2 and x.shape[1] == 2:
        save_scatter(x, path, reference, title)
    else:
        raise ValueError(f"cannot picture samples of shape {tuple(x.shape)}")
