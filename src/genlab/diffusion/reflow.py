"""Reflow (Liu et al. 2022, "Flow Straight and Fast", Alg. 1): retrain a flow on its own ODE couplings.

A k-rectified flow maps noise z to x0 = ODE(z) deterministically. Training on the pairs with
x_t = (1 - t) x0 + t z (sigma-space x = x0 + sigma z), i.e. the pair's z instead of fresh noise,
gives the (k+1)-rectified flow: same marginals, straighter paths, so few Euler steps suffice.
The pairs become a ``Dataset`` with the extra field ``"noise"``, so batches carry it;
``DiffusionModel.loss`` then uses it, and the standard ``Trainer`` does the retraining unchanged.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import torch
from torch import Tensor

from genlab.data.dataset import Dataset, Splits
from genlab.diffusion.denoiser import clipped
from genlab.diffusion.model import DiffusionModel
from genlab.diffusion.samplers import PerSampleNoise, get_sampler, sample_euler
from genlab.diffusion.schedules import FlowSchedule
from genlab.errors import UserError

ODE_SAMPLERS = ("euler", "heun")


class Straightness(NamedTuple):
    """S = E int_0^1 ||(z - x0) - v_t||^2 dt (Liu et al. eq. 5; 0 iff straight), E[path length] / E||z - x0||."""

    S: float
    length_ratio: float


def _check(model: DiffusionModel, n: int, batch_size: int | None) -> None:
    if not isinstance(model, DiffusionModel):
        raise UserError(f"reflow needs a diffusion model, got {type(model).__name__}")
    if model.config.num_classes:
        raise UserError("reflow of class-conditional models is not supported; train unconditionally")
    if n < 1:
        raise UserError(f"n={n}: must be >= 1")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch_size={batch_size}: must be >= 1")


def _noise(
    model: DiffusionModel, n: int, generator: torch.Generator | None, batch_size: int | None
) -> Iterator[Tensor]:
    """Unit-variance z in batches, one seed per row drawn as ``DiffusionModel.sample`` does (batch-size free)."""
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    b = batch_size or n
    for start in range(0, n, b):
        yield PerSampleNoise(seeds[start : start + b], model.config.data_shape, model.device)()


@torch.no_grad()
def reflow_pairs(
    model: DiffusionModel, n: int, *, steps: int = 100, generator: torch.Generator | None = None,
    sampler: str = "euler", batch_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """(z, x0): n noises and their probability-flow ODE solutions on the model's grid.

    x0 equals ``model.sample(n, generator=generator, sampler=sampler, steps=steps)`` for the same
    generator state; z is the unit-variance noise (the ODE starts at x = sigma_max z).
    """
    _check(model, n, batch_size)
    if sampler not in ODE_SAMPLERS:
        raise UserError(f"sampler={sampler!r}: reflow needs a deterministic ODE sampler: {', '.join(ODE_SAMPLERS)}")
    fn, sigmas = get_sampler(sampler), model.sigmas(steps=steps).to(model.device)
    D = clipped(model.denoiser) if model.config.clip_denoised else model.denoiser  # as model.sample
    pairs = [(z, fn(D, z * sigmas[0], sigmas)) for z in _noise(model, n, generator, batch_size)]
    return torch.cat([z for z, _ in pairs]), torch.cat([x for _, x in pairs])


def reflow_splits(
    model: DiffusionModel, n_train: int, n_test: int, *, steps: int = 100, generator: torch.Generator | None = None,
    sampler: str = "euler", batch_size: int | None = None, name: str = "reflow",
) -> Splits:
    """Train / test data sets (on the CPU) of ``n_train`` and ``n_test`` ODE pairs: ``x`` = x0, ``noise`` = z."""
    if n_train < 1 or n_test < 1:
        raise UserError(f"n_train={n_train}, n_test={n_test}: both must be >= 1")
    z, x = (t.cpu() for t in reflow_pairs(model, n_train + n_test, steps=steps, generator=generator,
                                           sampler=sampler, batch_size=batch_size))
    part = lambda s: Dataset(name, x[s], extra={"noise": z[s]})  # noqa: E731
    return Splits(part(slice(0, n_train)), part(slice(n_train, None)))


@torch.no_grad()
def straightness(
    model: DiffusionModel, n: int, *, steps: int = 100, generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Straightness:
    """Straightness of a flow's Euler paths x_t = s(t) x on the model's grid, from t_max to 0.

    Euler in sigma-space is Euler in t for flows, so v_i = (x_{t_i+1} - x_{t_i}) / (t_i+1 - t_i)
    is the model's velocity and S = E[mean_t ||v||^2 - ||mean_t v||^2] (the Delta t-weighted
    variance of v along the path, whose mean is the chord: (x_{t_max} - x0) / t_max ~ z - x0).
    """
    _check(model, n, batch_size)
    if not isinstance(model.schedule, FlowSchedule):
        raise UserError(f"straightness is defined for flows (schedule=flow), not schedule={model.config.schedule!r}")
    sigmas = model.sigmas(steps=steps).to(model.device)
    t, s = model.schedule.sigma_inv(sigmas).tolist(), model.schedule.s_at_sigma(sigmas).tolist()
    T = t[0] - t[-1]
    S, length, chord = [], [], []
    for z in _noise(model, n, generator, batch_size):
        x, xt0 = z * sigmas[0], s[0] * z * sigmas[0]
        sq, len_ = torch.zeros(len(z), device=z.device), torch.zeros(len(z), device=z.device)
        for i in range(steps):
            x_next = sample_euler(model.denoiser, x, sigmas[i : i + 2])
            dx = (s[i + 1] * x_next - s[i] * x).flatten(1)  # x_{t_i+1} - x_{t_i}
            sq, len_ = sq + dx.square().sum(1) / (t[i] - t[i + 1]), len_ + dx.norm(dim=1)  # dt ||v||^2, ||dx||
            x = x_next
        d = (s[-1] * x - xt0).flatten(1)
        S.append(sq / T - d.square().sum(1) / T**2)
        length.append(len_)
        chord.append(d.norm(dim=1))
    return Straightness(float(torch.cat(S).mean()), float(torch.cat(length).mean() / torch.cat(chord).mean()))
