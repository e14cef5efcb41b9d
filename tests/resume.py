"""Shared check of exact resume: two runs' checkpoints at one step hold bitwise-equal tensors."""

import torch
from safetensors.torch import load_file


def assert_same_checkpoints(a, b, step: int) -> None:
    """Model, EMA and optimizer tensors of runs ``a`` and ``b`` at ``step`` are bitwise equal."""
    for f in ("model", "ema", "optimizer"):
        ta, tb = (load_file(str(r / f"checkpoints/step_{step}/{f}.safetensors")) for r in (a, b))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), f
