"""How good a representation is, as MAE measures it: a linear probe and a k-NN classifier on
frozen features (full fine-tuning, which trains, runs through ``genlab.train.probe``).

- linear probe: BatchNorm without affine parameters, then a linear layer (MAE's linear-probing
  recipe: the normalisation makes one learning rate fit every encoder), trained on the frozen
  features by SGD with momentum and a cosine schedule.
- k-NN: cosine similarity to the labelled training features, the k = 20 nearest vote with
  weights exp(s / T), T = 0.07 (Wu et al. 2018; the DINO evaluation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import UserError

KNN_K, KNN_TEMPERATURE = 20, 0.07


@torch.no_grad()
def extract(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """``model.encode`` of every example, in eval mode, as float32 on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([model.encode(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def label_subset(y: Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Indices of a class-stratified ``fraction`` of the examples (at least one per class), seeded."""
    if not 0 < fraction <= 1:
        raise UserError(f"label fraction {fraction}: must be in (0, 1], e.g. 10%")
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        keep.append(idx[: max(1, round(fraction * len(idx)))])
    return torch.cat(keep).sort().values


def knn_predict(train_f: Tensor, train_y: Tensor, test_f: Tensor, num_classes: int, k: int = KNN_K,
                temperature: float = KNN_TEMPERATURE, chunk: int = 1024) -> Tensor:
    """Class of each test feature by the temperature-weighted vote of its k most cosine-similar training features."""
    if k < 1 or temperature <= 0:
        raise UserError(f"k-NN: k={k} must be >= 1 and temperature={temperature} > 0")
    k = min(k, len(train_f))
    bank = F.normalize(train_f.float(), dim=1)
    preds = []
    for q in F.normalize(test_f.float(), dim=1).split(chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes).scatter_add_(1, train_y[idx], (sim / temperature).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


@dataclass
class LinearProbeSettings:
    epochs: int = 100
    lr: float = 0.1
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0


def linear_probe(train_f: Tensor, train_y: Tensor, num_classes: int,
                 settings: LinearProbeSettings = LinearProbeSettings()) -> nn.Module:
    """Train BatchNorm1d(affine=False) + Linear on frozen features; returns the probe in eval mode."""
    s = settings
    if s.epochs < 1 or s.lr <= 0 or s.batch_size < 1:
        raise UserError(f"linear probe settings {s}: epochs and batch_size must be >= 1, lr > 0")
    g = torch.Generator().manual_seed(s.seed)
    d = train_f.shape[1]
    probe = nn.Sequential(nn.BatchNorm1d(d, affine=False, eps=1e-6), nn.Linear(d, num_classes))
    nn.init.trunc_normal_(probe[1].weight, std=0.01)  # MAE's head initialisation for probing
    nn.init.zeros_(probe[1].bias)
    opt = torch.optim.SGD(probe.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    bs = min(s.batch_size, len(train_f))
    per_epoch = max(1, len(train_f) // bs)
    total = s.epochs * per_epoch
    probe.train()
    step = 0
    for _ in range(s.epochs):
        perm = torch.randperm(len(train_f), generator=g)
        for i in range(per_epoch):
            idx = perm[i * bs : (i + 1) * bs]
            for group in opt.param_groups:
                group["lr"] = s.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(probe(train_f[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return probe.eval()


@torch.no_grad()
def accuracy(logits_or_pred: Tensor, y: Tensor) -> float:
    pred = logits_or_pred.argmax(dim=1) if logits_or_pred.dim() == 2 else logits_or_pred
    return float((pred == y).float().mean())
