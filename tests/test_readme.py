"""The README's Python quickstart runs as written (with fewer steps)."""

import re
from pathlib import Path

import torch

README = Path(__file__).parent.parent / "README.md"


def test_python_quickstart_runs(tmp_path, monkeypatch, one_thread):
    block = re.search(r"## Python quickstart\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "steps=2000" in block
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block.replace("steps=2000", "steps=5, eval_examples=32"), "README.md", "exec"), scope)
    assert scope["model"].config.num_classes == 25  # the data's classes, as the CLI gives them
    assert scope["x"].shape == (1000, 2) and torch.isfinite(scope["x"]).all()
    assert all(torch.equal(a, b) for a, b in zip(scope["same"].parameters(), scope["ema"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(scope["model"].parameters(), scope["ema"].parameters()))
    assert (tmp_path / "runs/edm-grid25/model/model.safetensors").is_file()
