"""One diffusion model class for DDPM, DDIM, VP / VE score matching, EDM and flow matching.

They differ only in config: the schedule (x_t = s(t) (x0 + sigma(t) eps)), the network's
parameterization, the noise-level distribution and loss weighting used in training, and the
default sampler. Any trained model can be sampled by any sampler, because every network is
wrapped into the same denoiser D(x, sigma) (EDM section 2 / Table 1).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genlab.diffusion.denoiser import PARAMETERIZATIONS, Denoiser, clipped, guided
from genlab.diffusion.likelihood import ode_log_likelihood
from genlab.diffusion.losses import LogNormalSigma, UniformDiscreteT, UniformT, diffusion_loss, get_weighting
from genlab.diffusion.samplers import GRIDS, SPACINGS, NFECounter, PerSampleNoise, get_sampler, make_sigmas
from genlab.diffusion.schedules import SCHEDULES, VPSchedule, make_schedule
from genlab.errors import UserError
from genlab.metrics.likelihood import dequantize, discrete_log_prob
from genlab.model import Context, Model, ModelConfig, register_model
from genlab.nn.embeddings import drop_labels
from genlab.nn.mlp import MLPDenoiser, MLPDenoiserConfig
from genlab.nn.unet import UNet, UNetConfig

NOISE_LEVELS = ("discrete_t", "uniform_t", "lognormal")
SAMPLER_OPTIONS = ("sampler", "steps", "grid", "spacing", "rho", "eta", "S_churn", "S_tmin", "S_tmax",
                   "S_noise", "guidance", "clip_denoised", "class_labels", "batch_size")


@dataclass
class DiffusionConfig(ModelConfig):
    # the forward process x_t = s(t) (x0 + sigma(t) eps)
    schedule: str = "edm"  # vp | ve | edm | flow
    vp_kind: str = "linear"  # vp betas: linear | cosine
    sigma_min: float = 0.002  # ve / edm range
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    # training
    parameterization: str = "edm"  # eps | x0 | v | velocity | edm
    noise_level: str = "lognormal"  # discrete_t | uniform_t | lognormal
    P_mean: float = -1.2
    P_std: float = 1.2
    weighting: str = "edm"  # snr | v | velocity | edm | unit
    label_dropout: float = 0.1  # classifier-free guidance training (class-conditional only)
    # sampling defaults (each can be overridden per call)
    sampler: str = "heun"  # euler | heun | edm | ddim | ddpm | dpmpp_2m
    sample_steps: int = 18
    grid: str = "karras"  # karras | ddpm | uniform_t
    spacing: str = "leading"  # ddpm grid: leading | trailing | linspace
    rho: float = 7.0
    guidance: float = 1.0
    clip_denoised: bool = False  # clamp D (the predicted x0) to the image range [-1, 1] at every step
    # network: UNet for images, residual MLP for vectors
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int | tuple[int, ...] = 2  # one count, or one per level (Efficient U-Net)
    attn_levels: tuple[int, ...] = (-1,)
    patch_size: int = 1  # UNet on p x p patches (pixel-unshuffle): p^2 less compute
    dropout: float = 0.0
    hidden: int = 256
    depth: int = 4

    def validate(self) -> None:
        super().validate()
        choices = {"schedule": SCHEDULES, "parameterization": PARAMETERIZATIONS, "noise_level": NOISE_LEVELS,
                   "grid": GRIDS, "spacing": SPACINGS, "vp_kind": ("linear", "cosine")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        get_weighting(self.weighting)
        get_sampler(self.sampler)
        if not 0 < self.sigma_min < self.sigma_max:
            raise UserError(f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}: need 0 < sigma_min < sigma_max")
        if self.sample_steps < 1:
            raise UserError(f"sample_steps={self.sample_steps}: must be >= 1")
        if not self.rho > 0:
            raise UserError(f"rho={self.rho}: must be > 0 (EDM uses 7)")
        if self.guidance != 1.0 and self.num_classes == 0:
            raise UserError(f"guidance={self.guidance} needs a class-conditional model: train on labelled data "
                            "(num_classes > 0) or leave guidance=1")
        if not 0 <= self.label_dropout < 1:
            raise UserError(f"label_dropout={self.label_dropout}: must be in [0, 1)")
        if self.noise_level == "discrete_t" and self.schedule != "vp":
            raise UserError("noise_level=discrete_t needs schedule=vp (the DDPM grid)")
        check_clip(self.clip_denoised, self.data_shape)
        if len(self.data_shape) not in (1, 3):
            raise UserError(f"data_shape={self.data_shape}: diffusion takes (D,) vectors or (C, H, W) images")


def check_clip(clip: object, data_shape: tuple[int, ...]) -> None:
    """clip_denoised is a bool, and only for images, whose range is [-1, 1]; vectors have no fixed range."""
    if not isinstance(clip, bool):
        raise UserError(f"clip_denoised={clip!r}: must be true or false")
    if clip and len(data_shape) != 3:
        raise UserError(f"clip_denoised=true clamps to the image range [-1, 1]; data of shape {tuple(data_shape)} "
                        "has no fixed range, leave it false")


class DiffusionModel(Model):
    """Network + preconditioning in sigma-space; training objective and sampler chosen by config."""

    config_class = DiffusionConfig

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__(config)
        c = config
        if c.schedule == "vp":
            self.schedule = make_schedule("vp", kind=c.vp_kind)
        elif c.schedule in ("ve", "edm"):
            extra = {"sigma_data": c.sigma_data} if c.schedule == "edm" else {}
            self.schedule = make_schedule(c.schedule, sigma_min=c.sigma_min, sigma_max=c.sigma_max, **extra)
        else:
            self.schedule = make_schedule(c.schedule)
        self.net = self._network(c)
        self.denoiser = Denoiser(self.net, self.schedule, c.parameterization, c.sigma_data)
        if c.noise_level == "discrete_t":
            assert isinstance(self.schedule, VPSchedule)
            self.sigma_sampler: Any = UniformDiscreteT(self.schedule)
        elif c.noise_level == "uniform_t":
            self.sigma_sampler = UniformT(self.schedule)
        else:
            self.sigma_sampler = LogNormalSigma(c.P_mean, c.P_std)
        self.sigmas()  # the default sampling grid must exist for this schedule: fail now, not after training
        self.last_nfe = 0

    @staticmethod
    def _network(c: DiffusionConfig) -> nn.Module:
        if len(c.data_shape) == 3:
            cfg = UNetConfig(in_channels=c.data_shape[0], channels=c.channels, channel_mult=c.channel_mult,
                             num_res_blocks=c.num_res_blocks, attn_levels=c.attn_levels, dropout=c.dropout,
                             patch_size=c.patch_size,
                             num_classes=c.num_classes)
            cfg.validate()
            return UNet(cfg)
        cfg = MLPDenoiserConfig(dim=c.data_shape[0], hidden=c.hidden, depth=c.depth, num_classes=c.num_classes,
                                dropout=c.dropout)
        cfg.validate()
        return MLPDenoiser(cfg)

    # -- training -------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor], phase: str, ctx: Context = Context()) -> dict[str, Tensor]:
        labels = None
        if self.config.num_classes:
            labels = drop_labels(batch["y"], self.config.label_dropout if self.training else 0.0, self.config.num_classes,
                                 generator=ctx.random)
        loss = diffusion_loss(self.denoiser, batch["x"], self.sigma_sampler, self.config.weighting, labels,
                              generator=ctx.random, noise=batch.get("noise"))
        return {"loss": loss.mean()}

    # -- sampling -------------------------------------------------------------------------
    def sigmas(self, grid: str | None = None, steps: int | None = None, spacing: str | None = None,
               rho: float | None = None) -> Tensor:
        """The sampling grid (descending, ending in 0) for this model's schedule; None = config default."""
        c = self.config
        return make_sigmas(c.grid if grid is None else grid, c.sample_steps if steps is None else steps, self.schedule,
                           spacing=c.spacing if spacing is None else spacing, rho=c.rho if rho is None else rho)

    def sample_classes(self, n: int) -> Tensor | None:
        """Class-conditional models draw sample i for class i mod K unless told otherwise."""
        return torch.arange(n) % self.config.num_classes if self.config.num_classes else None

    def _labels(self, n: int, class_labels: Tensor | None, guidance: float) -> Tensor | None:
        if self.config.num_classes == 0 and guidance != 1.0:
            raise UserError(f"guidance={guidance} needs a class-conditional model; train with labelled data")
        return self.class_labels_for(n, class_labels)

    def sample_defaults(self) -> dict[str, Any]:
        """The config's sampling defaults, which :meth:`sample` starts from."""
        c = self.config
        return dict(sampler=c.sampler, steps=c.sample_steps, grid=c.grid, spacing=c.spacing, rho=c.rho,
                    guidance=c.guidance, clip_denoised=c.clip_denoised)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, **kw: Any) -> Tensor:
        """Draw ``n`` samples; options: sampler, steps, grid, spacing, rho, eta, S_churn, S_tmin,
        S_tmax, S_noise, guidance, clip_denoised, class_labels, batch_size. Each sample has its own
        noise stream seeded from ``generator``, so results do not depend on ``batch_size``."""
        unknown = set(kw) - set(SAMPLER_OPTIONS)
        if unknown:
            raise UserError(f"unknown sampling option(s) {', '.join(sorted(unknown))}; choose from {', '.join(SAMPLER_OPTIONS)}")
        c = self.config
        kw = {**self.sample_defaults(), **kw}  # the config's defaults, overridden per call
        name = kw.pop("sampler")
        fn = get_sampler(name)
        guidance = float(kw.pop("guidance"))
        clip = kw.pop("clip_denoised")
        check_clip(clip, c.data_shape)
        labels = self._labels(n, kw.pop("class_labels", None), guidance)
        grid_kw = {k: kw.pop(k) for k in ("grid", "steps", "spacing", "rho")}
        sigmas = self.sigmas(**grid_kw).to(self.device)
        batch_size = int(kw.pop("batch_size", n))
        takes = inspect.signature(fn).parameters
        bad = [k for k in kw if k not in takes]
        if bad:
            raise UserError(f"sampler {name!r} takes no option {', '.join(bad)}")
        seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
        out, self.last_nfe = [], 0
        for start in range(0, n, batch_size):
            part = slice(start, min(start + batch_size, n))
            noise = PerSampleNoise(seeds[part], c.data_shape, self.device)
            D = self.denoiser if labels is None else guided(self.denoiser, labels[part], guidance, c.num_classes)
            D = NFECounter(clipped(D) if clip else D)
            x = noise() * sigmas[0]
            extra = dict(kw)
            if name in ("edm", "ddim", "ddpm"):
                extra["noise"] = noise
            out.append(fn(D, x, sigmas, **extra))
            self.last_nfe = D.nfe
        return torch.cat(out)

    # -- likelihood -----------------------------------------------------------------------
    @torch.no_grad()
    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None, steps: int = 64) -> Tensor:
        """Probability-flow ODE log-likelihood in nats (of the discrete data when quantized).

        Class-conditional models are evaluated unconditionally (the null label they learned
        through label dropout), so the number is log p(x), comparable across models.
        """
        x = dequantize(x, self.config.bins, generator)
        lp = ode_log_likelihood(self.denoiser, x, sigma_min=self.schedule.sigma_min or 1e-3,
                                sigma_max=self.schedule.sigma_max, steps=steps, generator=generator).log_prob
        return discrete_log_prob(lp, x[0].numel(), self.config.bins)


# The family's presets: same class, different schedule / parameterization / loss / sampler.
DDPM_TRAINING = dict(schedule="vp", parameterization="eps", noise_level="discrete_t", weighting="snr")
register_model("ddpm", help="DDPM (Ho et al. 2020): VP linear betas, eps-prediction, ancestral sampling",
               **DDPM_TRAINING, sampler="ddpm", grid="ddpm", sample_steps=1000)(DiffusionModel)
register_model("ddim", help="DDPM training, DDIM sampling (Song et al. 2021), 50 deterministic steps",
               **DDPM_TRAINING, sampler="ddim", grid="ddpm", sample_steps=50)(DiffusionModel)
register_model("vp", help="VP score matching (Song et al. 2021), continuous t, Heun on Karras sigmas",
               schedule="vp", parameterization="eps", noise_level="uniform_t", weighting="snr",
               sampler="heun", grid="karras", sample_steps=18)(DiffusionModel)
register_model("ve", help="VE score matching (NCSN / Song et al. 2021), log-uniform sigma, Heun",
               schedule="ve", sigma_min=0.02, sigma_max=100.0, parameterization="eps", noise_level="uniform_t",
               weighting="snr", sampler="heun", grid="karras", sample_steps=18)(DiffusionModel)
register_model("edm", help="EDM (Karras et al. 2022): preconditioning, log-normal sigma, Heun 18 steps",
               schedule="edm", parameterization="edm", noise_level="lognormal", weighting="edm",
               sampler="heun", grid="karras", sample_steps=18)(DiffusionModel)
register_model("flow", help="rectified flow / flow matching (Liu et al.; Lipman et al.): velocity, Euler",
               schedule="flow", parameterization="velocity", noise_level="uniform_t", weighting="velocity",
               sampler="euler", grid="uniform_t", sample_steps=50)(DiffusionModel)
