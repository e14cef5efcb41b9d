"""Per-element log-likelihoods of decoder outputs: Gaussian and discretized logistic."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log N(x; mean, exp(log_scale)^2), elementwise."""
    return -0.5 * ((x - mean) * (-log_scale).exp()) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor, bins: int) -> Tensor:
    """log P(x) of ``bins`` levels spread evenly over [-1, 1] (PixelCNN++, Salimans et al. 2017).

    P(x) = sigmoid((x + delta/2 - mean) / s) - sigmoid((x - delta/2 - mean) / s), with the lowest
    and highest level taking the whole tail below / above; delta = 2 / (bins - 1). An exact
    probability of the discrete data, so no dequantization is needed.
    """
    half = 1.0 / (bins - 1)  # delta / 2
    inv_s = (-log_scale).exp()
    plus, minus = inv_s * (x - mean + half), inv_s * (x - mean - half)
    log_cdf_plus = -F.softplus(-plus)  # log sigmoid(plus): the lowest level's tail
    log_sf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)): the highest level's tail
    # log(sigmoid(a) - sigmoid(b)) = b + log(expm1(a - b)) - softplus(a) - softplus(b), stable for a > b
    mid = minus + torch.expm1(plus - minus).log() - F.softplus(plus) - F.softplus(minus)
    return log_cdf_plus.where(x < -1 + half, log_sf_minus.where(x > 1 - half, mid))
