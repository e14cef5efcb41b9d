"""The trainer's settings (every field can be set as ``key=value`` on the command line)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from genlab.errors import UserError
from genlab.model import OPTIMIZERS


@dataclass
class TrainConfig:
    steps: int = 1000  # optimisation rounds (each runs every phase's updates once)
    time_budget: float = 0.0  # seconds of training in all (0 = no limit); the CLI's --time-budget on resume adds to it
    batch_size: int = 128  # global batch: split evenly across processes under torchrun
    optimizer: str = "adamw"  # adamw | adam | rmsprop | sgd (a phase may choose its own)
    lr: float = 2e-4  # peak learning rate
    weight_decay: float = 0.0  # decoupled for adamw; not applied to norms, biases, embeddings/tokens
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.0  # sgd / rmsprop
    warmup: int = 100  # linear warm-up steps, then cosine decay to 0
    grad_clip: float = 1.0  # max global gradient norm per phase (0 = no clipping)
    ema_decay: float = 0.999
    bf16: bool | Literal["auto"] = False  # bfloat16 autocast for the forward pass; auto = where the device has native bf16
    fp16: bool = False  # float16 autocast with a gradient scaler (CUDA only)
    seed: int = 0
    sample_every: int = 0  # sample grid every K steps (0 = only at the end)
    ckpt_every: int = 500  # checkpoint every K steps (and always at the end)
    keep: int = 3  # checkpoints kept
    log_every: int = 10  # JSONL record every K steps
    nan_patience: int = 20  # stop after this many non-finite updates in a row
    spike_window: int = 100  # loss-spike detection: window of previous losses
    spike_factor: float = 3.0  # ... a loss above factor x their maximum is a spike
    num_samples: int = 64  # samples in each grid
    eval_examples: int = 512  # test examples for the final metrics (0 = the whole test set)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: cuda means cuda:LOCAL_RANK)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-phase options: critic.lr=1e-4

    def validate(self) -> None:
        positive = ("steps", "batch_size", "ckpt_every", "keep", "log_every", "nan_patience", "spike_window", "num_samples")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("time_budget", "weight_decay", "warmup", "grad_clip", "sample_every", "eval_examples", "momentum"):
            if getattr(self, name) < 0:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 0")
        if self.lr <= 0:
            raise UserError(f"lr={self.lr}: must be > 0")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer={self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be in [0, 1)")
        if self.spike_factor <= 1:
            raise UserError(f"spike_factor={self.spike_factor}: must be > 1")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise UserError(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.bf16 and self.fp16:
            raise UserError(f"bf16={str(self.bf16).lower()} and fp16=true: choose one precision")


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '1.5h' -> seconds."""
    t = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    mult = units.get(t[-1:], None)
    number = t[:-1] if mult else t
    try:
        value = float(number) * (mult or 1)
    except ValueError:
        raise UserError(f"time budget {text!r}: use seconds or a unit, e.g. 300, 90s, 5m, 1h") from None
    if not 0 < value < math.inf:
        raise UserError(f"time budget {text!r}: must be > 0")
    return value
