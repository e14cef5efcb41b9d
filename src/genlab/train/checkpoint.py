"""Crash-safe checkpoints: ``checkpoints/step_N/`` published by an atomic folder rename.

A checkpoint holds the model, EMA and optimizer tensors (safetensors) and the trainer state
(JSON: step, data order, every RNG state). It is written into a temporary folder, every file is
fsynced, and only then renamed to ``step_N``; a crash or SIGKILL mid-write leaves at worst a stale
temporary folder, never a half-written ``step_N``, and :func:`clean_checkpoints` removes such
leftovers on the next start. The last ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genlab.atomic import fsync_dir, fsync_file, recover_dir, replace_dir, temp_dir_for, write_json
from genlab.errors import UserError
from genlab.weights import load_weights, save_weights

FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "trainer.json")
_STEP = re.compile(r"^step_(\d+)$")


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
        groups = [  # lr_scale: absent from checkpoints written before per-group lr scales
            {"lr_scale": 1.0, **{k: tuple(v) if k == "betas" else v for k, v in g.items()}}
            for g in meta[name]["param_groups"]
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
    clean_checkpoints(ckpt_dir)
    final = ckpt_dir / f"step_{step}"
    tmp = temp_dir_for(final)
    try:
        save_weights(model, tmp / "model.safetensors")
        save_weights(ema, tmp / "ema.safetensors")
        opt_tensors, opt_meta = optimizer_to_flat(optimizers)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        fsync_file(tmp / "optimizer.safetensors")
        write_json(tmp / "trainer.json", {**trainer_state, "optimizers": opt_meta})
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(ckpt_dir)
    return final


def clean_checkpoints(ckpt_dir: Path) -> None:
    """Remove what a killed writer left in ``ckpt_dir`` (temporary and displaced folders)."""
    if not ckpt_dir.is_dir():
        return
    names = {re.sub(r"^\.(step_\d+)\.(tmp|old)-.*$", r"\1", p.name) for p in ckpt_dir.glob(".step_*")}
    for name in names:
        recover_dir(ckpt_dir / name)


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
    load_weights(model, path / "model.safetensors", device)
    load_weights(ema, path / "ema.safetensors", device)
    state = json.loads((path / "trainer.json").read_text())
    optimizer_from_flat(optimizers, load_file(str(path / "optimizer.safetensors"), device=str(device)), state.pop("optimizers"))
    return state
