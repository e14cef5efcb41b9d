"""Reading a trained model back: from a run folder (``runs/NAME``) or a saved model folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genlab.atomic import readable_dir
from genlab.errors import UserError
from genlab.model import Model, create
from genlab.train.checkpoint import list_checkpoints
from genlab.weights import load_weights

RUN_FILE = "config.json"


def load_run_model(path: str | Path, device: str | torch.device = "cpu") -> Model:
    """The EMA model of a run folder (its final ``model/`` or latest checkpoint) or a saved model folder."""
    path = Path(path)
    if not readable_dir(path).exists():
        raise UserError(f"{str(path)!r} does not exist; pass a run folder (runs/NAME) or a saved model folder")
    if (readable_dir(path / "model") / "config.json").is_file():
        return Model.from_pretrained(path / "model", map_location=device)
    if (readable_dir(path) / "model.safetensors").is_file():
        return Model.from_pretrained(path, map_location=device)
    run_file = path / RUN_FILE
    if run_file.is_file():
        saved = json.loads(run_file.read_text())
        found = list_checkpoints(path / "checkpoints")
        if not found:
            raise UserError(f"{str(path)!r} holds a run that has not saved a checkpoint yet; train it first")
        model = create(saved["model"], **saved["model_config"])
        load_weights(model, found[-1] / "ema.safetensors")
        return model.to(device).eval()
    raise UserError(f"{str(path)!r} is neither a run folder nor a saved model (no config.json)")
