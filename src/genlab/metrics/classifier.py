"""Metrics from a classifier's logits on generated samples (the data's own feature network).

- confident share: samples whose top class probability exceeds ``threshold`` (0.9): recognisable.
- class-histogram entropy of the predicted classes, in nats and as a share of log K: 1 = every
  class equally often (no mode dropped), 0 = one class only.
- classifier score, the Inception-score analogue (Salimans et al. 2016):
  exp(E_x KL(p(y|x) || p(y))), between 1 and K.
- conditional accuracy: samples asked for class c that the classifier calls c.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from genlab.errors import UserError


class ClassifierMetrics(NamedTuple):
    confident: float
    class_entropy: float
    class_entropy_share: float
    classifier_score: float
    conditional_accuracy: float | None


def classifier_metrics(logits: Tensor, requested: Tensor | None = None, threshold: float = 0.9) -> ClassifierMetrics:
    """The metrics above for ``logits`` (N, K); ``requested`` the classes the samples were asked for."""
    if logits.dim() != 2 or len(logits) < 1:
        raise UserError(f"classifier metrics need logits of shape (N, K), got {tuple(logits.shape)}")
    logp = torch.log_softmax(logits.double(), dim=1)
    p = logp.exp()
    k = logits.shape[1]
    confident = float((p.max(1).values > threshold).double().mean())
    hist = torch.bincount(p.argmax(1), minlength=k).double() / len(p)
    entropy = float(-(hist[hist > 0] * hist[hist > 0].log()).sum())
    p_y = p.mean(0)
    kl = (p * (logp - p_y.clamp_min(1e-300).log())).sum(1)  # KL(p(y|x) || p(y))
    score = math.exp(float(kl.mean()))  # Salimans et al. 2016, eq. in section 4
    accuracy = None
    if requested is not None:
        requested = torch.as_tensor(requested).reshape(-1)
        if len(requested) != len(p):
            raise UserError(f"{len(requested)} requested classes for {len(p)} samples")
        accuracy = float((p.argmax(1) == requested.to(p.device)).double().mean())
    return ClassifierMetrics(confident, entropy, entropy / math.log(k), score, accuracy)
