"""Shared test settings: small thread pools (the suite runs in parallel on 2 cores)."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
