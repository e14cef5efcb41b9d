"""genlab.autoencoders."""
