"""Noise-level and class embeddings for denoiser networks.

A denoiser receives its noise level as ``c_noise``, a (B,) float tensor whose scale depends on
the parameterization: DDPM timesteps 0..999, or EDM's ``ln(sigma) / 4`` (about -3..2). The
sinusoidal embedding of DDPM / "Attention is all you need" with ``max_period=10000`` spans
frequencies from 1 down to 1e-4, so it resolves both scales: the fast components separate small
``ln(sigma) / 4`` values and the slow ones separate large timesteps. Random Fourier features
(NCSN++) are the alternative for continuous noise levels.

Class conditioning keeps one extra "null" row at index ``num_classes``: a label replaced by it
(label dropout in training) trains the unconditional model used by classifier-free guidance.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.nn.random import Source, rand

EmbeddingKind = Literal["positional", "fourier"]


def sinusoidal_embedding(c_noise: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(B,) -> (B, dim): ``[cos(c f_k), sin(c f_k)]`` with ``f_k = max_period^(-k / (dim/2))``."""
    if dim < 2 or dim % 2:
        raise UserError(f"embedding dim={dim}: must be an even number >= 2")
    half = dim // 2
    k = torch.arange(half, device=c_noise.device, dtype=torch.float32)
    freqs = torch.exp(k * (-math.log(max_period) / half))
    args = c_noise.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class FourierFeatures(nn.Module):
    """Random Fourier features ``[cos(2 pi c w), sin(2 pi c w)]``, ``w ~ N(0, scale^2)``, fixed."""

    def __init__(self, dim: int, scale: float = 16.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise UserError(f"embedding dim={dim}: must be an even number >= 2")
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, c_noise: Tensor) -> Tensor:
        args = (2 * math.pi) * c_noise.float()[:, None] * self.freqs[None].float()
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class NoiseEmbedding(nn.Module):
    """``c_noise`` (B,) -> (B, out_dim): sinusoidal or Fourier features, then Linear-SiLU-Linear."""

    def __init__(self, dim: int, out_dim: int, kind: EmbeddingKind = "positional") -> None:
        super().__init__()
        if kind not in ("positional", "fourier"):
            raise UserError(f"embedding={kind!r}: choose positional or fourier")
        if dim < 2 or dim % 2:
            raise UserError(f"embedding dim={dim}: must be an even number >= 2")
        self.dim = dim
        self.fourier = FourierFeatures(dim) if kind == "fourier" else None
        self.fc1 = nn.Linear(dim, out_dim)
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, c_noise: Tensor) -> Tensor:
        if self.fourier is not None:
            feats = self.fourier(c_noise)
        else:
            feats = sinusoidal_embedding(c_noise, self.dim)
        feats = feats.to(self.fc1.weight.dtype)
        return self.fc2(F.silu(self.fc1(feats)))


class ClassEmbedding(nn.Module):
    """Labels in [0, num_classes] -> (B, dim); index ``num_classes`` is the null label."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise UserError(f"num_classes={num_classes}: class embedding needs >= 1 class")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)
        nn.init.normal_(self.table.weight, std=dim**-0.5)

    def forward(self, labels: Tensor) -> Tensor:
        return self.table(labels)


def drop_labels(
    labels: Tensor, p: float, num_classes: int, generator: Source = None
) -> Tensor:
    """Replace each label by the null label ``num_classes`` with probability ``p`` (for CFG)."""
    if not 0.0 <= p <= 1.0:
        raise UserError(f"label dropout p={p}: must be in [0, 1]")
    if p == 0.0:
        return labels
    u = rand(tuple(labels.shape), generator, labels.device)
    return torch.where(u < p, torch.full_like(labels, num_classes), labels)


def check_labels(class_labels: Tensor | None, num_classes: int, batch: int) -> None:
    """UserError unless labels fit the net: None when unconditional, else (batch,) integers."""
    if class_labels is None:
        return
    if num_classes == 0:
        raise UserError("class_labels given to an unconditional network (num_classes=0); pass None")
    if class_labels.shape != (batch,) or class_labels.is_floating_point():
        raise UserError(
            f"class_labels must be a ({batch},) integer tensor, got {tuple(class_labels.shape)} "
            f"{class_labels.dtype}"
        )


def embed_conditions(
    noise_emb: NoiseEmbedding, class_emb: ClassEmbedding | None, c_noise: Tensor,
    class_labels: Tensor | None, batch: int,
) -> Tensor:
    """SiLU(noise embedding + class embedding): the conditioning vector every block receives.

    ``c_noise`` may be (B,) or a scalar; a conditional net given no labels uses the null label.
    """
    c_noise = c_noise.reshape(-1).expand(batch) if c_noise.numel() == 1 else c_noise
    if c_noise.shape != (batch,):
        raise UserError(f"c_noise must have shape ({batch},), got {tuple(c_noise.shape)}")
    emb = noise_emb(c_noise)
    if class_emb is not None:
        if class_labels is None:
            class_labels = torch.full((batch,), class_emb.num_classes, dtype=torch.long, device=c_noise.device)
        emb = emb + class_emb(class_labels)
    return F.silu(emb)
