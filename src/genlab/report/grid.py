"""Sample pictures: an image grid (PIL), a scatter plot of 2-D points, a pair plot of vectors (matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from genlab.errors import UserError

PAIR_DIMS = 4  # a pair plot shows the first 4 dimensions of longer vectors


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


def save_pairs(x: Tensor, path: str | Path, reference: Tensor | None = None, title: str = "") -> None:
    """Pair plot of the first ``PAIR_DIMS`` dimensions: histograms on the diagonal, scatter off it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = min(x.shape[1], PAIR_DIMS)
    p = x.detach().float().cpu().numpy()[:, :d]
    r = None if reference is None else reference.detach().float().cpu().numpy()[:, :d]
    fig, axes = plt.subplots(d, d, figsize=(2.2 * d + 0.6, 2.2 * d + 0.4), dpi=100, squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if i == j:
                if r is not None:
                    ax.hist(r[:, i], bins=40, density=True, color="0.75", label="data")
                ax.hist(p[:, i], bins=40, density=True, histtype="step", color="C0", label="samples")
            else:
                if r is not None:
                    ax.scatter(r[:, j], r[:, i], s=1, c="0.8")
                ax.scatter(p[:, j], p[:, i], s=2, c="C0")
            if i == d - 1:
                ax.set_xlabel(f"x{j}")
            if j == 0:
                ax.set_ylabel(f"x{i}")
    shown = f"first {d} of {x.shape[1]} dimensions" if x.shape[1] > d else f"{d} dimension{'s' * (d > 1)}"
    fig.suptitle(f"{title} ({shown}; grey: data, blue: samples)" if title else shown, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def picture_problem(shape: tuple[int, ...]) -> str | None:
    """Why samples of one-example ``shape`` cannot be pictured, or None when they can."""
    if len(shape) == 3 and shape[0] in (1, 3):
        return None
    if len(shape) == 1:
        return None
    return f"cannot picture samples of shape {tuple(shape)} (images need 1 or 3 channels); save them as .npz"


def save_samples(
    x: Tensor, path: str | Path, reference: Tensor | None = None, title: str = "", nrow: int | None = None
) -> None:
    """Images -> grid (``nrow`` columns); 2-D vectors -> scatter plot; other vectors -> pair plot."""
    problem = picture_problem(tuple(x.shape[1:]))
    if problem:
        raise UserError(problem)
    if x.dim() == 4:
        save_image_grid(x, path, nrow)
    elif x.shape[1] == 2:
        save_scatter(x, path, reference, title)
    else:
        save_pairs(x, path, reference, title)
