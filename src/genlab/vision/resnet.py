"""CIFAR-style ResNet (He et al. 2016): the CNN line, with the same face as the ViT.

A 3x3 stem at full resolution (no max-pool: small images), stages of BasicBlocks (two 3x3 convs,
BatchNorm, identity or 1x1-projection shortcut), stride 2 at the start of each stage after the
first, global average pooling and a linear head. Names follow torchvision / timm (``conv1``,
``bn1``, ``layer1.0.conv1`` ..., ``fc``). BatchNorm statistics cover the global batch under torchrun
(:class:`genlab.nn.batch_norm.GlobalBatchNorm2d`), so N processes train what one process trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.model import register_model
from genlab.nn.batch_norm import GlobalBatchNorm2d
from genlab.vision.classifier import Classifier, ClassifierConfig


@dataclass
class ResNetConfig(ClassifierConfig):
    data_shape: tuple[int, ...] = (1, 28, 28)
    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (2, 2, 2)  # BasicBlocks per stage ((3, 3, 3) is ResNet-20)

    def validate(self) -> None:
        super().validate()
        if not self.widths or len(self.widths) != len(self.depths):
            raise UserError(f"widths={self.widths}, depths={self.depths}: give one width and one depth per stage")
        if min(self.widths) < 1 or min(self.depths) < 1:
            raise UserError(f"widths={self.widths}, depths={self.depths}: every value must be >= 1")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = GlobalBatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = GlobalBatchNorm2d(cout)
        nn.init.zeros_(self.bn2.weight)  # each residual branch starts as zero (Goyal et al. 2017)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), GlobalBatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


@register_model("resnet", help="CIFAR-style ResNet classifier (BasicBlocks); top-1 accuracy")
class ResNet(Classifier):
    """ResNet backbone + linear head; ``forward_features`` returns the last feature map."""

    config_class = ResNetConfig
    head_name = "fc"

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__(config)
        c = config.data_shape[0]
        w0 = config.widths[0]
        self.conv1 = nn.Conv2d(c, w0, 3, 1, 1, bias=False)
        self.bn1 = GlobalBatchNorm2d(w0)
        cin = w0
        for i, (w, n) in enumerate(zip(config.widths, config.depths)):
            blocks = [BasicBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = w
        self.fc = nn.Linear(cin, config.num_classes) if config.num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(len(self.config.widths)):
            x = getattr(self, f"layer{i + 1}")(x)
        return x

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        pooled = features.mean(dim=(2, 3))
        return pooled if pre_logits else self.fc(pooled)

    def num_layers(self) -> int:
        return len(self.config.widths) + 1

    def layer_id(self, name: str) -> int:
        """Stem 0, stage i is i, the head last."""
        head = name.split(".")[0]
        if head in ("conv1", "bn1"):
            return 0
        if head.startswith("layer"):
            return int(head[5:])
        return self.num_layers()
