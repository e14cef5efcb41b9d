"""The common model interface every genlab family implements (see docs/architecture.md).

A model is an ``nn.Module`` built from a config dataclass. It owns its mathematics only:
``phases()`` says which parameters each optimizer updates, ``loss(batch, phase)`` returns the
objective, and ``sample`` / ``log_prob`` / ``encode`` expose what the family can do. The trainer
owns every mechanic (optimizers, AMP, EMA, checkpoints), so a new family needs no trainer change.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genlab.config import apply_overrides, to_dict
from genlab.errors import UserError
from genlab.registry import MODELS


@dataclass
class Phase:
    """One optimizer's update: ``steps`` consecutive updates of ``parameters`` per round."""

    name: str
    parameters: list[nn.Parameter]
    steps: int = 1


@dataclass
class ModelConfig:
    """Fields every model config has; the trainer fills them from the data set.

    ``data_shape`` is one example's shape, (C, H, W) for images or (D,) for vectors;
    ``num_classes`` > 0 enables class conditioning where the family supports it; ``bins`` is the
    number of quantization levels of the data (256 for 8-bit images, 0 for continuous data) and
    makes likelihoods dequantized and reported in bits/dim of the discrete data.
    """

    data_shape: tuple[int, ...] = (2,)
    num_classes: int = 0
    bins: int = 0

    def validate(self) -> None:
        if not self.data_shape or any(d < 1 for d in self.data_shape):
            raise UserError(f"data_shape={self.data_shape}: every dimension must be >= 1")
        if self.num_classes < 0:
            raise UserError(f"num_classes={self.num_classes}: must be >= 0")
        if self.bins < 0 or self.bins == 1:
            raise UserError(f"bins={self.bins}: use 0 for continuous data or >= 2 levels")


class GenerativeModel(nn.Module):
    """Base class: config handling, capabilities, and ``save_pretrained`` / ``from_pretrained``."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    name: str = "model"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    # -- what a family implements -------------------------------------------------------------
    def phases(self) -> list[Phase]:
        return [Phase("main", [p for p in self.parameters() if p.requires_grad])]

    def loss(self, batch: dict[str, Tensor], phase: str) -> dict[str, Tensor]:
        raise NotImplementedError

    def sample(self, n: int, *, generator: torch.Generator | None = None, **kw: Any) -> Tensor:
        raise UserError(f"model {self.name!r} cannot sample")

    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """log p(x) per example in nats (of the discrete data when ``config.bins`` > 0)."""
        raise UserError(f"model {self.name!r} has no likelihood")

    def encode(self, x: Tensor) -> Tensor:
        raise UserError(f"model {self.name!r} has no encoder")

    def can(self, capability: str) -> bool:
        """Whether this family implements ``sample``, ``log_prob`` or ``encode``."""
        return getattr(type(self), capability) is not getattr(GenerativeModel, capability)

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    # -- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` atomically (temp folder + rename)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            write_json(tmp / "config.json", {"model": self.name, "config": to_dict(self.config)})
            save_file(state_dict_for_save(self), str(tmp / "model.safetensors"))
            replace_dir(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu"):
        """Rebuild a model saved by :meth:`save_pretrained` (any registered family)."""
        directory = Path(directory)
        cfg_path, weights = directory / "config.json", directory / "model.safetensors"
        if not cfg_path.is_file() or not weights.is_file():
            raise UserError(
                f"{str(directory)!r} is not a saved model: it needs config.json and model.safetensors"
            )
        meta = json.loads(cfg_path.read_text())
        model = create(meta["model"], **meta["config"])
        model.load_state_dict(load_file(str(weights), device=str(map_location)))
        return model.to(map_location)


def state_dict_for_save(module: nn.Module) -> dict[str, Tensor]:
    """A state dict safetensors accepts: contiguous tensors, shared storage cloned apart."""
    out, seen = {}, set()
    for k, v in module.state_dict().items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        out[k] = v.detach().clone().contiguous() if key in seen else v.detach().contiguous()
        seen.add(key)
    return out


def write_json(path: Path, data: Any) -> None:
    """Write JSON and fsync it, so that a later rename publishes complete contents."""
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def replace_dir(src: Path, dst: Path) -> None:
    """Publish folder ``src`` at ``dst`` with an atomic rename (an old ``dst`` is replaced)."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, dst)


def register_model(name: str, help: str = "", **defaults: Any):
    """Class decorator: register ``cls`` under ``name`` with config ``defaults``.

    One class may be registered under several names with different defaults (``ddpm`` and
    ``ddim`` share a class and differ only in the default sampler).
    """

    def deco(cls):
        MODELS.register(name, help or (cls.__doc__ or "").strip().splitlines()[0])((cls, defaults))
        return cls

    return deco


def create(name: str, **overrides: Any) -> GenerativeModel:
    """Build a registered model: ``genlab.create("vae", data_shape=(1, 28, 28))``."""
    cls, defaults = MODELS.get(name)
    cfg = apply_overrides(cls.config_class(), {**defaults, **overrides})
    model = cls(cfg)
    model.name = name
    return model


def config_fields(name: str) -> dict[str, Any]:
    """The resolved default config of a registered model, as a dict."""
    cls, defaults = MODELS.get(name)
    return dataclasses.asdict(apply_overrides(cls.config_class(), defaults))
