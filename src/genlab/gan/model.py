"""Adversarial models: GAN, WGAN, WGAN-GP and R3GAN as presets of one class, trained in two phases.

Each round the trainer runs the ``critic`` phase ``n_critic`` times, then the ``generator`` phase
once (``Phase.steps``); only that phase's parameters receive gradients. The critic's objective is
``critic_loss(loss, D(x), D(G(z)))`` plus ``gp`` x WGAN-GP's penalty and gamma / 2 x R1 (real) /
R2 (fake); WGAN clips the critic's weights after each of its updates (``after_update``). The EMA
follows the generator only; samples come from the EMA generator. For Wasserstein losses the critic's
Kantorovich-Rubinstein estimate of W1, E_p[f] - E_q[f], is logged as ``critic/w1_estimate``.

Choosing R1 / R2's gamma: the penalty gamma / 2 E||grad_x D||^2 is not scale-free. Multiplying the
data by s divides grad_x D by s, so the same regularisation needs gamma x s^2, and it grows with
the number of dimensions the gradient is summed over. genlab's rule: gamma = GAMMA_PER_DIM x D x
sigma^2, where D is the data's dimension and sigma^2 its mean per-dimension variance (measured
on the first training batch when gamma is left at "auto" = -1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.gan.losses import LOSSES, critic_loss, generator_loss
from genlab.gan.networks import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator
from genlab.gan.penalties import clip_weights, gradient_penalty, squared_gradient_norm
from genlab.model import OPTIMIZERS, Context, Model, ModelConfig, Phase, register_model
from genlab.nn.random import rand, randn

GAMMA_PER_DIM = 0.0025  # gamma = GAMMA_PER_DIM x D x sigma^2 when r1 / r2 are "auto" (-1)
SAMPLE_OPTIONS = ("class_labels", "batch_size")


@dataclass
class GANConfig(ModelConfig):
    loss: str = "nonsaturating"  # minimax | nonsaturating | wasserstein | hinge | rpgan
    latent_dim: int = 64
    hidden: int = 512  # MLP width (vectors): 3 x 512 ReLU as gan_toy.py
    depth: int = 3
    channels: int = 64  # conv width at full resolution (images), doubled per level
    n_critic: int = 1  # critic updates per generator update
    clip: float | None = None  # WGAN: clamp critic weights to [-clip, clip] after each critic update
    gp: float = 0.0  # WGAN-GP lambda (10 for images; gan_toy.py uses 0.1 on 2-D toys)
    r1: float = 0.0  # gamma of R1 (real data); -1 = auto (GAMMA_PER_DIM x D x sigma^2)
    r2: float = 0.0  # gamma of R2 (generated data); -1 = auto
    lazy: int = 1  # apply penalties every k-th critic update, scaled by k (StyleGAN2's lazy regularisation)
    optimizer: str = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)

    def validate(self) -> None:
        super().validate()
        if len(self.data_shape) not in (1, 3):
            raise UserError(f"data_shape={self.data_shape}: a GAN takes (D,) vectors or (C, H, W) images")
        if self.loss not in LOSSES:
            raise UserError(f"loss={self.loss!r}: choose one of {', '.join(LOSSES)}")
        for name in ("latent_dim", "hidden", "depth", "channels"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.n_critic < 1:
            raise UserError(f"n_critic={self.n_critic}: the critic needs >= 1 update per generator update")
        if self.lazy < 1:
            raise UserError(f"lazy={self.lazy}: must be >= 1 (1 = penalties at every critic update)")
        if self.clip is not None and not self.clip > 0:
            raise UserError(f"clip={self.clip}: weight clipping needs a value > 0 (WGAN: 0.01), or none")
        if self.gp < 0:
            raise UserError(f"gp={self.gp}: the gradient-penalty weight must be >= 0 (WGAN-GP: 10)")
        for name in ("r1", "r2"):
            if getattr(self, name) < 0 and getattr(self, name) != -1:
                raise UserError(f"{name}={getattr(self, name)}: gamma must be >= 0, or -1 for auto")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer={self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            raise UserError(f"lr={self.lr}: must be > 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UserError(f"betas={self.betas}: two values in [0, 1)")


class GAN(Model):
    """Generator G(z) and critic D(x) with a configurable loss and regularisers (see the module doc)."""

    config_class = GANConfig

    def __init__(self, config: GANConfig) -> None:
        super().__init__(config)
        shape, k = tuple(config.data_shape), config.num_classes
        if len(shape) == 3:
            self.generator = DCGANGenerator(config.latent_dim, shape, config.channels, k)
            self.critic = DCGANCritic(shape, config.channels, k)
        else:
            self.generator = MLPGenerator(config.latent_dim, shape[0], config.hidden, config.depth, k)
            self.critic = MLPCritic(shape[0], config.hidden, config.depth, k)
        # the R1 / R2 gammas in use ("auto" ones are set from data by init_from_data); saved with the model
        self.register_buffer("gamma", torch.tensor([max(config.r1, 0.0), max(config.r2, 0.0)]))

    def phases(self) -> list[Phase]:
        c = self.config
        settings: dict[str, Any] = dict(optimizer=c.optimizer, lr=c.lr, betas=tuple(c.betas), weight_decay=0.0,
                                        grad_clip=0.0)  # the references clip no gradients
        return [Phase("critic", list(self.critic.parameters()), steps=c.n_critic, **settings),
                Phase("generator", list(self.generator.parameters()), **settings)]

    def ema_modules(self) -> list[nn.Module]:
        return [self.generator]

    def load_warm_start(self, state: dict[str, Tensor], where: str, source: Model | None = None) -> list[str]:
        """As :meth:`Model.load_warm_start`, but the R1 / R2 gammas are this run's (its options; "auto"
        ones are resolved on its data by :meth:`init_from_data`)."""
        return super().load_warm_start({**state, "gamma": self.gamma.clone()}, where, source)

    def init_from_data(self, batch: dict[str, Tensor]) -> None:
        """Resolve "auto" gammas: GAMMA_PER_DIM x D x (mean per-dimension variance of the batch)."""
        x = batch["x"].float().flatten(1)
        auto = GAMMA_PER_DIM * x.shape[1] * x.var(dim=0).mean().item()
        for i, value in enumerate((self.config.r1, self.config.r2)):
            if value == -1:
                self.gamma[i] = auto

    def after_update(self, phase: str, ctx: Context) -> None:
        if phase == "critic" and self.config.clip is not None:
            clip_weights(self.critic, self.config.clip)

    # -- objectives --------------------------------------------------------------------------
    def _labels(self, batch: dict[str, Tensor]) -> Tensor | None:
        if not self.config.num_classes:
            return None
        if "y" not in batch:
            raise UserError("a class-conditional GAN (num_classes > 0) needs labelled data")
        return batch["y"]

    def latents(self, n: int, source, device) -> Tensor:
        return randn((n, self.config.latent_dim), source, device)

    def loss(self, batch: dict[str, Tensor], phase: str, ctx: Context = Context()) -> dict[str, Tensor]:
        x, y, c = batch["x"], self._labels(batch), self.config
        z = self.latents(len(x), ctx.random, x.device)

        def D(t: Tensor) -> Tensor:
            return self.critic(t, y).float()

        if phase == "generator":
            fake_score = D(self.generator(z, y))
            real_score = D(x) if c.loss == "rpgan" else None
            return {"loss": generator_loss(c.loss, fake_score, real_score)}
        fake = self.generator(z, y).detach()
        alpha = rand((len(x),), ctx.random, x.device) if c.gp else None  # drawn every update: seeded streams stay aligned
        lazy_turn = (ctx.step * c.n_critic + ctx.repeat) % c.lazy == 0
        out: dict[str, Tensor] = {}
        penalty = torch.zeros((), device=x.device)
        scores = []
        for key, gamma, points in (("r1", self.gamma[0].item(), x), ("r2", self.gamma[1].item(), fake)):
            if gamma and lazy_turn:  # R1 on real data, R2 on generated data: gamma / 2 E||grad_x D||^2
                score, value = squared_gradient_norm(D, points)
                penalty = penalty + c.lazy * gamma / 2 * value
                out[key] = value.detach()
            else:
                score = D(points)
            scores.append(score)
        real_score, fake_score = scores
        if c.gp and lazy_turn:
            gp = gradient_penalty(D, x, fake, alpha)
            penalty = penalty + c.lazy * c.gp * gp
            out["gp"] = gp.detach()
        adversarial = critic_loss(c.loss, real_score, fake_score)
        out.update(self.scores(real_score.detach(), fake_score.detach()))
        return {"loss": adversarial + penalty, "adversarial": adversarial.detach(), **out}

    def scores(self, real_score: Tensor, fake_score: Tensor) -> dict[str, Tensor]:
        """Mean critic scores; for Wasserstein losses E_p[f] - E_q[f], the critic's W1 estimate."""
        out = {"d_real": real_score.mean(), "d_fake": fake_score.mean()}
        if self.config.loss == "wasserstein":
            out["w1_estimate"] = out["d_real"] - out["d_fake"]
        return out

    def eval_step(self, batch: dict[str, Tensor], ctx: Context) -> dict[str, Tensor]:
        """Critic scores and losses on test data against fresh samples (no penalties: no gradients here)."""
        x, y = batch["x"], self._labels(batch)
        fake = self.generator(self.latents(len(x), ctx.random, x.device), y)
        real_score, fake_score = self.critic(x, y).float(), self.critic(fake, y).float()
        return {"critic_loss": critic_loss(self.config.loss, real_score, fake_score),
                "generator_loss": generator_loss(self.config.loss, fake_score, real_score),
                **self.scores(real_score, fake_score)}

    # -- sampling ----------------------------------------------------------------------------
    def sample_classes(self, n: int) -> Tensor | None:
        """Class-conditional models draw sample i for class i mod K unless told otherwise."""
        return torch.arange(n) % self.config.num_classes if self.config.num_classes else None

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, **kw: Any) -> Tensor:
        """``n`` samples G(z), z ~ N(0, I) drawn from ``generator``; options: class_labels, batch_size
        (results do not depend on it)."""
        unknown = set(kw) - set(SAMPLE_OPTIONS)
        if unknown:
            raise UserError(f"unknown sampling option(s) {', '.join(sorted(unknown))} for a GAN; it takes "
                            f"{', '.join(SAMPLE_OPTIONS)}")
        labels = self.class_labels_for(n, kw.get("class_labels"))
        z = self.latents(n, generator, self.device)
        size = int(kw.get("batch_size") or n)
        parts = [self.generator(z[i:i + size], None if labels is None else labels[i:i + size])
                 for i in range(0, n, size)]
        return torch.cat(parts).float()


register_model("gan", help="GAN (Goodfellow et al. 2014), non-saturating loss, Adam 2e-4 (0.5, 0.999)",
               loss="nonsaturating")(GAN)
register_model("wgan", help="WGAN (Arjovsky et al. 2017): weight clipping 0.01, RMSprop 5e-5, 5 critic steps",
               loss="wasserstein", clip=0.01, optimizer="rmsprop", lr=5e-5, n_critic=5)(GAN)
register_model("wgan-gp", help="WGAN-GP (Gulrajani et al. 2017): gradient penalty 10, Adam 1e-4 (0.5, 0.9), 5 critic steps",
               loss="wasserstein", gp=10.0, lr=1e-4, betas=(0.5, 0.9), n_critic=5)(GAN)
register_model("r3gan", help="R3GAN (Huang et al. 2024): relativistic pairing loss + R1 + R2, Adam beta1 0",
               loss="rpgan", r1=-1.0, r2=-1.0, lr=2e-4, betas=(0.0, 0.99))(GAN)

__all__ = ["GAN", "GANConfig", "GAMMA_PER_DIM"]
