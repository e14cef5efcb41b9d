"""Optimizers from phases: resolved settings, timm-style weight-decay groups, per-parameter lr scales.

A phase's setting comes from, in order: the user's ``<phase>.<field>=value``, the phase itself
(the model's choice), the run's ``TrainConfig``. Each optimizer param group records its
``lr_scale`` (phase lr multiple x per-parameter scale), so the schedule sets
``group["lr"] = base_lr * lr_scale * schedule(step)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from genlab.config import apply_overrides
from genlab.errors import UserError
from genlab.model import PHASE_OPTIONS, Model
from genlab.train.config import TrainConfig


@dataclass
class PhaseSettings:
    """A phase with every optimizer setting resolved."""

    name: str
    parameters: list[nn.Parameter]
    steps: int
    optimizer: str
    lr: float
    betas: tuple[float, float]
    momentum: float
    weight_decay: float
    grad_clip: float
    param_lr_scale: Callable[[str], float] | None = None


def resolve_phases(model: Model, cfg: TrainConfig) -> list[PhaseSettings]:
    """The model's phases with user overrides applied and defaults filled from ``cfg``; checked."""
    phases = model.phases()
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise ValueError(f"{type(model).__name__}.phases() repeats a name: {names}")
    unknown = sorted(set(cfg.phases) - set(names))
    if unknown:
        raise UserError(f"no phase called {', '.join(map(repr, unknown))} in model {model.name!r}; "
                        f"its phases: {', '.join(names)}")
    out = []
    for phase in phases:
        given = cfg.phases.get(phase.name, {})
        bad = sorted(set(given) - set(PHASE_OPTIONS))
        if bad:
            raise UserError(f"unknown phase option {phase.name}.{bad[0]}; phase options: {', '.join(PHASE_OPTIONS)}")
        p = apply_overrides(phase, given) if given else dataclasses.replace(phase)
        p.validate()
        if not p.parameters:
            raise ValueError(f"phase {p.name!r} of {type(model).__name__} has no parameters")
        lr = p.lr if p.lr is not None else cfg.lr * p.lr_scale
        out.append(PhaseSettings(
            name=p.name, parameters=list(p.parameters), steps=p.steps, optimizer=p.optimizer or cfg.optimizer, lr=lr,
            betas=tuple(p.betas) if p.betas is not None else (cfg.beta1, cfg.beta2),
            momentum=cfg.momentum if p.momentum is None else p.momentum,
            weight_decay=cfg.weight_decay if p.weight_decay is None else p.weight_decay,
            grad_clip=cfg.grad_clip if p.grad_clip is None else p.grad_clip, param_lr_scale=p.param_lr_scale,
        ))
    return out


def _decays(name: str, param: nn.Parameter, exempt: set[str]) -> bool:
    """timm's rule: no decay on 0-/1-d tensors (norms, biases) or on the model's named exemptions."""
    return param.ndim > 1 and name not in exempt and name.rsplit(".", 1)[-1] not in exempt


def param_groups(model: Model, phase: PhaseSettings) -> list[dict]:
    """Groups of ``phase``'s parameters by (weight decay, lr scale), in first-seen order."""
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = model.no_weight_decay()
    scale_of = phase.param_lr_scale
    groups: dict[tuple[float, float], dict] = {}
    for p in phase.parameters:
        if id(p) not in names:
            raise ValueError(f"phase {phase.name!r} lists a parameter that is not in the model")
        name = names[id(p)]
        wd = phase.weight_decay if _decays(name, p, exempt) else 0.0
        scale = float(scale_of(name)) if scale_of is not None else 1.0
        group = groups.setdefault((wd, scale), {"params": [], "weight_decay": wd, "lr_scale": scale})
        group["params"].append(p)
    return list(groups.values())


def _fusable(parameters: list[nn.Parameter]) -> bool:
    """Adam's fused kernel (one pass over all tensors) takes floating tensors on the CPU or CUDA."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in parameters)


def make_optimizer(model: Model, phase: PhaseSettings) -> torch.optim.Optimizer:
    """The phase's optimizer over its weight-decay / lr-scale groups. Adam and AdamW use the fused
    implementation: the same update in one pass over all tensors instead of a loop of small
    kernels per tensor, several times faster on the CPU, which matters beside small models' short
    steps (``benchmarks/mae_speed.py`` times the optimizer of its step both ways)."""
    groups = param_groups(model, phase)
    fused = _fusable(phase.parameters) or None
    if phase.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=phase.lr, betas=phase.betas, fused=fused)
    if phase.optimizer == "adam":  # L2 penalty in the gradient, as torch.optim.Adam does
        return torch.optim.Adam(groups, lr=phase.lr, betas=phase.betas, fused=fused)
    if phase.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=phase.lr, momentum=phase.momentum)
    return torch.optim.SGD(groups, lr=phase.lr, momentum=phase.momentum)
