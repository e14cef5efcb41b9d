"""Autoencoder families: VAE (and later VQ-VAE / VQGAN)."""

from genlab.autoencoders.vae import VAE, VAEConfig

__all__ = ["VAE", "VAEConfig"]
