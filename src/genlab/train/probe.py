"""``genlab eval RUN --probe linear|knn|finetune [--labels 10%]``: how good a representation is.

The linear probe and k-NN classify frozen ``encode`` features (``genlab.vision.probes``);
fine-tuning trains the whole network through the trainer with layer-wise lr decay 0.75 (MAE's
recipe: AdamW, weight decay 0.05, label smoothing 0.1, random crops, no mixup, for every network;
an MAE becomes a ViT with average pooling first). ``--labels`` keeps a class-stratified share of
the training labels. Results are merged into the run's ``metrics.json`` under ``"probe"``.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from genlab.data.dataset import Splits
from genlab.errors import UserError
from genlab.model import Model
from genlab.train.assess import merge_results, run_data
from genlab.train.config import TrainConfig
from genlab.train.saved import load_run_model
from genlab.train.trainer import Trainer
from genlab.vision.classifier import Classifier
from genlab.vision.mae import MAE
from genlab.vision.probes import KNN_K, KNN_TEMPERATURE, LinearProbeSettings, accuracy, extract, knn_predict, label_subset, linear_probe

PROBES = ("linear", "knn", "finetune")
LAYER_DECAY = 0.75
FINETUNE_EPOCHS, FINETUNE_BATCH, FINETUNE_LR, FINETUNE_WEIGHT_DECAY = 30, 128, 1e-3, 0.05
RECIPE = dict(layer_decay=LAYER_DECAY, label_smoothing=0.1, crop_pad=2, mixup=0.0)  # every fine-tuned network's


def parse_labels(text: str | None) -> float:
    """'10%' or '0.1' -> 0.1; None -> 1.0 (every label)."""
    if text is None:
        return 1.0
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UserError(f"--labels {text!r}: give a share of the training labels, e.g. 10% or 0.1") from None
    if not 0 < value <= 1:
        raise UserError(f"--labels {text!r}: must be more than 0% and at most 100%")
    return value


def finetune_model(model: Model, num_classes: int) -> Classifier:
    """The network to fine-tune for ``num_classes`` with the :data:`RECIPE`'s options: a copy of a classifier
    (its head replaced when the classes differ; its own training options replaced), or a ViT made from an
    MAE encoder."""
    if isinstance(model, MAE):
        return model.to_vit(num_classes=num_classes, global_pool="avg", **RECIPE)
    if isinstance(model, Classifier):
        out = with_head(copy.deepcopy(model), num_classes)
        out.config = dataclasses.replace(out.config, **RECIPE)
        return out
    raise UserError(f"fine-tuning needs a vit, resnet or mae run; {model.name!r} is a {type(model).__name__}")


def with_head(model: Classifier, num_classes: int) -> Classifier:
    """``model`` with a fresh zero-initialised head for ``num_classes`` (kept if it already fits)."""
    from genlab.model import create
    from genlab.weights import unique_state_dict

    if model.config.num_classes == num_classes:
        return model
    fresh = create(model.name, **{**dataclasses.asdict(model.config), "num_classes": num_classes})
    state = {k: v for k, v in unique_state_dict(model).items() if not k.startswith(model.head_name + ".")}
    fresh.load_state_dict(state, strict=False)
    return fresh


def epochs_to_steps(epochs: int, examples: int) -> int:
    return max(1, epochs * examples // min(FINETUNE_BATCH, examples))


def fine_tune(net: Classifier, splits: Splits, steps: int, out: Path, *, seed: int = 0,
              device: str | torch.device = "cpu", show_progress: bool = False, bf16: bool = False) -> dict[str, Any]:
    """Train ``net`` on ``splits.train`` with the fine-tuning recipe (AdamW lr 1e-3, weight decay 0.05,
    10% warm-up, cosine; no EMA); returns the run's metrics (``test_accuracy`` on ``splits.test``)."""
    cfg = TrainConfig(steps=steps, batch_size=min(FINETUNE_BATCH, len(splits.train)), lr=FINETUNE_LR,
                      weight_decay=FINETUNE_WEIGHT_DECAY, warmup=max(1, steps // 10), ema_decay=0.0, seed=seed, ckpt_every=steps,
                      eval_examples=0, device=str(device), bf16=bf16)
    trainer = Trainer(net, splits, cfg, out)
    trainer.show_progress = show_progress
    return trainer.fit()


def probe(path: str | Path, kind: str, labels: str | None = None, *, seed: int = 0, epochs: int | None = None,
          data: str | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
          show_progress: bool = True) -> tuple[str, dict[str, Any]]:
    """Run one probe on a run (or saved model) folder; returns its key and results."""
    if kind not in PROBES:
        raise UserError(f"--probe {kind!r}: choose one of {', '.join(PROBES)}")
    path = Path(path)
    share = parse_labels(labels)
    model = load_run_model(path, device=device).eval()
    if not model.can("encode"):
        raise UserError(f"a probe needs a model with an encoder; {model.name!r} can: "
                        f"{', '.join(model.capabilities()) or 'nothing'}")
    splits = run_data(path, data)
    train, test = splits.train, splits.test
    if train.y is None or test.y is None or train.num_classes < 2:
        raise UserError(f"a probe needs labelled data with at least 2 classes; {train.name!r} has none")
    if tuple(train.shape) != tuple(model.config.data_shape):
        raise UserError(f"the model takes examples of shape {tuple(model.config.data_shape)} but data "
                        f"{train.name!r} holds {train.shape}")
    idx = label_subset(train.y, share, seed)
    key = f"{kind} labels={share:.0%} seed={seed}"
    t0 = time.perf_counter()
    if kind in ("linear", "knn"):
        train_f, test_f = extract(model, train.x[idx], batch_size), extract(model, test.x, batch_size)
        if kind == "knn":
            results = {"accuracy": accuracy(knn_predict(train_f, train.y[idx], test_f, train.num_classes), test.y),
                       "k": KNN_K, "temperature": KNN_TEMPERATURE}
        else:
            settings = LinearProbeSettings(seed=seed, **({"epochs": epochs} if epochs else {}))
            head = linear_probe(train_f, train.y[idx], train.num_classes, settings)
            with torch.no_grad():
                results = {"accuracy": accuracy(head(test_f), test.y), "epochs": settings.epochs}
        results["feature_dim"] = train_f.shape[1]
    else:
        epochs = epochs or FINETUNE_EPOCHS
        out = path / "eval" / f"finetune-{share:.0%}-seed{seed}"
        shutil.rmtree(out, ignore_errors=True)  # a probe run again starts afresh
        m = fine_tune(finetune_model(model, train.num_classes), Splits(train.subset(idx), test),
                      epochs_to_steps(epochs, len(idx)), out, seed=seed, device=device, show_progress=show_progress)
        results = {"accuracy": m["test_accuracy"], "epochs": epochs, "steps": m["steps"], "layer_decay": LAYER_DECAY}
    results.update(train_examples=len(idx), test_examples=len(test), seconds=round(time.perf_counter() - t0, 2))
    merge_results(path / "metrics.json", "probe", key, results)
    return key, results
