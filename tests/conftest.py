"""Shared test settings: small thread pools (the suite runs in parallel on 2 cores)."""

import os
import tempfile

import pytest
import torch

# Reference statistics and registered feature networks go to a throwaway folder, not ~/.cache.
os.environ["GENLAB_HOME"] = tempfile.mkdtemp(prefix="genlab-test-home-")

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is much faster than two on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
