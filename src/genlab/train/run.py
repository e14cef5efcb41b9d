"""A training run on disk: ``runs/<name>/`` with its resolved config, checkpoints and outputs.

``start_run`` validates everything (data, model, settings) before it writes a single file, so a
bad option never leaves a half-made run behind; ``load_run_model`` rebuilds a run's EMA model
for sampling and evaluation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from genlab.config import apply_overrides, field_types, to_dict
from genlab.data import load_dataset
from genlab.data.dataset import Splits
from genlab.errors import UserError
from genlab.model import GenerativeModel, config_fields, create
from genlab.train.checkpoint import latest_checkpoint
from genlab.train.config import TrainConfig
from genlab.train.trainer import Trainer

RUN_FILE = "config.json"


def split_overrides(model: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route ``key=value`` pairs to the model's config or the trainer's; unknown keys are errors."""
    model_keys, train_keys = set(config_fields(model)), set(field_types(TrainConfig))
    to_model, to_train = {}, {}
    for key, value in overrides.items():
        if key in train_keys:
            to_train[key] = value
        elif key in model_keys:
            to_model[key] = value
        else:
            raise UserError(
                f"unknown option {key!r} for model {model!r}; model options: {', '.join(sorted(model_keys))}; "
                f"training options: {', '.join(sorted(train_keys))}"
            )
    return to_model, to_train


def _data_fields(data: Splits) -> dict[str, Any]:
    train = data.train
    return {"data_shape": train.shape, "num_classes": train.num_classes, "bins": train.bins}


def start_run(
    model_name: str,
    data: str,
    out: str | Path,
    overrides: dict[str, Any],
    *,
    image_size: int | None = None,
    resume: bool = False,
) -> Trainer:
    """Build (or reload, with ``resume``) a run's model, data and trainer; writes only ``config.json``."""
    out = Path(out)
    run_file = out / RUN_FILE
    if resume:
        if not run_file.is_file():
            raise UserError(f"no run to resume in {str(out)!r} (missing {RUN_FILE}); train without --resume first")
        saved = json.loads(run_file.read_text())
        if saved["model"] != model_name:
            raise UserError(f"{str(out)!r} holds a {saved['model']!r} run, not {model_name!r}")
        latest_checkpoint(out / "checkpoints")
        to_model, to_train = split_overrides(model_name, overrides)
        if to_model:
            raise UserError(f"cannot change model options when resuming: {', '.join(to_model)}")
        splits = load_dataset(saved["data"], image_size=saved["image_size"])
        model = create(model_name, **saved["model_config"])
        train_cfg = apply_overrides(TrainConfig(), {**saved["train"], **to_train})
        record = {**saved, "train": to_dict(train_cfg)}
    else:
        if (out / "checkpoints").exists():
            raise UserError(f"{str(out)!r} already holds a run; pass --resume to continue it or choose another --out")
        to_model, to_train = split_overrides(model_name, overrides)
        train_cfg = apply_overrides(TrainConfig(), to_train)
        splits = load_dataset(data, image_size=image_size)
        torch.manual_seed(train_cfg.seed)
        model = create(model_name, **{**_data_fields(splits), **to_model})
        record = {
            "model": model_name,
            "model_config": to_dict(model.config),
            "data": data,
            "image_size": image_size,
            "train": to_dict(train_cfg),
        }
    trainer = Trainer(model, splits, train_cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(record, indent=2))
    return trainer


def load_run_model(path: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """The EMA model of a run folder (its final ``model/`` or latest checkpoint) or a saved model folder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{str(path)!r} does not exist; pass a run folder (runs/NAME) or a saved model folder")
    if (path / "model" / "config.json").is_file():
        return GenerativeModel.from_pretrained(path / "model", map_location=device)
    if (path / "model.safetensors").is_file():
        return GenerativeModel.from_pretrained(path, map_location=device)
    run_file = path / RUN_FILE
    if run_file.is_file():
        saved = json.loads(run_file.read_text())
        ckpt = latest_checkpoint(path / "checkpoints")
        model = create(saved["model"], **saved["model_config"])
        model.load_state_dict(load_file(str(ckpt / "ema.safetensors")))
        return model.to(device).eval()
    raise UserError(f"{str(path)!r} is neither a run folder nor a saved model (no config.json)")


def describe(trainer: Trainer) -> str:
    cfg = trainer.cfg
    n = sum(p.numel() for p in trainer.model.parameters())
    return (
        f"{trainer.model.name}: {n / 1e6:.2f}M parameters on {trainer.device}; data {trainer.data.train.name} "
        f"({len(trainer.data.train)} train / {len(trainer.data.test)} test, shape {trainer.data.train.shape}); "
        + ", ".join(f"{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg) if f.name in ("steps", "time_budget", "batch_size", "lr", "bf16"))
    )
