"""Critic regularisers: WGAN-GP's gradient penalty, R1 / R2, and WGAN's weight clipping.

All penalties are per example, computed with ``create_graph=True`` so the critic's update
differentiates through them.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


def input_gradient(critic: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """D(x) per example and grad_x sum D(x) (= each example's own input gradient), kept in the graph."""
    x = x.detach().requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
    return out, grad.flatten(1).float()


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    """Gulrajani et al. 2017: E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = alpha x + (1 - alpha) G(z),
    ``alpha`` ~ U[0, 1] per example (shape (B,))."""
    a = alpha.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    x_hat = a * real.detach() + (1 - a) * fake.detach()
    _, grad = input_gradient(critic, x_hat)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def squared_gradient_norm(critic: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """(D(x), E||grad_x D(x)||^2): R1 on real data, R2 on generated data (Mescheder et al. 2018;
    Roth et al. 2017); the objective adds gamma / 2 times it."""
    out, grad = input_gradient(critic, x)
    return out, grad.pow(2).sum(dim=1).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> None:
    """WGAN: clamp every critic parameter to [-c, c] after each critic update (a crude Lipschitz bound)."""
    for p in module.parameters():
        p.clamp_(-c, c)
