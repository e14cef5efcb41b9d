"""Module weights as safetensors: each tensor stored once, loaded with shape checks.

A module may reach one tensor under several names (the diffusion model's ``net`` is also
``denoiser.net``; a GPT ties its embedding to its output layer). ``save_weights`` stores the first
name only; ``load_weights`` accepts a file without the aliases (they are the same tensor) and one
that has them (files written before deduplication).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genlab.atomic import fsync_file
from genlab.errors import UserError


def _storage_key(t: Tensor) -> tuple:
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())


def aliases(module: nn.Module) -> dict[str, str]:
    """Names that are views of an earlier name's tensor: ``{alias: first name}``."""
    first: dict[tuple, str] = {}
    out = {}
    for name, t in module.state_dict(keep_vars=True).items():
        key = _storage_key(t)
        if key in first:
            out[name] = first[key]
        else:
            first[key] = name
    return out


def unique_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """The state dict without aliases, as contiguous detached tensors (what safetensors stores)."""
    skip = aliases(module)
    return {k: v.detach().contiguous() for k, v in module.state_dict().items() if k not in skip}


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Write ``module``'s tensors to ``path`` (safetensors), each once, and fsync the file."""
    save_file(unique_state_dict(module), str(path))
    fsync_file(Path(path))


def load_state(module: nn.Module, tensors: dict[str, Tensor], source: str) -> None:
    """Load ``tensors`` into ``module`` in place: every key must exist with the same shape, and
    every module tensor must be given, directly or through an alias."""
    own = module.state_dict()
    unexpected = sorted(set(tensors) - set(own))
    if unexpected:
        raise UserError(f"{source}: unexpected weights {', '.join(unexpected[:5])} (not in {type(module).__name__})")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise UserError(f"{source}: {k} has shape {tuple(v.shape)} but the model expects {tuple(own[k].shape)}")
    alias = aliases(module)
    missing = sorted(k for k in own if k not in tensors and alias.get(k) not in tensors)
    if missing:
        raise UserError(f"{source}: missing weights {', '.join(missing[:5])}")
    module.load_state_dict(tensors, strict=False)


def load_weights(module: nn.Module, path: str | Path, device: str | torch.device = "cpu") -> None:
    """Load a file written by :func:`save_weights` (or with aliases stored too) into ``module``."""
    load_state(module, load_file(str(path), device=str(device)), str(path))
