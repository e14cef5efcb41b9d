"""Two toy families added from outside the library, with no trainer change (docs/architecture.md).

``toy-gan``: a two-phase adversarial model whose generator loss runs through the critic (one
graph), with the hooks a GAN needs (EMA of the generator only, weight clipping after the critic's
update, its own optimizer settings per phase). ``toy-encoder``: a representation model with
``encode`` and no ``sample``: data-dependent initialisation, seeded augmentation, its own test
metric (accuracy). Importing this module registers both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.model import Context, Model, ModelConfig, Phase, register_model
from genlab.nn.random import randn


@dataclass
class ToyGANConfig(ModelConfig):
    hidden: int = 16
    n_critic: int = 2
    clip: float = 0.5  # critic weights are clipped to [-clip, clip] after each critic update (WGAN)


@register_model("toy-gan", help="toy GAN: affine generator, MLP critic, non-saturating loss")
class ToyGAN(Model):
    config_class = ToyGANConfig

    def __init__(self, config: ToyGANConfig) -> None:
        super().__init__(config)
        d = config.data_shape[0]
        self.generator = nn.Linear(d, d)
        self.critic = nn.Sequential(nn.Linear(d, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 1))

    def phases(self) -> list[Phase]:
        return [Phase("critic", list(self.critic.parameters()), steps=self.config.n_critic, betas=(0.5, 0.9)),
                Phase("generator", list(self.generator.parameters()), lr_scale=0.5)]

    def critic_loss(self, real: Tensor, z: Tensor) -> Tensor:
        fake = self.generator(z).detach()
        return F.softplus(-self.critic(real).float()).mean() + F.softplus(self.critic(fake).float()).mean()

    def generator_loss(self, z: Tensor) -> Tensor:
        return F.softplus(-self.critic(self.generator(z)).float()).mean()  # through the critic: one graph

    def loss(self, batch: dict[str, Tensor], phase: str, ctx: Context = Context()) -> dict[str, Tensor]:
        x = batch["x"]
        z = randn(tuple(x.shape), ctx.random, x.device)
        if phase == "critic":
            return {"loss": self.critic_loss(x, z)}
        return {"loss": self.generator_loss(z)}

    def after_update(self, phase: str, ctx: Context) -> None:
        if phase == "critic":
            with torch.no_grad():
                for p in self.critic.parameters():
                    p.clamp_(-self.config.clip, self.config.clip)

    def ema_modules(self) -> list[nn.Module]:
        return [self.generator]

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, **kw) -> Tensor:
        return self.generator(randn((n, self.config.data_shape[0]), generator, self.device))


@dataclass
class ToyEncoderConfig(ModelConfig):
    width: int = 16
    jitter: float = 0.05  # training augmentation: Gaussian jitter of this scale


@register_model("toy-encoder", help="toy classifier with an encoder (no sampling)")
class ToyEncoder(Model):
    config_class = ToyEncoderConfig

    def __init__(self, config: ToyEncoderConfig) -> None:
        super().__init__(config)
        d = config.data_shape[0]
        self.register_buffer("shift", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        self.body = nn.Sequential(nn.Linear(d, config.width), nn.SiLU())
        self.head = nn.Linear(config.width, max(config.num_classes, 1))

    def no_weight_decay(self) -> set[str]:
        return {"head.weight"}

    def init_from_data(self, batch: dict[str, Tensor]) -> None:
        x = batch["x"]
        self.shift.copy_(x.mean(0))
        self.scale.copy_(x.std(0) + 1e-6)

    def augment(self, batch, random):
        x = batch["x"]
        return {**batch, "x": x + self.config.jitter * random.randn(tuple(x.shape), x.device)}

    def encode(self, x: Tensor) -> Tensor:
        return self.body((x - self.shift) / self.scale)

    def loss(self, batch: dict[str, Tensor], phase: str, ctx: Context = Context()) -> dict[str, Tensor]:
        return {"loss": F.cross_entropy(self.head(self.encode(batch["x"])).float(), batch["y"])}

    def eval_step(self, batch: dict[str, Tensor], ctx: Context) -> dict[str, Tensor]:
        out = super().eval_step(batch, ctx)
        out["accuracy"] = (self.head(self.encode(batch["x"])).argmax(1) == batch["y"]).float()
        return out
