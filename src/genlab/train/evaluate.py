"""Test-set metrics for any model: mean loss terms and, where defined, bits/dim."""

from __future__ import annotations

import math
from typing import Any

import torch

from genlab.data.dataset import Dataset
from genlab.metrics.likelihood import bits_per_dim
from genlab.model import GenerativeModel

EVAL_SEED = 4321


@torch.no_grad()
def evaluate(model: GenerativeModel, data: Dataset, batch_size: int, max_batches: int = 0) -> dict[str, Any]:
    """Average of every loss term of the first phase, plus log-likelihood where the model has one.

    Seeded, so the same model gives the same numbers. ``log_prob`` is reported in nats per example
    and in bits per dimension (of the discrete data when it is quantized).
    """
    model.eval()
    g = torch.Generator().manual_seed(EVAL_SEED)
    fork_devices = [model.device] if model.device.type == "cuda" else []
    sums: dict[str, float] = {}
    n = 0
    has_lp = model.can("log_prob")
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(EVAL_SEED)
        for i, start in enumerate(range(0, len(data), batch_size)):
            if max_batches and i >= max_batches:
                break
            batch = data.batch(torch.arange(start, min(start + batch_size, len(data))))
            batch = {k: v.to(model.device) for k, v in batch.items()}
            b = len(batch["x"])
            for k, v in model.loss(batch, model.phases()[0].name).items():
                sums[f"test_{k}"] = sums.get(f"test_{k}", 0.0) + float(v) * b
            if has_lp:
                sums["log_prob"] = sums.get("log_prob", 0.0) + float(model.log_prob(batch["x"], generator=g).sum())
            n += b
    out: dict[str, Any] = {k: v / n for k, v in sums.items()}
    if has_lp:
        out["nll_nats"] = -out.pop("log_prob")
        out["bits_per_dim"] = bits_per_dim(-out["nll_nats"], math.prod(data.shape))
    out["test_examples"] = n
    return out
