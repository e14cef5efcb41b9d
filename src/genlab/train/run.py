"""A training run on disk: ``runs/<name>/`` with its resolved config, checkpoints and outputs.

``start_run`` validates everything (data, model, settings, ``--init`` weights) before it writes a
single file, so a bad option never leaves a half-made run behind.

Resuming keeps the run's data and model. ``steps`` stays the run's total target (a larger value
extends it); a time budget given on resume is this invocation's: it is added to the time the run
has already trained (``docs/training.md``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from genlab.atomic import write_text_atomic
from genlab.config import apply_overrides, field_types, to_dict
from genlab.data import load_dataset
from genlab.errors import UserError
from genlab.model import config_fields, create
from genlab.train.checkpoint import latest_checkpoint
from genlab.train.config import TrainConfig
from genlab.train.distributed import world_from_env
from genlab.train.precision import native_bf16
from genlab.train.saved import RUN_FILE
from genlab.train.trainer import Trainer
from genlab.train.warm_start import inherited_options, read_init

DEFAULT_DATA = "mnist5k"


def split_overrides(model: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route ``key=value`` pairs to the model's config or the trainer's; unknown keys are errors.

    A key both have (a GAN's ``lr`` and ``optimizer``, which its phases use) goes to both, so that
    ``--lr`` means the same for every model.
    """
    model_keys, train_keys = set(config_fields(model)), set(field_types(TrainConfig)) - {"phases"}
    to_model, to_train = {}, {}
    for key, value in overrides.items():
        phase, dot, option = key.partition(".")
        if dot and phase and option:  # <phase>.<option>: checked against the model's phases by the trainer
            to_train.setdefault("phases", {}).setdefault(phase, {})[option] = value
        elif key in train_keys:
            to_train[key] = value
            if key in model_keys:
                to_model[key] = value
        elif key in model_keys:
            to_model[key] = value
        else:
            raise UserError(
                f"unknown option {key!r} for model {model!r}; model options: {', '.join(sorted(model_keys))}; "
                f"training options: {', '.join(sorted(train_keys))}; phase options: PHASE.OPTION=value"
            )
    return to_model, to_train


def start_run(
    model_name: str,
    data: str | None,
    out: str | Path,
    overrides: dict[str, Any],
    *,
    image_size: int | None = None,
    resume: bool = False,
    init: str | Path | None = None,
) -> Trainer:
    """Build (or reload, with ``resume``) a run's model, data and trainer; writes only ``config.json``.

    ``data`` None means the run's data on resume and ``mnist5k`` otherwise. ``init`` starts a new run
    from trained weights (``genlab.train.warm_start``).
    """
    out = Path(out)
    run_file = out / RUN_FILE
    if resume and init is not None:
        raise UserError("--init starts a new run from trained weights; a resumed run continues from its own "
                        "checkpoint: leave out one of --init and --resume")
    if init is not None and out.resolve() in (Path(init).resolve(), *Path(init).resolve().parents):
        raise UserError(f"--out {str(out)!r} holds the --init weights; write the new run to another folder")
    fresh: list[str] = []
    if resume:
        if not run_file.is_file():
            raise UserError(f"no run to resume in {str(out)!r} (missing {RUN_FILE}); train without --resume first")
        saved = json.loads(run_file.read_text())
        if saved["model"] != model_name:
            raise UserError(f"{str(out)!r} holds a {saved['model']!r} run, not {model_name!r}")
        ckpt = latest_checkpoint(out / "checkpoints")
        for flag, given, kept in (("--data", data, saved["data"]), ("--image-size", image_size, saved["image_size"])):
            if given is not None and given != kept:
                raise UserError(f"{flag} {given} differs from the run's {kept}: a resumed run keeps its data; "
                                f"leave {flag} out or start a new run with another --out")
        to_model, to_train = split_overrides(model_name, overrides)
        if to_model:  # repeating the run's own values is fine; changing them is not
            kept = to_dict(create(model_name, **saved["model_config"]).config)
            asked = to_dict(create(model_name, **{**saved["model_config"], **to_model}).config)
            changed = [k for k in to_model if asked.get(k) != kept.get(k)]
            if changed:
                raise UserError(f"cannot change model options when resuming: {', '.join(changed)}")
        if "time_budget" in to_train:  # this invocation's budget, on top of the time already trained
            trained = json.loads((ckpt / "trainer.json").read_text())["elapsed"]
            to_train["time_budget"] = trained + float(to_train["time_budget"])
        splits = load_dataset(saved["data"], image_size=saved["image_size"])
        model = create(model_name, **saved["model_config"])
        phases = {**saved["train"].get("phases", {})}
        for name, options in to_train.pop("phases", {}).items():
            phases[name] = {**phases.get(name, {}), **options}
        train_cfg = apply_overrides(TrainConfig(), {**saved["train"], **to_train, "phases": phases})
        record = {**saved, "train": to_dict(train_cfg)}
    else:
        if (out / "checkpoints").exists():
            raise UserError(f"{str(out)!r} already holds a run; pass --resume to continue it or choose another --out")
        data = DEFAULT_DATA if data is None else data
        to_model, to_train = split_overrides(model_name, overrides)
        train_cfg = apply_overrides(TrainConfig(), to_train)
        splits = load_dataset(data, image_size=image_size)
        source, state = read_init(init, model_name) if init is not None else (None, {})
        torch.manual_seed(train_cfg.seed)
        model = create(model_name, data=splits, **{**inherited_options(source, model_name), **to_model})
        if init is not None:
            fresh = model.load_warm_start(state, f"--init {str(init)!r}", source)
        record = {
            "model": model_name,
            "model_config": to_dict(model.config),
            "data": data,
            "image_size": image_size,
            "train": to_dict(train_cfg),
            **({"init": str(init)} if init is not None else {}),
        }
    trainer = Trainer(model, splits, train_cfg, out, world=world_from_env())
    record["train"] = to_dict(trainer.cfg)  # bf16=auto saved as what it chose, so a resume trains alike
    if trainer.main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_file, json.dumps(record, indent=2))
        if init is not None:
            what = "weights" if source is None else "weights and options"  # a file of tensors only: weights
            print(f"init: {what} from {init}" + (f"; {', '.join(fresh)} start fresh" if fresh else ""), file=sys.stderr)
    return trainer


def describe(trainer: Trainer) -> str:
    cfg = trainer.cfg
    n = sum(p.numel() for p in trainer.model.parameters())
    where = f"{trainer.world.size} processes ({trainer.device.type})" if trainer.world.size > 1 else str(trainer.device)
    return (
        f"{trainer.model.name}: {n / 1e6:.2f}M parameters on {where}; data {trainer.data.train.name} "
        f"({len(trainer.data.train)} train / {len(trainer.data.test)} test, shape {trainer.data.train.shape}); "
        + ", ".join(f"{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg) if f.name in ("steps", "time_budget", "batch_size", "lr", "bf16"))
        + ("" if not cfg.bf16 or native_bf16(trainer.device) else
           f"\nwarning: {trainer.device} has no native bf16, so bf16 autocast is emulated and slower than fp32; "
           "bf16=auto uses it only where it is native")
    )
