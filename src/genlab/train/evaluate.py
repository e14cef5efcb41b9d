"""Test-set metrics for any model: the family's ``eval_step`` averaged over examples, bits/dim."""

from __future__ import annotations

import math
from typing import Any

import torch

from genlab.data.dataset import Dataset
from genlab.metrics.likelihood import bits_per_dim
from genlab.model import Context, Model

EVAL_SEED = 4321


@torch.no_grad()
def evaluate(model: Model, data: Dataset, batch_size: int, max_examples: int = 0, *, step: int = 0,
             show_progress: bool = False) -> dict[str, Any]:
    """Mean of ``model.eval_step`` over the first ``max_examples`` test examples (0 = all).

    Per-example values (shape (B,)) are averaged over examples, scalars weighted by batch size.
    Seeded, so the same model gives the same numbers. ``log_prob`` is reported as ``nll_nats``
    per example and ``bits_per_dim`` (of the discrete data when it is quantized).
    """
    from tqdm.auto import tqdm

    model.eval()
    n_total = min(len(data), max_examples) if max_examples else len(data)
    g = torch.Generator().manual_seed(EVAL_SEED)
    ctx = Context(step=step, fraction=1.0, random=g)
    fork_devices = [model.device] if model.device.type == "cuda" else []
    sums: dict[str, float] = {}
    n = 0
    bar = tqdm(total=n_total, desc=f"eval {model.name}", unit="ex", dynamic_ncols=True, mininterval=0.5,
               disable=not show_progress, leave=False)
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(EVAL_SEED)
        for start in range(0, n_total, batch_size):
            batch = data.batch(torch.arange(start, min(start + batch_size, n_total)))
            batch = {k: v.to(model.device) for k, v in batch.items()}
            b = len(batch["x"])
            for k, v in model.eval_step(batch, ctx).items():
                total = v.double().sum() if v.dim() else v.double() * b
                sums[k] = sums.get(k, 0.0) + float(total)
            n += b
            bar.update(b)
    bar.close()
    out: dict[str, Any] = {}
    for k, v in sums.items():
        if k == "log_prob":
            out["nll_nats"] = -v / n
            out["bits_per_dim"] = bits_per_dim(v / n, math.prod(data.shape))
        else:
            out[f"test_{k}"] = v / n
    out["test_examples"] = n
    return out
