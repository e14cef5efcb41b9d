"""The one trainer: every family trains through it, owning none of its mechanics.

Per step (a "round") it runs each of the model's phases ``phase.steps`` times: fresh batch,
``model.loss(batch, phase)``, backward, global-norm clipping, AdamW with warm-up + cosine LR.
Then it updates the EMA weights (used for sampling and evaluation), logs, samples and
checkpoints. Non-finite losses or gradients skip the update and are counted; loss spikes are
detected against the sliding-window maximum of recent losses. Resuming from a checkpoint
restores parameters, optimizer moments, data order and every RNG state, so N + N steps equal
2N straight steps bitwise on CPU.
"""

from __future__ import annotations

import base64
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.data.dataset import Splits
from genlab.errors import UserError
from genlab.model import GenerativeModel
from genlab.report.grid import class_columns, save_samples
from genlab.report.html import write_report
from genlab.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from genlab.train.config import TrainConfig
from genlab.train.ema import EMA
from genlab.train.evaluate import evaluate
from genlab.train.monitor import JsonlLog, NanGuard, SpikeDetector

SAMPLE_SEED = 1234


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but CUDA is not available; use device=cpu")
    return torch.device(name)


class EpochSampler:
    """Batches without replacement; epoch e's order is a permutation seeded by (seed, e).

    Its whole state is (epoch, position), so resuming needs no stored permutation.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, min(batch_size, n), seed
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g)

    def next(self) -> Tensor:
        if self.pos + self.batch_size > self.n:
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation()
        idx = self._perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._perm = self._permutation()


def _encode_rng(state: Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode()


def _decode_rng(text: str) -> Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def rng_state() -> dict[str, Any]:
    state = {"torch": _encode_rng(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_encode_rng(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(_decode_rng(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_decode_rng(s) for s in state["cuda"]])


class Trainer:
    """Trains ``model`` on ``data.train``; writes everything under ``out`` (see docs/training.md)."""

    def __init__(self, model: GenerativeModel, data: Splits, config: TrainConfig, out: str | Path) -> None:
        config.validate()
        self.cfg, self.data, self.out = config, data, Path(out)
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.phases = model.phases()
        self.optimizers = {
            p.name: torch.optim.AdamW(
                p.parameters, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay
            )
            for p in self.phases
        }
        self.ema = EMA(self.model, config.ema_decay)
        self.sampler = EpochSampler(len(data.train), config.batch_size, config.seed)
        self.nan_guard = NanGuard(config.nan_patience)
        self.spikes = SpikeDetector(config.spike_window, config.spike_factor)
        self.step = 0
        self.elapsed = 0.0
        self.show_progress = True

    # -- schedule ---------------------------------------------------------------------------
    def progress(self) -> float:
        """Fraction of training done: by steps, or by time when a budget is set (whichever is further)."""
        done = self.step / self.cfg.steps
        if self.cfg.time_budget:
            done = max(done, self.elapsed / self.cfg.time_budget)
        return min(done, 1.0)

    def lr(self) -> float:
        warm = min(1.0, (self.step + 1) / self.cfg.warmup) if self.cfg.warmup else 1.0
        return self.cfg.lr * warm * 0.5 * (1.0 + math.cos(math.pi * self.progress()))

    # -- one step ---------------------------------------------------------------------------
    def _batch(self) -> dict[str, Tensor]:
        batch = self.data.train.batch(self.sampler.next())
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _phase_update(self, phase_name: str, params: list, opt: torch.optim.Optimizer) -> dict[str, float]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            out = self.model.loss(self._batch(), phase_name)
        loss = out["loss"]
        logs = {k: float(v.detach()) for k, v in out.items()}
        if not self.nan_guard.check(logs["loss"], self.step):
            opt.zero_grad(set_to_none=True)
            return logs
        loss.backward()
        max_norm = self.cfg.grad_clip or math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        logs["grad_norm"] = norm
        if self.nan_guard.check(norm, self.step):
            for group in opt.param_groups:
                group["lr"] = self.lr()
            opt.step()
        opt.zero_grad(set_to_none=True)
        return logs

    def train_step(self) -> dict[str, float]:
        self.model.train()
        logs: dict[str, float] = {}
        for phase in self.phases:
            for _ in range(phase.steps):
                out = self._phase_update(phase.name, phase.parameters, self.optimizers[phase.name])
            prefix = "" if len(self.phases) == 1 else f"{phase.name}/"
            logs.update({prefix + k: v for k, v in out.items()})
        self.ema.update(self.model)
        self.step += 1
        return logs

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "ema_updates": self.ema.updates,
            "sampler": self.sampler.state(),
            "nan_total": self.nan_guard.total,
            "nan_in_a_row": self.nan_guard.in_a_row,
            "spikes": self.spikes.state(),
            "rng": rng_state(),
        }

    def save(self) -> Path:
        return save_checkpoint(
            self.out / "checkpoints", self.step, self.model, self.ema.model, self.optimizers, self.state(), self.cfg.keep
        )

    def resume(self) -> None:
        path = latest_checkpoint(self.out / "checkpoints")
        st = load_checkpoint(path, self.model, self.ema.model, self.optimizers, self.device)
        self.step, self.elapsed, self.ema.updates = st["step"], st["elapsed"], st["ema_updates"]
        self.sampler.load_state(st["sampler"])
        self.nan_guard.total, self.nan_guard.in_a_row = st["nan_total"], st["nan_in_a_row"]
        self.spikes.load_state(st["spikes"])
        set_rng_state(st["rng"])
        _truncate_log(self.out / "metrics.jsonl", self.step)

    # -- outputs ----------------------------------------------------------------------------
    def sample_grid(self, path: Path) -> None:
        if not self.model.can("sample"):
            return
        g = torch.Generator().manual_seed(SAMPLE_SEED)
        x = self.ema.model.sample(self.cfg.num_samples, generator=g)
        ref = self.data.test.x[:2000] if self.data.test.kind == "points" else None
        save_samples(x, path, reference=ref, title=f"{self.model.name}, step {self.step}",
                     nrow=class_columns(self.model.config.num_classes))

    def _done(self) -> bool:
        if self.step >= self.cfg.steps:
            return True
        return bool(self.cfg.time_budget) and self.elapsed >= self.cfg.time_budget

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``steps`` (or the time budget), then write model, samples, metrics."""
        from tqdm.auto import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self.resume()
        else:
            torch.manual_seed(self.cfg.seed)
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
        log = JsonlLog(self.out / "metrics.jsonl")
        by_time = bool(self.cfg.time_budget) and self.cfg.steps >= 10**9
        bar = tqdm(total=None if by_time else self.cfg.steps, initial=self.step, desc=f"train {self.model.name}",
                   dynamic_ncols=True, mininterval=0.5, disable=not self.show_progress)
        start, start_elapsed = time.perf_counter(), self.elapsed
        try:
            while not self._done():
                logs = self.train_step()
                self.elapsed = start_elapsed + time.perf_counter() - start
                spike = self.spikes.update(logs.get("loss", next(iter(logs.values()))))
                bar.update(1)
                left = {"left": f"{max(self.cfg.time_budget - self.elapsed, 0):.0f}s"} if by_time else {}
                bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.4g}", **left, refresh=False)
                if self.step % self.cfg.log_every == 0 or spike:
                    log.write({"step": self.step, "time": round(self.elapsed, 3), "lr": self.lr(), **logs,
                               "spike": spike, "nan_skipped": self.nan_guard.total})
                if self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
                    (self.out / "samples").mkdir(exist_ok=True)
                    self.sample_grid(self.out / "samples" / f"step_{self.step}.png")
                if self.step % self.cfg.ckpt_every == 0:
                    self.save()
        except KeyboardInterrupt:
            self.save()
            raise UserError(f"interrupted at step {self.step}; checkpoint saved, continue with --resume") from None
        finally:
            bar.close()
            log.close()
        if not (self.out / "checkpoints" / f"step_{self.step}").exists():
            self.save()
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Save the EMA model, the final sample grid and test-set metrics."""
        self.ema.model.save_pretrained(self.out / "model")
        self.sample_grid(self.out / "samples.png")
        metrics = evaluate(self.ema.model, self.data.test, self.cfg.batch_size, self.cfg.eval_batches)
        metrics.update(
            steps=self.step,
            train_seconds=round(self.elapsed, 2),
            nan_skipped=self.nan_guard.total,
            loss_spikes=self.spikes.spikes,
        )
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        write_report(self.out, metrics, f"genlab {self.model.name} on {self.data.train.name}")
        return metrics


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint being resumed (they will be redone)."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        path.write_text("".join(ln + "\n" for ln in keep))
