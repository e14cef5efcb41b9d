"""``Flow(base, layers)``: exact likelihood by the change of variables, sampling by inversion.

Direction convention (nflows, zuko): a layer's ``forward(x) -> (z, logdet)`` maps data towards the
base distribution and returns log|det dz/dx| per example; ``inverse(z) -> x`` maps back. Then
    log p(x) = log p_base(z) + sum_k log|det J_k(x)|,   x = f_1^-1(... f_K^-1(z)), z ~ p_base.
normflows uses the opposite direction (its ``forward`` samples); swap when porting from it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genlab.nn.random import Source, randn


class FlowLayer(nn.Module):
    """An invertible map with a tractable log-determinant; shapes may change (squeeze, split)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one example after the layer (default: unchanged)."""
        return shape


class Sequence(FlowLayer):
    """Layers applied in order (data -> base); log-determinants add up."""

    def __init__(self, layers: list[FlowLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = torch.zeros(len(x), device=x.device, dtype=x.dtype)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        for layer in self.layers:
            shape = layer.out_shape(shape)
        return tuple(shape)


class StandardNormal(nn.Module):
    """N(0, I) over examples of ``shape``."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z.flatten(1) ** 2).sum(1) - 0.5 * math.prod(self.shape) * math.log(2 * math.pi)

    def sample(self, n: int, generator: Source = None, device: torch.device | str = "cpu") -> Tensor:
        return randn((n, *self.shape), generator, device)


class Flow(nn.Module):
    """A base distribution and invertible layers: ``log_prob``, ``sample``, ``forward``, ``inverse``."""

    def __init__(self, base: StandardNormal, layers: list[FlowLayer]) -> None:
        super().__init__()
        self.base, self.transform = base, Sequence(layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """z and log|det dz/dx| per example."""
        return self.transform(x)

    def inverse(self, z: Tensor) -> Tensor:
        return self.transform.inverse(z)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) per example, in nats."""
        z, logdet = self.transform(x)
        return self.base.log_prob(z) + logdet

    def sample(self, n: int, generator: Source = None, temperature: float = 1.0) -> Tensor:
        """x = f^-1(T z), z ~ N(0, I) drawn from ``generator`` (Glow's temperature T, 1 = the model)."""
        device = next(self.parameters()).device
        return self.inverse(temperature * self.base.sample(n, generator, device))
