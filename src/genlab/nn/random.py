"""Seeded noise that is the same on every device.

Noise is drawn on the CPU from a ``torch.Generator`` and then moved, so a seed gives the same
samples on CPU and CUDA and ``sample(n, generator=...)`` does not depend on the device.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _draw(fn, shape, generator, device, dtype) -> Tensor:
    if generator is None:
        return fn(shape, device=device, dtype=dtype)
    return fn(shape, generator=generator, dtype=dtype).to(device)


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal noise of ``shape``; from ``generator`` (a CPU generator) when given."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Uniform [0, 1) noise of ``shape``; from ``generator`` (a CPU generator) when given."""
    return _draw(torch.rand, shape, generator, device, dtype)
