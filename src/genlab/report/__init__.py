"""genlab.report."""
