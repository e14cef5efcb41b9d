"""In-memory data sets: named per-example tensors (examples, labels, anything paired) and what the values mean."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from genlab.errors import UserError


@dataclass
class Dataset:
    """Examples ``x`` (float32; images (N, C, H, W) in [-1, 1], vectors (N, D)), labels ``y``,
    and ``extra`` named tensors paired with each example (caption tokens, the noise a reflow
    sample came from, ...). A batch is the dict ``{"x", "y" (if labelled), **extra}``.

    ``bins`` is 256 for 8-bit data (pixel v stored as v / 127.5 - 1) and 0 for continuous data;
    ``classes`` names the labels (empty when unlabelled).
    """

    name: str
    x: Tensor
    y: Tensor | None = None
    classes: list[str] = field(default_factory=list)
    bins: int = 0
    extra: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.dim() not in (2, 4):
            raise UserError(
                f"data set {self.name!r}: expected images (N, C, H, W) or vectors (N, D), "
                f"got shape {tuple(self.x.shape)}"
            )
        if len(self.x) == 0:
            raise UserError(f"data set {self.name!r} is empty")
        if not torch.isfinite(self.x).all():
            raise UserError(f"data set {self.name!r} contains NaN or Inf values; clean the data")
        if self.y is not None and len(self.y) != len(self.x):
            raise UserError(
                f"data set {self.name!r}: {len(self.y)} labels for {len(self.x)} examples"
            )
        for key, value in self.extra.items():
            if key in ("x", "y"):
                raise UserError(f"data set {self.name!r}: extra field {key!r} would shadow the examples or labels")
            if len(value) != len(self.x):
                raise UserError(f"data set {self.name!r}: {len(value)} values of {key!r} for {len(self.x)} examples")

    @property
    def kind(self) -> str:
        return "image" if self.x.dim() == 4 else "points"

    @property
    def shape(self) -> tuple[int, ...]:
        """One example's shape."""
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: Tensor) -> "Dataset":
        y = None if self.y is None else self.y[index]
        extra = {k: v[index] for k, v in self.extra.items()}
        return Dataset(self.name, self.x[index], y, list(self.classes), self.bins, extra)

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """The batch for ``index``: ``{"x": ..., "y": ..., **extra}`` (``y`` only if labelled)."""
        out = {"x": self.x[index]}
        if self.y is not None:
            out["y"] = self.y[index]
        out.update({k: v[index] for k, v in self.extra.items()})
        return out


@dataclass
class Splits:
    """The fixed train / test split of one data set."""

    train: Dataset
    test: Dataset
