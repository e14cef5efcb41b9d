"""A SIGKILL in the middle of writing a checkpoint leaves the previous one loadable."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import torch
from safetensors.torch import load_file

from genlab.train.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint

SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    from pathlib import Path
    import genlab.train.checkpoint as ck

    out = Path(sys.argv[1])
    model = torch.nn.Linear(64, 64)
    opt = {"main": torch.optim.AdamW(model.parameters())}
    model(torch.randn(2, 64)).sum().backward(); opt["main"].step()
    ck.save_checkpoint(out, 1, model, model, opt, {"step": 1}, keep=3)
    real_save = ck.save_file

    def slow_save(tensors, path):
        real_save(tensors, path)
        Path(out.parent / "mid-save").write_text(path)
        time.sleep(60)

    ck.save_file = slow_save
    with torch.no_grad():
        model.weight.add_(1.0)
    ck.save_checkpoint(out, 2, model, model, opt, {"step": 2}, keep=3)
    """
)


def test_sigkill_mid_save_keeps_previous_checkpoint(tmp_path):
    ckpt = tmp_path / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(ckpt)])
    try:
        deadline = time.time() + 60
        while not (tmp_path / "mid-save").exists():
            assert proc.poll() is None and time.time() < deadline, "child ended before reaching the save"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert [p.name for p in list_checkpoints(ckpt)] == ["step_1"]
    latest = latest_checkpoint(ckpt)
    weights = load_file(str(latest / "model.safetensors"))
    assert set(weights) == {"weight", "bias"}
    assert any(p.name.startswith(".step_2.tmp-") for p in ckpt.iterdir())
    # The next save cleans the stale temporary folder up.
    model = torch.nn.Linear(64, 64)
    save_checkpoint(ckpt, 3, model, model, {"main": torch.optim.AdamW(model.parameters())}, {"step": 3}, keep=3)
    assert not any(p.name.startswith(".") for p in ckpt.iterdir())
    assert [p.name for p in list_checkpoints(ckpt)] == ["step_1", "step_3"]
