"""Supervised image classification, shared by the CNN and ViT lines (``resnet``, ``vit``).

A :class:`Classifier` is a backbone with ``forward_features`` (tokens or feature maps) and
``forward_head`` (pooling, then logits, or the pooled features with ``pre_logits=True``), the
faces timm gives its models. Training is cross-entropy with optional label smoothing, mixup
(Zhang et al. 2018) and random-crop augmentation; ``eval_step`` reports top-1 accuracy, so
``metrics.json`` holds ``test_accuracy``. ``encode`` is the pooled feature the probes use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from scipy.special import betaincinv
from torch import Tensor

from genlab.errors import UserError
from genlab.model import Context, Model, ModelConfig, Phase
from genlab.nn.random import RowRandom


@dataclass
class ClassifierConfig(ModelConfig):
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) mixing of pairs of examples and their labels; 0 = off
    crop_pad: int = 0  # random crops of the image padded by this many (edge-replicated) pixels; 0 = off
    hflip: bool = False  # random horizontal flips (off: digits are not mirror-symmetric)
    layer_decay: float = 1.0  # layer-wise lr decay (BEiT / MAE fine-tuning); 1 = off

    def validate(self) -> None:
        super().validate()
        if len(self.data_shape) != 3:
            raise UserError(f"data_shape={self.data_shape}: image classifiers take (C, H, W) images")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing={self.label_smoothing}: must be in [0, 1)")
        if self.mixup < 0:
            raise UserError(f"mixup={self.mixup}: the Beta concentration must be >= 0 (0 turns mixup off)")
        if self.crop_pad < 0:
            raise UserError(f"crop_pad={self.crop_pad}: must be >= 0")
        if not 0 < self.layer_decay <= 1:
            raise UserError(f"layer_decay={self.layer_decay}: must be in (0, 1]")


def random_crop(x: Tensor, pad: int, random: RowRandom) -> Tensor:
    """Each image shifted by a random offset in [-pad, pad]^2, edges replicated (per-row draws)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    off = random.randint(2 * pad + 1, (b, 2), x.device)
    rows = (off[:, :1] + torch.arange(h, device=x.device))[:, None, :, None].expand(-1, x.shape[1], -1, w + 2 * pad)
    cropped = padded.gather(2, rows)
    cols = (off[:, 1:] + torch.arange(w, device=x.device))[:, None, None, :].expand(-1, x.shape[1], h, -1)
    return cropped.gather(3, cols)


def mixup(x: Tensor, target: Tensor, alpha: float, random: RowRandom) -> tuple[Tensor, Tensor]:
    """Mix rows 2i and 2i+1 with one lambda ~ Beta(alpha, alpha) per pair (inverse-CDF draw).

    Pairs are fixed by position, so a batch split across processes at even boundaries mixes alike.
    """
    partner = torch.arange(len(x), device=x.device) ^ 1
    partner[partner >= len(x)] = len(x) - 1
    u = random.rand((len(x),), torch.device("cpu"), torch.float64)
    u = u[torch.arange(len(x)) & ~1]  # the even row's draw serves its pair
    lam = torch.from_numpy(betaincinv(alpha, alpha, u.numpy())).float().to(x.device)
    lam = torch.where(torch.arange(len(x), device=x.device) % 2 == 0, lam, 1 - lam)
    mixed = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[partner]
    return mixed, lam[:, None] * target + (1 - lam[:, None]) * target[partner]


class Classifier(Model):
    """A backbone trained for classification; subclasses give the features and the head."""

    config_class = ClassifierConfig
    head_name: ClassVar[str] = "head"  # the linear classifier's module, fresh when the classes change

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """The pooled representation before the classifier head."""
        return self.forward_head(self.forward_features(x), pre_logits=True).float()

    def load_warm_start(self, state: dict[str, Tensor], where: str, source: Model | None = None) -> list[str]:
        """As :meth:`Model.load_warm_start`, but the head keeps its initial values where the checkpoint
        has none (an exported encoder) or one for other classes, as timm's ``pretrained`` does."""
        own, prefix = self.state_dict(), self.head_name + "."
        fresh = [k for k in own if k.startswith(prefix) and (k not in state or state[k].shape != own[k].shape)]
        kept = {k: v for k, v in state.items() if k not in fresh}
        return super().load_warm_start({**kept, **{k: own[k] for k in fresh}}, where, source) + fresh

    def layer_id(self, name: str) -> int:
        """Depth of parameter ``name`` for layer-wise lr decay: 0 = input side ... num_layers() = head."""
        return self.num_layers()

    def num_layers(self) -> int:
        return 0

    def phases(self) -> list[Phase]:
        if self.config.num_classes < 2:
            raise UserError(f"{self.name} trains on labelled data with at least 2 classes; this data has "
                            f"{self.config.num_classes} (for unlabelled images pretrain with mae)")
        decay, top = self.config.layer_decay, self.num_layers()
        scale = None if decay == 1 else (lambda name: decay ** (top - self.layer_id(name)))
        return [Phase("main", [p for p in self.parameters() if p.requires_grad], param_lr_scale=scale)]

    def augment(self, batch: dict[str, Tensor], random: RowRandom) -> dict[str, Tensor]:
        cfg = self.config
        x = batch["x"]
        if cfg.crop_pad:
            x = random_crop(x, cfg.crop_pad, random)
        if cfg.hflip:
            flip = random.rand((len(x),), x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        out = {**batch, "x": x}
        if cfg.mixup:
            out["x"], out["target"] = mixup(x, self.targets(batch["y"]), cfg.mixup, random)
        return out

    def targets(self, y: Tensor) -> Tensor:
        """Label-smoothed one-hot targets: (1 - eps) onehot + eps / K."""
        k, eps = self.config.num_classes, self.config.label_smoothing
        return F.one_hot(y, k).float() * (1 - eps) + eps / k

    def loss(self, batch: dict[str, Tensor], phase: str, ctx: Context = Context()) -> dict[str, Tensor]:
        if "y" not in batch:
            raise UserError(f"{self.name} needs labels: train it on labelled data")
        logits = self(batch["x"]).float()
        target = batch.get("target", self.targets(batch["y"]))
        loss = -(target * logits.log_softmax(-1)).sum(-1).mean()  # cross-entropy with soft targets
        return {"loss": loss, "accuracy": (logits.argmax(-1) == batch["y"]).float().mean()}

    @torch.no_grad()
    def eval_step(self, batch: dict[str, Tensor], ctx: Context) -> dict[str, Tensor]:
        logits = self(batch["x"]).float()
        return {"loss": F.cross_entropy(logits, batch["y"], reduction="none"),
                "accuracy": (logits.argmax(-1) == batch["y"]).float()}
