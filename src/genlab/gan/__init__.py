"""Adversarial family: GAN, WGAN, WGAN-GP, R3GAN (networks, losses, penalties, one model class)."""

from genlab.gan.losses import LOSSES, critic_loss, generator_loss
from genlab.gan.model import GAN, GANConfig
from genlab.gan.penalties import clip_weights, gradient_penalty, squared_gradient_norm

__all__ = ["GAN", "GANConfig", "LOSSES", "clip_weights", "critic_loss", "generator_loss", "gradient_penalty",
           "squared_gradient_norm"]
