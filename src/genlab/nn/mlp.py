"""Residual MLP denoiser for low-dimensional vectors (2-D toys, embeddings).

``forward(x, c_noise, class_labels=None)`` with x of shape (B, D) returns (B, D): an input
projection, ``depth`` pre-norm residual blocks ``h + fc2(silu(fc1(norm(h)) + emb))`` that
each receive the (noise + class) embedding, and an output LayerNorm-SiLU-projection that starts
at zero. ``c_noise`` and ``class_labels`` follow the UNet's contract (null label = num_classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.nn.embeddings import ClassEmbedding, EmbeddingKind, NoiseEmbedding, check_labels, embed_conditions


@dataclass
class MLPDenoiserConfig:
    """``dim`` is the data dimension D; ``hidden`` the width of the ``depth`` residual blocks."""

    dim: int = 2
    hidden: int = 256
    depth: int = 4
    num_classes: int = 0
    layer_norm: bool = True
    dropout: float = 0.0
    embedding: EmbeddingKind = "positional"

    def validate(self) -> None:
        for name in ("dim", "hidden", "depth"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.hidden % 2:
            raise UserError(f"hidden={self.hidden}: must be even (sinusoidal noise embedding)")
        if self.num_classes < 0:
            raise UserError(f"num_classes={self.num_classes}: must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout={self.dropout}: must be in [0, 1)")
        if self.embedding not in ("positional", "fourier"):
            raise UserError(f"embedding={self.embedding!r}: choose positional or fourier")


class MLPBlock(nn.Module):
    """Pre-norm residual block: ``h + fc2(dropout(silu(fc1(norm(h)) + emb)))``."""

    def __init__(self, width: int, layer_norm: bool, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.fc2(self.dropout(F.silu(self.fc1(self.norm(h)) + self.emb(emb))))


class MLPDenoiser(nn.Module):
    """Residual MLP ``forward(x (B, D), c_noise (B,), class_labels (B,) | None) -> (B, D)``."""

    def __init__(self, config: MLPDenoiserConfig | None = None) -> None:
        super().__init__()
        cfg = config or MLPDenoiserConfig()
        cfg.validate()
        self.config = cfg
        self.noise_emb = NoiseEmbedding(cfg.hidden, cfg.hidden, cfg.embedding)
        self.class_emb = ClassEmbedding(cfg.num_classes, cfg.hidden) if cfg.num_classes else None
        self.proj_in = nn.Linear(cfg.dim, cfg.hidden)
        self.blocks = nn.ModuleList(
            [MLPBlock(cfg.hidden, cfg.layer_norm, cfg.dropout) for _ in range(cfg.depth)]
        )
        self.norm_out = nn.LayerNorm(cfg.hidden) if cfg.layer_norm else nn.Identity()
        self.proj_out = nn.Linear(cfg.hidden, cfg.dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        cfg = self.config
        if x.dim() != 2 or x.shape[1] != cfg.dim:
            raise UserError(f"MLPDenoiser expects (B, {cfg.dim}) input, got {tuple(x.shape)}")
        batch = x.shape[0]
        check_labels(class_labels, cfg.num_classes, batch)
        emb = embed_conditions(self.noise_emb, self.class_emb, c_noise, class_labels, batch)
        h = self.proj_in(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.proj_out(F.silu(self.norm_out(h)))
