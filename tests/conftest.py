"""Shared test settings: small thread pools (the suite runs in parallel on 2 cores), tiny vision runs."""

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


TINY_VIT = ["--data", "digits", "--steps", "6", "--batch-size", "32", "patch_size=2", "embed_dim=16", "depth=1",
            "num_heads=2", "eval_examples=32", "--no-progress"]


@pytest.fixture(scope="session")
def tiny_vision_runs(tmp_path_factory):
    """A folder holding a tiny ``mae`` and ``vit`` run on ``digits`` (16 wide, 1 deep, patch 2), trained through the CLI."""
    from genlab.cli import main

    root = tmp_path_factory.mktemp("vision-runs")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    assert main(["train", "mae", *TINY_VIT, "decoder_embed_dim=8", "decoder_depth=1", "decoder_num_heads=2",
                 "--out", str(root / "mae")]) == 0
    assert main(["train", "vit", *TINY_VIT, "--out", str(root / "vit")]) == 0
    torch.set_num_threads(n)
    return root
