"""The layer stacks of genlab's four flows, for vectors (D,) and images (C, H, W).

Vectors: ``realnvp`` alternates affine half-couplings; ``glow`` is ActNorm - invertible linear -
affine coupling; ``maf`` stacks MADE affine layers in alternating orders; ``nsf`` is MAF with
rational-quadratic splines (NSF-AR, as ``zuko.flows.NSF``).
Images (after the logit pre-processing when the data is quantized): ``realnvp`` is RealNVP's
multi-scale design (checkerboard couplings, squeeze, channel couplings, split; the last scale
checkerboard only); ``glow`` squeezes at every scale, runs ``transforms`` of ActNorm - 1x1 conv -
affine coupling and splits with a learned prior; ``nsf`` is that design with spline couplings
(NSF-C); ``maf`` flattens the image and stacks MADE layers.
"""

from __future__ import annotations

from typing import Any

import torch

from genlab.flows.actnorm import ActNorm
from genlab.flows.autoregressive import MaskedAutoregressive
from genlab.flows.conditioners import ConvConditioner, MLPConditioner
from genlab.flows.coupling import Coupling, channel_mask, checkerboard_mask, half_mask
from genlab.flows.flow import FlowLayer
from genlab.flows.linear import InvertibleLinear
from genlab.flows.preprocess import Logit
from genlab.flows.reshape import Flatten, Split, Squeeze
from genlab.flows.transforms import Affine, RationalQuadraticSpline, Transform

ARCHS = ("realnvp", "glow", "maf", "nsf")


def squeezes(arch: str, levels: int) -> int:
    """How many times an image architecture halves the image: glow / nsf at every scale, realnvp
    between scales, maf never."""
    return {"realnvp": levels - 1, "glow": levels, "nsf": levels, "maf": 0}[arch]


def transform_for(arch: str, c: Any) -> Transform:
    return RationalQuadraticSpline(c.spline_bins, c.tail_bound) if arch == "nsf" else Affine(c.max_log_scale)


def _orders(dim: int, steps: int) -> list[torch.Tensor]:
    forward = torch.arange(1, dim + 1)
    return [forward if i % 2 == 0 else forward.flip(0) for i in range(steps)]


def vector_layers(c: Any) -> list[FlowLayer]:
    (dim,), t = c.data_shape, transform_for(c.arch, c)
    if c.arch in ("maf", "nsf"):
        return [MaskedAutoregressive(o, c.hidden, c.depth, t) for o in _orders(dim, c.transforms)]
    layers: list[FlowLayer] = []
    for i in range(c.transforms):
        if c.arch == "glow":
            layers += [ActNorm(dim), InvertibleLinear(dim)]
        layers.append(Coupling(half_mask(dim, i % 2), MLPConditioner(dim, c.hidden, c.depth, t.num_params), t))
    return layers


def _conv_coupling(mask: torch.Tensor, c: Any, t: Transform) -> Coupling:
    ch = mask.shape[0]
    return Coupling(mask, ConvConditioner(ch, ch, c.channels, t.num_params), t)


def _realnvp_scale(shape: tuple[int, int, int], level: int, c: Any, t: Transform) -> list[FlowLayer]:
    layers: list[FlowLayer] = [_conv_coupling(checkerboard_mask(shape, i % 2), c, t) for i in range(c.transforms)]
    if level == c.levels - 1:
        return layers
    ch, h, w = shape
    squeezed = (4 * ch, h // 2, w // 2)
    layers.append(Squeeze())
    layers += [_conv_coupling(channel_mask(squeezed, i % 2), c, t) for i in range(c.transforms)]
    inner = _realnvp_scale((2 * ch, h // 2, w // 2), level + 1, c, t)
    return layers + [Split(squeezed, inner, max_log_scale=c.max_log_scale)]


def _glow_scale(shape: tuple[int, int, int], level: int, c: Any, t: Transform) -> list[FlowLayer]:
    ch, h, w = shape
    squeezed = (4 * ch, h // 2, w // 2)
    layers: list[FlowLayer] = [Squeeze()]
    for i in range(c.transforms):
        layers += [ActNorm(4 * ch), InvertibleLinear(4 * ch), _conv_coupling(channel_mask(squeezed, i % 2), c, t)]
    if level == c.levels - 1:
        return layers
    inner = _glow_scale((2 * ch, h // 2, w // 2), level + 1, c, t)
    prior = ConvConditioner(2 * ch, 2 * ch, c.channels, 2)
    return layers + [Split(squeezed, inner, prior, c.max_log_scale)]


def image_layers(c: Any) -> list[FlowLayer]:
    shape, t = tuple(c.data_shape), transform_for(c.arch, c)
    layers: list[FlowLayer] = [Logit(c.bins, c.logit_alpha)] if c.bins else []
    if c.arch == "maf":
        dim = shape[0] * shape[1] * shape[2]
        return layers + [Flatten(shape)] + [MaskedAutoregressive(o, c.hidden, c.depth, t) for o in _orders(dim, c.transforms)]
    scale = _realnvp_scale if c.arch == "realnvp" else _glow_scale
    return layers + scale(shape, 0, c, t)


def build_layers(c: Any) -> list[FlowLayer]:
    return vector_layers(c) if len(c.data_shape) == 1 else image_layers(c)
