"""Generator and critic networks: MLPs for vectors (``gan_toy.py``), DCGAN-style convnets for images.

Conditional variants take ``class_labels``: the generator concatenates a learned class embedding
to z, the critic adds a projection term <embed(y), phi(x)> to its output (Miyato & Koyama 2018).
No BatchNorm anywhere: gradient penalties and R1 / R2 are per-example quantities (BatchNorm would
couple the examples of a batch), and per-example networks give the same result however a batch is
split across processes. The image generator uses GroupNorm instead; the critic has no normalization
(as R3GAN and WGAN-GP's critics).
"""

from __future__ import annotations

from torch import Tensor, nn
import torch

from genlab.nn.embeddings import check_labels


def resolution_levels(h: int, w: int, most: int = 3) -> int:
    """Stride-2 levels (at most ``most``) that halve both sides exactly and keep them >= 4."""
    n = 0
    while n < most and h % 2 == 0 and w % 2 == 0 and h >= 8 and w >= 8:
        h, w, n = h // 2, w // 2, n + 1
    return n


class Conditioned(nn.Module):
    """Shared label handling: ``num_classes`` = 0 means unconditional (labels must be None)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def check(self, class_labels: Tensor | None, batch: int) -> None:
        check_labels(class_labels, self.num_classes, batch)
        if self.num_classes and class_labels is None:
            raise ValueError("a class-conditional network needs class_labels")


class MLPGenerator(Conditioned):
    """z (+ class embedding) -> ``depth`` x (Linear, ReLU) of ``hidden`` -> Linear to the data."""

    def __init__(self, latent_dim: int, dim: int, hidden: int = 512, depth: int = 3, num_classes: int = 0) -> None:
        super().__init__(num_classes)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        sizes = [latent_dim * (2 if num_classes else 1)] + [hidden] * depth
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], dim))

    def forward(self, z: Tensor, class_labels: Tensor | None = None) -> Tensor:
        self.check(class_labels, len(z))
        if self.embed is not None:
            z = torch.cat([z, self.embed(class_labels)], dim=1)
        return self.net(z)


class ProjectionHead(Conditioned):
    """Critic output from features phi: Linear(phi) (+ <embed(y), phi> when conditional)."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__(num_classes)
        self.out = nn.Linear(features, 1)
        self.embed = nn.Embedding(num_classes, features) if num_classes else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, std=features**-0.5)

    def forward(self, phi: Tensor, class_labels: Tensor | None) -> Tensor:
        self.check(class_labels, len(phi))
        out = self.out(phi).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(class_labels) * phi).sum(dim=1)  # projection discriminator
        return out


class MLPCritic(nn.Module):
    """x -> ``depth`` x (Linear, ReLU) of ``hidden`` -> one score per example (B,)."""

    def __init__(self, dim: int, hidden: int = 512, depth: int = 3, num_classes: int = 0) -> None:
        super().__init__()
        sizes = [dim] + [hidden] * depth
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.head = ProjectionHead(hidden, num_classes)

    def forward(self, x: Tensor, class_labels: Tensor | None = None) -> Tensor:
        return self.head(self.net(x), class_labels)


def _groups(channels: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)


class DCGANGenerator(Conditioned):
    """z (+ class embedding) -> Linear to (C_top, H / 2^n, W / 2^n) -> n x [ConvTranspose 4x4 stride 2,
    GroupNorm, ReLU] halving the width each time -> 3x3 conv -> tanh (images live in [-1, 1])."""

    def __init__(self, latent_dim: int, shape: tuple[int, int, int], channels: int = 64, num_classes: int = 0) -> None:
        super().__init__(num_classes)
        c, h, w = shape
        n = resolution_levels(h, w)
        widths = [channels * 2 ** (n - i) for i in range(n + 1)]  # e.g. 256 -> 128 -> 64 at 28x28 (n = 2)
        self.top = (widths[0], h >> n, w >> n)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.fc = nn.Linear(latent_dim * (2 if num_classes else 1), widths[0] * (h >> n) * (w >> n))
        layers: list[nn.Module] = [nn.GroupNorm(_groups(widths[0]), widths[0]), nn.ReLU()]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.GroupNorm(_groups(b), b), nn.ReLU()]
        layers += [nn.Conv2d(widths[-1], c, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, class_labels: Tensor | None = None) -> Tensor:
        self.check(class_labels, len(z))
        if self.embed is not None:
            z = torch.cat([z, self.embed(class_labels)], dim=1)
        return self.net(self.fc(z).view(-1, *self.top))


class DCGANCritic(nn.Module):
    """3x3 conv -> n x [Conv 4x4 stride 2, LeakyReLU 0.2] doubling the width -> flatten -> one score
    per example (B,), with a projection term when conditional."""

    def __init__(self, shape: tuple[int, int, int], channels: int = 64, num_classes: int = 0) -> None:
        super().__init__()
        c, h, w = shape
        n = resolution_levels(h, w)
        widths = [channels * 2**i for i in range(n + 1)]
        layers: list[nn.Module] = [nn.Conv2d(c, widths[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.head = ProjectionHead(widths[-1] * (h >> n) * (w >> n), num_classes)

    def forward(self, x: Tensor, class_labels: Tensor | None = None) -> Tensor:
        return self.head(self.net(x), class_labels)
