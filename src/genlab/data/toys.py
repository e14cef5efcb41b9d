"""2-D toy distributions with known structure, so metrics can be exact (modes, W1, density).

``ring8`` and ``grid25`` follow the WGAN-GP ``gan_toy`` geometry (PAPERS.md): 8 Gaussians on a
circle of radius 2 (std 0.02) and a 5x5 grid of spacing 2 (std 0.05), both then scaled down by
1.414 and 2.828. ``moons``, ``checkerboard`` and ``swissroll`` follow FFJORD's toy data.
"""

from __future__ import annotations

import numpy as np

from genlab.errors import UserError

TOYS: tuple[str, ...] = ("ring8", "grid25", "moons", "checkerboard", "swissroll")
MIXTURES: tuple[str, ...] = ("ring8", "grid25")


def toy_modes(name: str) -> tuple[np.ndarray, float]:
    """The mode centers (K, 2) and per-axis std of a Gaussian-mixture toy, in data units.

    Label ``k`` of the toy's data is the index of its mode ``centers[k]``; the mixture weights
    are equal.
    """
    if name == "ring8":
        angles = np.arange(8) * (np.pi / 4)
        centers = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return centers / 1.414, 0.02 / 1.414
    if name == "grid25":
        g = np.arange(-4.0, 5.0, 2.0)
        centers = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
        return centers / 2.828, 0.05 / 2.828
    raise UserError(
        f"data set {name!r} is not a Gaussian mixture; modes exist for {', '.join(MIXTURES)}"
    )


def sample_toy(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """``n`` points (float32 (n, 2)), labels (int64 or None) and class names of toy ``name``."""
    from sklearn.datasets import make_moons, make_swiss_roll  # deferred: ~1 s to import

    rng = np.random.default_rng(seed)
    if name in MIXTURES:
        centers, std = toy_modes(name)
        y = rng.integers(0, len(centers), n)
        x = centers[y] + std * rng.standard_normal((n, 2))
        return x.astype(np.float32), y.astype(np.int64), [f"mode{k}" for k in range(len(centers))]
    if name == "moons":
        x, y = make_moons(n, noise=0.05, random_state=seed)
        # Centred, one scale for both axes: mean per-axis variance ~1, shape kept.
        x = (x - np.array([0.5, 0.25])) * 1.414
        return x.astype(np.float32), y.astype(np.int64), ["upper", "lower"]
    if name == "checkerboard":
        x1 = rng.random(n) * 4 - 2
        x2 = rng.random(n) - 2 * rng.integers(0, 2, n) + np.floor(x1) % 2
        return np.stack([x1, x2], axis=1).astype(np.float32), None, []
    if name == "swissroll":
        x = make_swiss_roll(n, noise=0.5, random_state=seed)[0][:, [0, 2]] / 5
        return x.astype(np.float32), None, []
    raise UserError(f"unknown toy {name!r}; choose one of: {', '.join(TOYS)}")
