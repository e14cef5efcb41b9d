"""Exponential moving average of model weights, used for sampling and evaluation."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """theta_ema <- d theta_ema + (1 - d) theta, with warm-up d_n = min(decay, (1 + n) / (10 + n)).

    The warm-up keeps early EMA weights from being dominated by the random initialisation. Only
    the parameters of ``model.ema_modules()`` are averaged (a GAN averages its generator); the
    other parameters and all buffers of the copy follow the trained model.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        modules = model.ema_modules() if hasattr(model, "ema_modules") else [model]
        tracked = {id(p) for m in modules for p in m.parameters()}
        self._averaged = [id(p) in tracked for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        for avg, e, p in zip(self._averaged, self.model.parameters(), model.parameters()):
            if avg:
                e.lerp_(p.detach(), 1.0 - d)
            else:
                e.copy_(p.detach())
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)
