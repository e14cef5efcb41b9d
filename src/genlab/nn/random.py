"""Seeded noise: the same on every device, and the same however a batch is split across processes.

``randn`` / ``rand`` / ``randint`` take a ``source``: None (torch's global RNG), a
``torch.Generator`` (a CPU generator: noise is drawn on the CPU and moved, so a seed gives the same
samples on CPU and CUDA), or a :class:`RowRandom`. A ``RowRandom`` is what the trainer gives a
loss: it draws the rows of the *global* batch and returns this process's rows, so two processes
with half a batch each see exactly the noise one process sees for the whole batch (data
parallelism that changes nothing but speed).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor


class RowRandom:
    """Random draws for rows ``start:stop`` of a global batch of ``total`` rows.

    Every process holds the same ``generator`` state and draws ``(total, *shape[1:])``, so all
    advance alike and each keeps its own rows. Draws must be per row (``shape[0]`` = this
    process's rows); for one draw shared by the whole batch use ``generator`` directly.
    """

    def __init__(self, generator: torch.Generator, total: int, start: int = 0, stop: int | None = None) -> None:
        self.generator, self.total = generator, total
        self.start, self.stop = start, total if stop is None else stop

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def _draw(self, fn, shape: tuple[int, ...], device, dtype, **kw) -> Tensor:
        if not shape or shape[0] != self.rows:
            raise ValueError(f"RowRandom draws one value per row: shape {shape} must start with {self.rows}")
        gen_device = self.generator.device
        full = fn(*kw.pop("args", ()), (self.total, *shape[1:]), generator=self.generator, device=gen_device,
                  dtype=dtype, **kw)
        return full[self.start : self.stop].to(device)

    def randn(self, shape: tuple[int, ...], device, dtype: torch.dtype = torch.float32) -> Tensor:
        return self._draw(torch.randn, tuple(shape), device, dtype)

    def rand(self, shape: tuple[int, ...], device, dtype: torch.dtype = torch.float32) -> Tensor:
        return self._draw(torch.rand, tuple(shape), device, dtype)

    def randint(self, high: int, shape: tuple[int, ...], device) -> Tensor:
        return self._draw(torch.randint, tuple(shape), device, torch.int64, args=(high,))


Source = Union[None, torch.Generator, RowRandom]


def randn(shape: tuple[int, ...], source: Source, device: torch.device | str,
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal noise of ``shape`` from ``source`` (see the module docstring)."""
    if isinstance(source, RowRandom):
        return source.randn(shape, device, dtype)
    if source is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=source, dtype=dtype).to(device)


def rand(shape: tuple[int, ...], source: Source, device: torch.device | str,
         dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform [0, 1) noise of ``shape`` from ``source``."""
    if isinstance(source, RowRandom):
        return source.rand(shape, device, dtype)
    if source is None:
        return torch.rand(shape, device=device, dtype=dtype)
    return torch.rand(shape, generator=source, dtype=dtype).to(device)


def randint(high: int, shape: tuple[int, ...], source: Source, device: torch.device | str) -> Tensor:
    """Integers uniform in 0..high-1 of ``shape`` from ``source``."""
    if isinstance(source, RowRandom):
        return source.randint(high, shape, device)
    if source is None:
        return torch.randint(0, high, shape, device=device)
    return torch.randint(0, high, shape, generator=source).to(device)
