"""Crash-safe checkpoints: ``checkpoints/step_N/`` published by an atomic folder rename.

A checkpoint holds the model, EMA and optimizer tensors (safetensors) and the trainer state
(JSON: step, data order, every RNG state). It is written into a temporary folder, every file is
fsynced, and only then renamed to ``step_N``; a crash or SIGKILL mid-write leaves at worst a stale
temporary folder, never a half-written ``step_N``. The last ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.model import replace_dir, state_dict_for_save, write_json

FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "trainer.json")
_STEP = re.compile(r"^step_(\d+)$")


def _save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    save_file(tensors, str(path))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def optimizer_to_flat(optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, Tensor], dict]:
    """Split optimizer state dicts into tensors (for safetensors) and the JSON-able rest."""
    tensors: dict[str, Tensor] = {}
    meta: dict[str, Any] = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, st in sd["state"].items():
            for key, value in st.items():
                if isinstance(value, Tensor):
                    tensors[f"{name}/{idx}/{key}"] = value.detach().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[key] = value
        meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    return tensors, meta


def optimizer_from_flat(optimizers: dict[str, torch.optim.Optimizer], tensors: dict[str, Tensor], meta: dict) -> None:
    for name, opt in optimizers.items():
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            phase, idx, field = key.split("/", 2)
            if phase == name:
                state.setdefault(int(idx), {})[field] = value
        for idx, fields in meta[name]["scalars"].items():
            state.setdefault(int(idx), {}).update(fields)
        groups = [
            {k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta[name]["param_groups"]
        ]
        opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    model: nn.Module,
    ema: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    trainer_state: dict[str, Any],
    keep: int,
) -> Path:
    """Write ``ckpt_dir/step_{step}`` atomically and prune to the newest ``keep``."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for stale in ckpt_dir.glob(".step_*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".step_{step}.tmp-", dir=ckpt_dir))
    try:
        _save_tensors(state_dict_for_save(model), tmp / "model.safetensors")
        _save_tensors(state_dict_for_save(ema), tmp / "ema.safetensors")
        opt_tensors, opt_meta = optimizer_to_flat(optimizers)
        _save_tensors(opt_tensors, tmp / "optimizer.safetensors")
        write_json(tmp / "trainer.json", {**trainer_state, "optimizers": opt_meta})
        final = ckpt_dir / f"step_{step}"
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _fsync_dir(ckpt_dir)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = _STEP.match(p.name)
        if m and p.is_dir() and all((p / f).is_file() for f in FILES):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(ckpt_dir: Path) -> Path:
    found = list_checkpoints(ckpt_dir)
    if not found:
        raise UserError(
            f"no checkpoint to resume from in {str(ckpt_dir)!r}; train without --resume first"
        )
    return found[-1]


def load_checkpoint(
    path: Path,
    model: nn.Module,
    ema: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    device: torch.device,
) -> dict[str, Any]:
    """Restore tensors in place; returns the trainer state."""
    model.load_state_dict(load_file(str(path / "model.safetensors"), device=str(device)))
    ema.load_state_dict(load_file(str(path / "ema.safetensors"), device=str(device)))
    state = json.loads((path / "trainer.json").read_text())
    optimizer_from_flat(optimizers, load_file(str(path / "optimizer.safetensors"), device=str(device)), state.pop("optimizers"))
    return state
