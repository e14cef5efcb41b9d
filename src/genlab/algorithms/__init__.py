"""genlab.algorithms."""
