"""Variational autoencoder (Kingma & Welling 2014): ELBO training, sampling, likelihood bound.

Convolutional encoder/decoder for images, MLP for vectors (2-D toys). The decoder predicts a mean
and a log-scale per element: quantized images get a discretized logistic likelihood (PixelCNN++),
an exact probability of the 8-bit data, and continuous vectors a Gaussian. ``log_prob`` is the ELBO
    log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || N(0, I))
in nats (bits/dim of the discrete data for images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.model import Context, Model, ModelConfig, register_model
from genlab.nn.distributions import discretized_logistic_log_prob, gaussian_log_prob
from genlab.nn.random import Source, randn


@dataclass
class VAEConfig(ModelConfig):
    latent_dim: int = 16
    channels: int = 32  # conv channels at full resolution, doubled per level (images)
    hidden: int = 256  # MLP width (vectors)
    depth: int = 3  # MLP hidden layers (vectors)
    beta: float = 1.0  # KL weight in training; the reported ELBO always uses beta = 1
    min_log_scale: float = -7.0  # floor of the decoder's log standard deviation

    def validate(self) -> None:
        super().validate()
        for name in ("latent_dim", "channels", "hidden", "depth"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.beta <= 0:
            raise UserError(f"beta={self.beta}: must be > 0")
        if len(self.data_shape) not in (1, 3):
            raise UserError(f"data_shape={self.data_shape}: VAE takes (D,) vectors or (C, H, W) images")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


def _levels(h: int, w: int) -> int:
    """Stride-2 levels (at most 3) that halve both sides exactly and keep them >= 4."""
    n = 0
    while n < 3 and h % 2 == 0 and w % 2 == 0 and h >= 8 and w >= 8:
        h, w, n = h // 2, w // 2, n + 1
    return n


class ConvEncoder(nn.Module):
    def __init__(self, c: int, h: int, w: int, channels: int, out: int) -> None:
        super().__init__()
        n = _levels(h, w)
        chans = [channels * 2**i for i in range(n + 1)]
        layers: list[nn.Module] = [nn.Conv2d(c, chans[0], 3, padding=1), nn.SiLU()]
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.SiLU()]
        layers += [nn.Conv2d(chans[-1], chans[-1], 3, padding=1), nn.SiLU(), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1] * (h >> n) * (w >> n), out)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.net(x))


class ConvDecoder(nn.Module):
    def __init__(self, c: int, h: int, w: int, channels: int, latent: int) -> None:
        super().__init__()
        n = _levels(h, w)
        chans = [channels * 2 ** (n - i) for i in range(n + 1)]
        self.shape = (chans[0], h >> n, w >> n)
        self.fc = nn.Linear(latent, chans[0] * (h >> n) * (w >> n))
        layers: list[nn.Module] = [nn.SiLU(), nn.Conv2d(chans[0], chans[0], 3, padding=1), nn.SiLU()]
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.SiLU()]
        layers += [nn.Conv2d(chans[-1], c, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).view(-1, *self.shape))


@register_model("vae", help="variational autoencoder (conv for images, MLP for vectors); ELBO")
class VAE(Model):
    """Gaussian-latent VAE whose decoder predicts a mean and a log-scale per element."""

    config_class = VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        shape, k, hid = config.data_shape, config.latent_dim, config.hidden
        if len(shape) == 3:
            self.encoder = ConvEncoder(*shape, config.channels, 2 * k)
            self.decoder = ConvDecoder(2 * shape[0], *shape[1:], config.channels, k)
        else:
            self.encoder = _mlp([shape[0]] + [hid] * config.depth + [2 * k])
            self.decoder = _mlp([k] + [hid] * config.depth + [2 * shape[0]])
        self.dims = math.prod(shape)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z|x)."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-scale of p(x|z), each shaped like x."""
        mean, log_scale = self.decoder(z).float().chunk(2, dim=1)
        return mean, log_scale.clamp(min=self.config.min_log_scale)

    def log_px(self, x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
        """log p(x|z) per example: discretized logistic for quantized data, else Gaussian."""
        if self.config.bins:
            lp = discretized_logistic_log_prob(x, mean, log_scale, self.config.bins)
        else:
            lp = gaussian_log_prob(x, mean, log_scale)
        return lp.flatten(1).sum(dim=1)

    def elbo_terms(self, x: Tensor, generator: Source = None) -> tuple[Tensor, Tensor]:
        """Per-example reconstruction log-likelihood log p(x|z) and KL(q(z|x) || p(z)), in nats."""
        mu, logvar = self.posterior(x)
        z = mu + (0.5 * logvar).exp() * randn(tuple(mu.shape), generator, mu.device)  # reparameterization
        kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(dim=1)  # KL(N(mu, s^2) || N(0, I))
        return self.log_px(x, *self.decode(z)), kl

    def loss(self, batch: dict[str, Tensor], phase: str, ctx: Context = Context()) -> dict[str, Tensor]:
        rec, kl = self.elbo_terms(batch["x"], ctx.random)
        loss = -(rec - self.config.beta * kl).mean() / self.dims
        return {"loss": loss, "rec": -rec.mean() / self.dims, "kl": kl.mean(), "nll_bound": -(rec - kl).mean() / self.dims}

    @torch.no_grad()
    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """ELBO lower bound on log p(x) per example, in nats (of the discrete data if quantized)."""
        rec, kl = self.elbo_terms(x, generator)
        return rec - kl

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, batch_size: int | None = None, **kw) -> Tensor:
        """Decoder means for z ~ N(0, I), decoded ``batch_size`` at a time; noise from ``generator``.

        For quantized data the means are clipped to the data range [-1, 1]: the discretized
        likelihood puts all mass below -1 on the lowest level, so background means drift far below.
        """
        if kw:
            raise UserError(f"vae sampling takes no option {', '.join(kw)} (only batch_size)")
        z = randn((n, self.config.latent_dim), generator, self.device)
        x = torch.cat([self.decode(part)[0] for part in z.split(batch_size or n)])
        return x.clamp(-1.0, 1.0) if self.config.bins else x

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Posterior mean of q(z|x)."""
        return self.posterior(x)[0]
