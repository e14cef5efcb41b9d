"""The one trainer: every family trains through it, owning none of its mechanics.

Per round it runs each of the model's phases ``phase.steps`` times: this rank's share of a fresh
global batch, the model's ``augment``, ``model.loss(batch, phase, ctx)`` (through DDP under
torchrun), backward with only that phase's parameters requiring gradients, clipping, and that
phase's optimizer at lr = phase lr x schedule. Then the EMA update, logging, samples and
checkpoints. A non-finite loss or gradient skips the update and is counted; ``nan_patience`` in
a row stop the run. Loss spikes are detected against the sliding-window maximum of recent applied
losses. Ctrl-C or SIGTERM finish the current step, save it and stop. Resuming restores
parameters, optimizer moments, data order and every RNG state, so N + N steps equal 2N straight
steps bitwise on CPU, on any number of processes.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.atomic import recover_dir, write_text_atomic
from genlab.data.dataset import Splits
from genlab.errors import UserError
from genlab.model import Context, Model
from genlab.nn.random import RowRandom
from genlab.report.grid import class_columns, picture_problem, save_image_grid, save_samples
from genlab.report.html import write_report
from genlab.train import distributed as dist
from genlab.train.checkpoint import (
    clean_checkpoints, latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint,
)
from genlab.train.config import TrainConfig
from genlab.train.cpu_memory import retain_freed_memory
from genlab.train.ema import EMA
from genlab.train.evaluate import evaluate
from genlab.train.interrupt import DeferredInterrupt
from genlab.train.monitor import JsonlLog, NanGuard, SpikeDetector
from genlab.train.optim import PhaseSettings, make_optimizer, resolve_phases
from genlab.train.precision import resolve_bf16
from genlab.train.schedule import Schedule

SAMPLE_SEED = 1234
UNBOUNDED = 10**9  # the step target of a run planned by time alone


def resolve_device(name: str, world: dist.World | None = None) -> torch.device:
    """``auto`` is CUDA when present; under torchrun ``auto`` / ``cuda`` mean this rank's GPU."""
    world = world or dist.World()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but CUDA is not available; use device=cpu")
    if name == "cuda" and world.size > 1:
        return torch.device("cuda", world.local_rank)
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


def encode_state(state: Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode()


def decode_state(text: str) -> Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def rng_state() -> dict[str, Any]:
    state = {"torch": encode_state(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [encode_state(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(decode_state(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([decode_state(s) for s in state["cuda"]])


class Trainer:
    """Trains ``model`` on ``data.train``; rank 0 writes everything under ``out``.

    Every setting is checked here, before any file is written.
    """

    def __init__(self, model: Model, data: Splits, config: TrainConfig, out: str | Path,
                 world: dist.World | None = None) -> None:
        config.validate()
        if model.name is None:
            raise UserError(f"{type(model).__name__} is not registered: decorate it with @register_model(name), "
                            "so that its run can be saved and reloaded")
        self.data, self.out = data, Path(out)
        self.world = world or dist.world_from_env()
        self.device = resolve_device(config.device, self.world)
        self.cfg = config = dataclasses.replace(config, bf16=resolve_bf16(config.bf16, self.device))
        if config.fp16 and self.device.type != "cuda":
            raise UserError("fp16=true needs CUDA (float16 training needs its gradient scaler there); "
                            "on the CPU use bf16=auto (bf16 where the CPU computes it natively)")
        dist.check_batch(self.world, min(config.batch_size, len(data.train)))
        if self.device.type == "cpu":
            retain_freed_memory()  # no page faults for each step's large activations
        self.model = model.to(self.device)
        self.phases: list[PhaseSettings] = resolve_phases(model, config)
        self.optimizers = {p.name: make_optimizer(model, p) for p in self.phases}
        self.scalers = {p.name: torch.amp.GradScaler("cuda") for p in self.phases} if config.fp16 else {}
        self.schedule = Schedule(config.steps, config.time_budget, config.warmup)
        self.ema = EMA(self.model, config.ema_decay)
        self.sampler = EpochSampler(len(data.train), config.batch_size, config.seed)
        self.noise = torch.Generator(device=self.device).manual_seed(config.seed)  # the losses' RowRandom
        self.nan_guard = NanGuard(config.nan_patience)
        self.spikes = SpikeDetector(config.spike_window, config.spike_factor)
        self.step, self.elapsed, self.last_mult, self.overflows = 0, 0.0, 0.0, 0
        self.stopped_by = ""
        self.notes: list[str] = []
        self.show_progress = True
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self._frozen_in = {}  # per phase: the trainable parameters outside it, frozen while it updates
        for ph in self.phases:
            mine = {id(p) for p in ph.parameters}
            self._frozen_in[ph.name] = [p for p in trainable if id(p) not in mine]
        self._spike_loss: float | None = None
        dist.join(self.world, self.device)
        self._loss_fns = dist.wrap_phases(self.model, self.phases, self.world, self.device)

    @property
    def main(self) -> bool:
        return self.world.main

    # -- one update -------------------------------------------------------------------------
    def _batch(self) -> tuple[dict[str, Tensor], RowRandom]:
        idx = self.sampler.next()
        start, stop = self.world.shard(len(idx))
        rows = RowRandom(self.noise, len(idx), start, stop)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in self.data.train.batch(idx[start:stop]).items()}
        return self.model.augment(batch, rows), rows

    def _autocast(self):
        if self.cfg.bf16 or self.cfg.fp16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.cfg.bf16 else torch.float16)
        return nullcontext()

    def _update(self, phase: PhaseSettings, repeat: int) -> tuple[dict[str, float], bool]:
        """One optimizer update of ``phase``; returns the rank-averaged logs and whether it was applied."""
        opt, scaler = self.optimizers[phase.name], self.scalers.get(phase.name)
        batch, rows = self._batch()
        ctx = Context(self.step, self.schedule.fraction(self.step, self.elapsed), repeat, rows)
        for p in self._frozen_in[phase.name]:
            p.requires_grad_(False)  # only this phase's parameters collect gradients
        try:
            with self._autocast():
                out = self._loss_fns[phase.name](batch, phase.name, ctx)
            keys = list(out)
            values = dist.mean(self.world, torch.stack([out[k].detach().float().reshape(()) for k in keys]))
            logs = dict(zip(keys, values.tolist()))
            finite = math.isfinite(logs["loss"])
            if finite:
                opt.zero_grad(set_to_none=True)
                (scaler.scale(out["loss"]) if scaler else out["loss"]).backward()
        finally:
            for p in self._frozen_in[phase.name]:
                p.requires_grad_(True)
        applied = False
        if finite:
            if scaler:
                scaler.unscale_(opt)
            norm = float(torch.nn.utils.clip_grad_norm_(phase.parameters, phase.grad_clip or math.inf))
            logs["grad_norm"] = norm
            if scaler:  # fp16: the scaler skips steps with overflowed gradients and lowers its scale
                scale = scaler.get_scale()
                scaler.step(opt)
                scaler.update()
                applied = scaler.get_scale() >= scale
                self.overflows += not applied
            elif math.isfinite(norm):
                opt.step()
                applied = True
            finite = applied or bool(scaler)
        opt.zero_grad(set_to_none=True)
        self.nan_guard.check(finite, self.step + 1)
        if applied:
            self.model.after_update(phase.name, ctx)
        return logs, applied

    def train_step(self) -> dict[str, float]:
        """One round: every phase's updates, then the EMA; returns the logs (lr = the lr used)."""
        self.model.train()
        mult = self.schedule(self.step, self.elapsed)
        logs: dict[str, float] = {}
        self._spike_loss = None
        for i, phase in enumerate(self.phases):
            for group in self.optimizers[phase.name].param_groups:
                group["lr"] = phase.lr * group["lr_scale"] * mult
            for repeat in range(phase.steps):
                out, applied = self._update(phase, repeat)
                if i == 0 and applied:
                    self._spike_loss = out["loss"]
            prefix = "" if len(self.phases) == 1 else f"{phase.name}/"
            logs.update({prefix + k: v for k, v in out.items()})
            logs[prefix + "lr"] = phase.lr * mult
        self.last_mult = mult
        if self.main:
            self.ema.update(self.model)
        self.step += 1
        return logs

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "last_mult": self.last_mult,
            "schedule": self.schedule.state(),
            "ema_updates": self.ema.updates,
            "sampler": self.sampler.state(),
            "nan_total": self.nan_guard.total,
            "nan_in_a_row": self.nan_guard.in_a_row,
            "overflows": self.overflows,
            "spikes": self.spikes.state(),
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "noise": encode_state(self.noise.get_state()),
            "rng": rng_state(),
        }

    def save(self) -> Path:
        return save_checkpoint(
            self.out / "checkpoints", self.step, self.model, self.ema.model, self.optimizers, self.state(), self.cfg.keep
        )

    def resume(self) -> None:
        path = latest_checkpoint(self.out / "checkpoints")
        st = load_checkpoint(path, self.model, self.ema.model, self.optimizers, self.device)
        self.step, self.elapsed = st["step"], st["elapsed"]
        if "schedule" in st:
            self.schedule.load_state(st["schedule"])
            self.last_mult = st["last_mult"]
        else:  # a checkpoint from before the schedule was saved: continue on this invocation's plan
            self.last_mult = self.schedule(max(self.step - 1, 0), self.elapsed)
        self.schedule.extend(self.cfg.steps, self.cfg.time_budget, self.step, self.last_mult)
        self.ema.updates = st["ema_updates"]
        self.sampler.load_state(st["sampler"])
        self.nan_guard.total, self.nan_guard.in_a_row = st["nan_total"], st["nan_in_a_row"]
        self.overflows = st.get("overflows", 0)
        self.spikes.load_state(st["spikes"])
        for k, s in self.scalers.items():
            if k in st.get("scalers", {}):
                s.load_state_dict(st["scalers"][k])
        if "noise" in st:  # older checkpoints drew losses' noise from torch's global RNG
            self.noise.set_state(decode_state(st["noise"]))
        set_rng_state(st["rng"])
        if self.main:
            _truncate_log(self.out / "metrics.jsonl", self.step)

    def _init_from_data(self) -> None:
        """The model's data-dependent initialisation on a seeded batch (the data order is untouched)."""
        if type(self.model).init_from_data is Model.init_from_data:
            return
        g = torch.Generator().manual_seed(self.cfg.seed + 1)
        idx = torch.randperm(len(self.data.train), generator=g)[: self.sampler.batch_size]
        batch = {k: v.to(self.device) for k, v in self.data.train.batch(idx).items()}
        with torch.no_grad():
            self.model.init_from_data(batch)
        self.ema = EMA(self.model, self.cfg.ema_decay)

    # -- outputs ----------------------------------------------------------------------------
    def sample_grid(self, path: Path) -> None:
        """Samples of the EMA model as a picture; a note instead when they cannot be pictured."""
        if not self.model.can("sample"):
            return
        problem = picture_problem(tuple(self.model.config.data_shape))
        if problem:
            if problem not in self.notes:
                self.notes.append(problem)
            return
        g = torch.Generator().manual_seed(SAMPLE_SEED)
        x = self.ema.model.sample(self.cfg.num_samples, generator=g)
        ref = self.data.test.x[:2000] if self.data.test.kind == "points" else None
        save_samples(x, path, reference=ref, title=f"{self.model.name}, step {self.step}",
                     nrow=class_columns(self.model.config.num_classes))

    def reconstruction_grid(self, path: Path, n: int = 8) -> None:
        """The EMA model's ``reconstruction_panels`` of the first ``n`` test images: one row each."""
        if self.data.test.kind != "image":
            return
        x = self.data.test.x[:n].to(self.device)
        with torch.no_grad():
            panels = self.ema.model.reconstruction_panels(x, torch.Generator().manual_seed(SAMPLE_SEED))
        if panels:
            save_image_grid(torch.stack(panels, dim=1).flatten(0, 1), path, nrow=len(panels))

    def _should_stop(self, interrupt: DeferredInterrupt, start: float, start_elapsed: float) -> bool:
        """Advance the clock and decide, identically on every rank, whether to stop."""
        local = start_elapsed + time.perf_counter() - start
        elapsed, interrupted = dist.maximum(self.world, [local, float(interrupt.requested is not None)], self.device)
        self.elapsed = elapsed
        if self.step >= self.cfg.steps:
            self.stopped_by = "steps"
        elif self.cfg.time_budget and self.elapsed >= self.cfg.time_budget:
            self.stopped_by = "time_budget"
        elif interrupted:
            self.stopped_by = "interrupt"
        else:
            return False
        return True

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``steps`` (or the time budget), then write model, samples, metrics (rank 0)."""
        from tqdm.auto import tqdm

        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            clean_checkpoints(self.out / "checkpoints")
            recover_dir(self.out / "model")
            for leftover in self.out.glob(".*.tmp-*"):  # a file a killed process was writing
                if leftover.is_file():
                    leftover.unlink()
        if resume:
            self.resume()
        else:
            torch.manual_seed(self.cfg.seed)
            self._init_from_data()
            if self.main:
                (self.out / "metrics.jsonl").unlink(missing_ok=True)
        log = JsonlLog(self.out / "metrics.jsonl") if self.main else None
        by_time = bool(self.cfg.time_budget) and self.cfg.steps >= UNBOUNDED
        bar = tqdm(total=None if by_time else self.cfg.steps, initial=self.step, desc=f"train {self.model.name}",
                   dynamic_ncols=True, mininterval=0.5, disable=not (self.show_progress and self.main))
        start, start_elapsed = time.perf_counter(), self.elapsed
        try:
            with DeferredInterrupt() as interrupt:
                while not self._should_stop(interrupt, start, start_elapsed):
                    logs = self.train_step()
                    spike = self._spike_loss is not None and self.spikes.update(self._spike_loss)
                    bar.update(1)
                    left = {"left": f"{max(self.cfg.time_budget - self.elapsed, 0):.0f}s"} if by_time else {}
                    losses = {k.replace("/loss", "") if "/" in k else k: f"{v:.4g}" for k, v in logs.items()
                              if k == "loss" or k.endswith("/loss")}  # one per phase: critic=..., generator=...
                    bar.set_postfix(**losses, **left, refresh=False)
                    if log and (self.step % self.cfg.log_every == 0 or spike):
                        log.write({"step": self.step, "time": round(self.elapsed, 3), **logs,
                                   "spike": spike, "nan_skipped": self.nan_guard.total})
                    if self.main and self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
                        (self.out / "samples").mkdir(exist_ok=True)
                        self.sample_grid(self.out / "samples" / f"step_{self.step}.png")
                    if self.main and self.step % self.cfg.ckpt_every == 0:
                        self.save()
        except KeyboardInterrupt:
            saved = list_checkpoints(self.out / "checkpoints")
            last = f"the last checkpoint is {saved[-1].name}" if saved else "no checkpoint was saved"
            raise UserError(f"interrupted twice inside step {self.step + 1}: that step is not saved; "
                            f"{last} (continue with --resume)") from None
        finally:
            bar.close()
            if log:
                log.close()
        if self.main and not (self.out / "checkpoints" / f"step_{self.step}").exists():
            self.save()
        if self.stopped_by == "interrupt":
            raise UserError(f"interrupted at step {self.step}; checkpoint saved, continue with --resume")
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Rank 0: save the EMA model, test-set metrics, the final sample picture and the report."""
        dist.barrier(self.world)
        if not self.main:
            return {}
        self.ema.model.save_pretrained(self.out / "model")
        metrics = evaluate(self.ema.model, self.data.test, self.cfg.batch_size, self.cfg.eval_examples,
                           step=self.step, show_progress=self.show_progress)
        metrics.update(steps=self.step, stopped_by=self.stopped_by, train_seconds=round(self.elapsed, 2),
                       nan_skipped=self.nan_guard.total, loss_spikes=self.spikes.spikes)
        if self.cfg.steps < UNBOUNDED:
            metrics["steps_target"] = self.cfg.steps
        if self.overflows:
            metrics["fp16_overflow_skipped"] = self.overflows
        if self.stopped_by == "time_budget" and self.cfg.steps < UNBOUNDED:
            self.notes.insert(0, f"the {self.cfg.time_budget:.4g} s time budget ended training at step {self.step} "
                                 f"of {self.cfg.steps}")
        write_text_atomic(self.out / "metrics.json", json.dumps(metrics, indent=2))
        self.sample_grid(self.out / "samples.png")
        self.reconstruction_grid(self.out / "reconstructions.png")
        write_report(self.out, metrics, f"genlab {self.model.name} on {self.data.train.name}", self.notes)
        return metrics


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint being resumed (they will be redone)."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        write_text_atomic(path, "".join(ln + "\n" for ln in keep))

