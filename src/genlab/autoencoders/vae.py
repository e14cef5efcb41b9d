"""Variational autoencoder (Kingma & Welling 2014): ELBO training, sampling, likelihood bound.

Convolutional encoder/decoder for images, MLP for vectors (2-D toys). The decoder is Gaussian,
p(x|z) = N(mu(z), sigma^2), with sigma shared per channel (images) or per feature (vectors). As in
the sigma-VAE (Rybkin et al. 2021) sigma is not learned by gradient steps but set to its optimum,
the root-mean-square reconstruction error: in training from the batch, and for evaluation from a
running average kept as a buffer. ``log_prob`` is the ELBO
    log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || N(0, I)),
on dequantized data for quantized images (reported in bits/dim of the discrete data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.metrics.likelihood import dequantize, discrete_log_prob
from genlab.model import GenerativeModel, ModelConfig, register_model
from genlab.nn.random import randn


@dataclass
class VAEConfig(ModelConfig):
    latent_dim: int = 16
    channels: int = 32  # conv channels at full resolution, doubled per level (images)
    hidden: int = 256  # MLP width (vectors)
    depth: int = 3  # MLP hidden layers (vectors)
    beta: float = 1.0  # KL weight in training; the reported ELBO always uses beta = 1
    min_log_scale: float = -7.0  # floor of the decoder's log standard deviation
    scale_momentum: float = 0.99  # running average of the optimal log-scale used for evaluation

    def validate(self) -> None:
        super().validate()
        for name in ("latent_dim", "channels", "hidden", "depth"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 1")
        if not 0 <= self.scale_momentum < 1:
            raise UserError(f"scale_momentum={self.scale_momentum}: must be in [0, 1)")
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
class VAE(GenerativeModel):
    """Gaussian-latent VAE with a Gaussian decoder of learned scale."""

    config_class = VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        shape, k, hid = config.data_shape, config.latent_dim, config.hidden
        if len(shape) == 3:
            self.encoder = ConvEncoder(*shape, config.channels, 2 * k)
            self.decoder = ConvDecoder(*shape, config.channels, k)
            self.register_buffer("log_scale", torch.zeros(shape[0], 1, 1))
        else:
            self.encoder = _mlp([shape[0]] + [hid] * config.depth + [2 * k])
            self.decoder = _mlp([k] + [hid] * config.depth + [shape[0]])
            self.register_buffer("log_scale", torch.zeros(shape[0]))
        self.dims = math.prod(shape)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z|x)."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z).float()

    def _optimal_log_scale(self, x: Tensor, mean: Tensor) -> Tensor:
        """log sigma* = log RMS error, per channel / feature, from this batch (sigma-VAE)."""
        dims = [0] + list(range(2, x.dim()))
        mse = ((x - mean).detach() ** 2).mean(dim=dims).view_as(self.log_scale)
        return 0.5 * mse.clamp_min(1e-12).log()

    def elbo_terms(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Per-example reconstruction log-likelihood log p(x|z) and KL(q(z|x) || p(z)), in nats."""
        mu, logvar = self.posterior(x)
        z = mu + (0.5 * logvar).exp() * randn(tuple(mu.shape), generator, mu.device)  # reparameterization
        mean = self.decode(z)
        if self.training:
            log_s = self._optimal_log_scale(x, mean).clamp(min=self.config.min_log_scale)
            self.log_scale.lerp_(log_s, 1.0 - self.config.scale_momentum)
        else:
            log_s = self.log_scale.clamp(min=self.config.min_log_scale)
        log_px = -0.5 * ((x - mean) / log_s.exp()) ** 2 - log_s - 0.5 * math.log(2 * math.pi)
        kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(dim=1)  # KL(N(mu, s^2) || N(0, I))
        return log_px.flatten(1).sum(dim=1), kl

    def loss(self, batch: dict[str, Tensor], phase: str) -> dict[str, Tensor]:
        x = dequantize(batch["x"], self.config.bins)
        rec, kl = self.elbo_terms(x)
        elbo = discrete_log_prob(rec - kl, self.dims, self.config.bins)
        loss = -(rec - self.config.beta * kl).mean() / self.dims
        return {"loss": loss, "rec": -rec.mean() / self.dims, "kl": kl.mean(), "nll_bound": -elbo.mean() / self.dims}

    @torch.no_grad()
    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """ELBO lower bound on log p(x) per example, in nats (of the discrete data if quantized)."""
        x = dequantize(x, self.config.bins, generator)
        rec, kl = self.elbo_terms(x, generator)
        return discrete_log_prob(rec - kl, self.dims, self.config.bins)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, **kw) -> Tensor:
        """Decoder means for z ~ N(0, I); noise from ``generator`` is device-independent."""
        if kw:
            raise UserError(f"vae sampling takes no options, got: {', '.join(kw)}")
        z = randn((n, self.config.latent_dim), generator, self.device)
        return self.decode(z)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Posterior mean of q(z|x)."""
        return self.posterior(x)[0]
