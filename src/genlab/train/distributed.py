"""Data parallelism under ``torchrun``: process group, this rank's share of a batch, reductions.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with a world of more than one
process the trainer joins the process group (gloo on CPU, NCCL on CUDA) and every rank runs the
same loop on its slice of the same global batch. One process is a world of one: every function
here is then a no-op, so the single-process path has no distributed code in it.
See docs/distributed.md for what is synchronised and what is not.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from genlab.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def shard(self, batch_size: int) -> tuple[int, int]:
        """This rank's rows ``start, stop`` of a global batch (equal shares)."""
        per = batch_size // self.size
        return self.rank * per, (self.rank + 1) * per


def world_from_env() -> World:
    """The world ``torchrun`` describes in the environment (a world of one without it)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def join(world: World, device: torch.device) -> None:
    """Join the process group for ``world`` (once per process; nothing for a world of one)."""
    if world.size == 1 or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size,
                            device_id=device if device.type == "cuda" else None)
    if device.type != "cuda":
        atexit.register(_leave)


def _leave() -> None:
    """Destroy a gloo process group while the interpreter is still whole: left to interpreter
    finalisation, gloo's worker threads can abort the process (SIGABRT, "terminate called without
    an active exception"; pytorch/pytorch#190489), failing a run that had finished. Not for NCCL,
    whose destroy waits for a peer's unfinished collectives and would hang a rank that failed."""
    if dist.is_initialized():
        dist.destroy_process_group()


def check_batch(world: World, batch_size: int) -> None:
    if batch_size % world.size:
        raise UserError(f"batch_size={batch_size} does not split evenly across {world.size} processes; "
                        f"use a multiple of {world.size}")


def mean(world: World, values: Tensor) -> Tensor:
    """The mean of ``values`` over ranks (float64 on the wire, so logged means do not drift)."""
    if world.size == 1:
        return values
    out = values.double()
    dist.all_reduce(out)
    return (out / world.size).to(values.dtype)


def maximum(world: World, values: list[float], device: torch.device) -> list[float]:
    """Each value's maximum over ranks: flags (stop together) and clocks (one elapsed time)."""
    if world.size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


class LossForward(nn.Module):
    """``forward`` = ``model.loss``, so that DistributedDataParallel sees the loss computation."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch, phase, ctx):
        return self.model.loss(batch, phase, ctx)


def wrap_phases(model: nn.Module, phases: list, world: World, device: torch.device) -> dict[str, Callable]:
    """One loss function per phase; under torchrun a DDP wrapper that all-reduces that phase's
    gradients only (the other phases' parameters are ignored by it)."""
    if world.size == 1:
        return {p.name: lambda *args: model.loss(*args) for p in phases}
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    for phase in phases:
        mine = {id(p) for p in phase.parameters}
        fwd = LossForward(model)
        ignore = [f"model.{n}" for n, p in model.named_parameters() if id(p) not in mine]
        DDP._set_params_and_buffers_to_ignore_for_model(fwd, ignore)
        out[phase.name] = DDP(fwd, device_ids=[device] if device.type == "cuda" else None)
    return out


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()
