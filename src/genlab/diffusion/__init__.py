"""Diffusion in sigma-space: DDPM, DDIM, VP / VE score matching, EDM and flow matching as one family."""

from genlab.diffusion.denoiser import Denoiser, clipped, guided
from genlab.diffusion.likelihood import ode_log_likelihood
from genlab.diffusion.model import DiffusionConfig, DiffusionModel
from genlab.diffusion.reflow import reflow_pairs, reflow_splits
from genlab.diffusion.samplers import SAMPLERS, NFECounter, PerSampleNoise, get_sampler, make_sigmas
from genlab.diffusion.schedules import make_schedule

__all__ = [
    "SAMPLERS", "Denoiser", "DiffusionConfig", "DiffusionModel", "NFECounter", "PerSampleNoise",
    "clipped", "get_sampler", "guided", "make_schedule", "make_sigmas", "ode_log_likelihood",
    "reflow_pairs", "reflow_splits",
]
