"""genlab.diffusion."""
