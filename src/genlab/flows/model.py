"""Normalizing flows as genlab models: ``realnvp``, ``glow``, ``maf``, ``nsf`` (one class, four presets).

Training maximises the exact log-likelihood. Quantized data (images, ``bins`` > 0) is uniformly
dequantized each step, x + u delta, and the logit pre-processing's log-det is part of the flow, so
    log P(x) >= E_u[log p(x + u delta)] + D log delta,
reported in nats and bits/dim of the discrete data, comparable with the literature, the VAE's
ELBO and diffusion's PF-ODE likelihood (``genlab.metrics.likelihood``). Samples are inverted
base draws, re-quantized to the data's levels. ``eval_float64`` evaluates ``log_prob`` in
float64 (a copy of the flow), for likelihoods free of float32 round-off through deep stacks.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genlab.errors import UserError
from genlab.flows.actnorm import ActNorm
from genlab.flows.architectures import ARCHS, build_layers, squeezes
from genlab.flows.flow import Flow, Sequence, StandardNormal
from genlab.flows.splines import MIN_BIN_WIDTH
from genlab.metrics.likelihood import bin_width, dequantize, discrete_log_prob
from genlab.model import Context, Model, ModelConfig, register_model
from genlab.nn.random import Source, rand

SAMPLE_OPTIONS = ("temperature", "batch_size")


@dataclass
class FlowConfig(ModelConfig):
    arch: str = "realnvp"  # realnvp | glow | maf | nsf (see genlab.flows.architectures)
    transforms: int = 8  # vectors: layers; images: flow steps per scale (Glow's K)
    hidden: int = 128  # MLP / MADE width
    depth: int = 2  # MLP / MADE hidden layers
    channels: int = 64  # conv conditioner width (images)
    levels: int = 2  # scales of the multi-scale image architectures
    spline_bins: int = 8  # K (nsf)
    tail_bound: float = 3.0  # B: the splines act on [-B, B], identity outside (nsf)
    max_log_scale: float = 3.0  # affine log-scales are soft-clamped to (-this, this)
    logit_alpha: float = 0.05  # logit pre-processing of quantized images (RealNVP: 0.05)
    eval_float64: bool = False  # evaluate log_prob in float64

    def validate(self) -> None:
        super().validate()
        if self.arch not in ARCHS:
            raise UserError(f"arch={self.arch!r}: choose one of {', '.join(ARCHS)}")
        for name in ("transforms", "hidden", "depth", "channels", "levels"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 1")
        if not 2 <= self.spline_bins < 1 / MIN_BIN_WIDTH:
            raise UserError(f"spline_bins={self.spline_bins}: a spline needs >= 2 bins (NSF: 8) and fewer than "
                            f"{1 / MIN_BIN_WIDTH:.0f} (each bin is at least {MIN_BIN_WIDTH:g} of the range)")
        if not self.tail_bound > 0 or not self.max_log_scale > 0:
            raise UserError(f"tail_bound={self.tail_bound}, max_log_scale={self.max_log_scale}: must be > 0")
        if not 0 < self.logit_alpha < 0.5:
            raise UserError(f"logit_alpha={self.logit_alpha}: must be in (0, 0.5) (RealNVP: 0.05)")
        if len(self.data_shape) == 1:
            if self.arch in ("realnvp", "glow") and self.data_shape[0] < 2:
                raise UserError(f"{self.arch} couples halves of a vector: it needs >= 2 dimensions, data has 1 "
                                "(use maf or nsf)")
        elif len(self.data_shape) == 3:
            _, h, w = self.data_shape
            n = squeezes(self.arch, self.levels)
            if h % 2**n or w % 2**n:
                raise UserError(f"{self.arch} with levels={self.levels} halves the image {n} times: {h}x{w} is not "
                                f"divisible by {2**n}; lower levels or resize the images")
            if self.arch == "realnvp" and (h >> n) * (w >> n) < 2:
                raise UserError(f"realnvp with levels={self.levels} leaves a 1x1 last scale for {h}x{w} images: its "
                                "checkerboard couplings need >= 2 pixels; lower levels")
        else:
            raise UserError(f"data_shape={self.data_shape}: a flow takes (D,) vectors or (C, H, W) images")


class FlowModel(Model):
    """A normalizing flow: exact log-likelihood, sampling by inversion (see the module doc)."""

    config_class = FlowConfig

    def __init__(self, config: FlowConfig) -> None:
        super().__init__(config)
        layers = build_layers(config)
        self.flow = Flow(StandardNormal(Sequence(layers).out_shape(tuple(config.data_shape))), layers)
        self.dims = math.prod(config.data_shape)
        self.actnorm_loaded = False  # set by load_warm_start: init_from_data then leaves the ActNorms

    # -- likelihood ------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.config.data_shape):
            raise UserError(f"examples of shape {tuple(x.shape[1:])} for a flow of {tuple(self.config.data_shape)} data")
        if self.config.bins and (x.min() < -1 - 1e-4 or x.max() > 1 + 1e-4):
            raise UserError(f"data outside the dequantization range [-1, 1] (min {x.min().item():.4g}, "
                            f"max {x.max().item():.4g}) for data with {self.config.bins} levels; rescale it")

    def _log_prob(self, flow: Flow, x: Tensor, source: Source) -> Tensor:
        """log P(x) per example in nats: flow density of the dequantized data + D log delta."""
        self._check_input(x)
        bins = self.config.bins
        y = x if not bins else x + rand(tuple(x.shape), source, x.device).to(x.dtype) * bin_width(bins)  # float32 draws: same u in float64
        return discrete_log_prob(flow.log_prob(y), self.dims, bins)

    def loss(self, batch: dict[str, Tensor], phase: str, ctx: Context = Context()) -> dict[str, Tensor]:
        lp = self._log_prob(self.flow, batch["x"].float(), ctx.random)
        nll = -lp.mean() / self.dims
        return {"loss": nll, "bits_per_dim": nll.detach() / math.log(2)}

    @torch.no_grad()
    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """log p(x) per example in nats (a dequantization bound for quantized data); float64 if
        ``eval_float64``."""
        if self.config.eval_float64:
            return self._log_prob(copy.deepcopy(self.flow).double(), x.double(), generator).float()
        return self._log_prob(self.flow, x.float(), generator)

    def load_warm_start(self, state: dict[str, Tensor], where: str, source: Model | None = None) -> list[str]:
        """As :meth:`Model.load_warm_start`; the loaded ActNorms are fitted already, so
        :meth:`init_from_data` leaves them."""
        fresh = super().load_warm_start(state, where, source)
        self.actnorm_loaded = True
        return fresh

    def init_from_data(self, batch: dict[str, Tensor]) -> None:
        """ActNorm's data-dependent initialisation: one pass of a dequantized training batch (not
        after :meth:`load_warm_start`)."""
        actnorms = [m for m in self.flow.modules() if isinstance(m, ActNorm)]
        if not actnorms or self.actnorm_loaded:
            return
        for m in actnorms:
            m.init_next()
        x = batch["x"].float()
        self._check_input(x)
        self.flow(dequantize(x, self.config.bins, torch.Generator().manual_seed(0)))

    # -- sampling --------------------------------------------------------------------------------
    def sample_defaults(self) -> dict[str, Any]:
        return {"temperature": 1.0}

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, **kw: Any) -> Tensor:
        """x = f^-1(T z), z ~ N(0, I) from ``generator``; options: temperature (Glow's T, default 1),
        batch_size (results do not depend on it). Quantized data comes back on its levels."""
        unknown = set(kw) - set(SAMPLE_OPTIONS)
        if unknown:
            raise UserError(f"unknown sampling option(s) {', '.join(sorted(unknown))} for a flow; it takes "
                            f"{', '.join(SAMPLE_OPTIONS)}")
        kw = {**self.sample_defaults(), **kw}
        t, size = kw["temperature"], kw.get("batch_size")
        size = n if size is None else size
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise UserError(f"temperature={t!r}: must be a number > 0")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise UserError(f"batch_size={size!r}: must be an integer >= 1")
        z = t * self.flow.base.sample(n, generator, self.device)
        x = torch.cat([self.flow.inverse(part) for part in z.split(size)])
        bins = self.config.bins
        if not bins:
            return x
        delta = bin_width(bins)
        levels = torch.floor((x + 1) / delta).clamp(0, bins - 1)  # undo the uniform dequantization
        return levels * delta - 1


register_model("realnvp", help="RealNVP (Dinh et al. 2017): affine couplings, checkerboard / channel masks, "
               "multi-scale", arch="realnvp")(FlowModel)
register_model("glow", help="Glow (Kingma & Dhariwal 2018): ActNorm, invertible 1x1 conv, affine coupling, "
               "multi-scale with learned prior", arch="glow")(FlowModel)
register_model("maf", help="MAF (Papamakarios et al. 2017): MADE affine autoregressive layers", arch="maf",
               transforms=5)(FlowModel)
register_model("nsf", help="neural spline flow (Durkan et al. 2019): rational-quadratic splines, autoregressive "
               "(vectors) or coupling (images)", arch="nsf")(FlowModel)

__all__ = ["FlowConfig", "FlowModel"]
