"""A small CNN classifier made for the data it judges: its penultimate layer is the feature space.

Inception-v3 features, made for 299x299 ImageNet photos, mislead on small grey digits (Stein et
al. 2023). genlab trains this network on the labelled data itself (``genlab features train``),
from a fixed seed, in a minute on a CPU; the digit networks shipped in the package were made by
exactly that command (``genlab/metrics/weights/README.md``).

Layout: conv stem, then stride-2 stages (two 3x3 convs each, BatchNorm, ReLU) while the side is
at least 8, global average pooling (the features: 96-d for 28x28), a ``feature_dim`` ReLU layer
and a linear head (the logits). Training: AdamW, cosine lr, random translations of up to 2
pixels (digits must keep their orientation: no flips). No label smoothing: the classifier metrics
count samples with p > 0.9, which smoothing would cap.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genlab.atomic import fsync_file
from genlab.errors import UserError


@dataclass
class FeatureNetConfig:
    in_channels: int = 1
    size: int = 28  # images are size x size
    num_classes: int = 10
    width: int = 24  # stem channels, doubled per stage
    feature_dim: int = 128
    max_stages: int = 2

    def stages(self) -> int:
        n, s = 0, self.size
        while n < self.max_stages and s >= 8 and s % 2 == 0:
            n, s = n + 1, s // 2
        return n


def _conv(a: int, b: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(a, b, 3, stride, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]


class FeatureNet(nn.Module):
    def __init__(self, config: FeatureNetConfig) -> None:
        super().__init__()
        self.config = c = config
        layers, ch = _conv(c.in_channels, c.width), c.width
        for _ in range(c.stages()):
            layers += _conv(ch, 2 * ch, 2) + _conv(2 * ch, 2 * ch)
            ch *= 2
        self.body = nn.Sequential(*layers)
        self.embed = nn.Linear(ch, c.feature_dim)
        self.head = nn.Linear(c.feature_dim, c.num_classes)

    def features(self, x: Tensor) -> Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, 4 width) globally pooled conv features. Full rank: the
        embedding after them spans only their dimension, and its ReLU has dead units."""
        return self.body(x).mean((2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self.embed(self.features(x))))


@dataclass
class FeatureTraining:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    shift: int = 2  # random translation in pixels
    label_smoothing: float = 0.0  # none: it caps the top probability near 1 - 0.9 s, breaking "p > 0.9" counts
    seed: int = 0


def _shift(x: Tensor, max_shift: int, g: torch.Generator) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero-padded with the background -1)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=g)).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


@torch.no_grad()
def accuracy(net: FeatureNet, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    net.eval()
    hits = sum(int((net(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
               for i in range(0, len(x), batch_size))
    return hits / len(x)


def train_feature_net(x: Tensor, y: Tensor, num_classes: int, settings: FeatureTraining = FeatureTraining(),
                      show_progress: bool = False) -> FeatureNet:
    """Train a :class:`FeatureNet` on images ``x`` (N, C, S, S) in [-1, 1] with labels ``y``; seeded."""
    if x.dim() != 4 or x.shape[2] != x.shape[3]:
        raise UserError(f"a feature network needs square images (N, C, S, S), got shape {tuple(x.shape)}")
    if num_classes < 2 or y is None:
        raise UserError("a feature network is trained on labelled data with at least 2 classes")
    from tqdm.auto import tqdm

    torch.manual_seed(settings.seed)
    g = torch.Generator().manual_seed(settings.seed)
    net = FeatureNet(FeatureNetConfig(x.shape[1], x.shape[2], num_classes))
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    per_epoch = max(len(x) // settings.batch_size, 1)
    total = settings.epochs * per_epoch
    bar = tqdm(total=total, desc="train features", disable=not show_progress, dynamic_ncols=True, mininterval=0.5)
    step = 0
    for _ in range(settings.epochs):
        net.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(per_epoch):
            idx = order[i * settings.batch_size : (i + 1) * settings.batch_size]
            for group in opt.param_groups:
                group["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(net(_shift(x[idx], settings.shift, g)), y[idx],
                                   label_smoothing=settings.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
    bar.close()
    return net.eval()


def save_feature_net(net: FeatureNet, path: str | Path, classes: list[str], info: dict) -> None:
    """Weights and config in one safetensors file (config, class names and ``info`` in its metadata)."""
    meta = {"config": json.dumps(asdict(net.config)), "classes": json.dumps(classes), "info": json.dumps(info)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=meta)
    fsync_file(Path(path))


def load_feature_net(path: str | Path) -> tuple[FeatureNet, list[str], dict]:
    """A network saved by :func:`save_feature_net`, in eval mode, with its classes and info."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # not a safetensors file, or unreadable
        raise UserError(f"{path}: not a genlab feature network ({e})") from None
    if "config" not in meta:
        raise UserError(f"{path}: not a genlab feature network (no config in its metadata)")
    net = FeatureNet(FeatureNetConfig(**json.loads(meta["config"])))
    net.load_state_dict(load_file(str(path)))
    return net.eval(), json.loads(meta["classes"]), json.loads(meta.get("info", "{}"))
