"""torchrun / DDP: two gloo processes train exactly what one process trains on the same global batch."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

HERE = Path(__file__).parent
COMMON = ["--steps", "20", "--batch-size", "64", "warmup=2", "log_every=5", "ckpt_every=10",
          "eval_examples=64", "num_samples=16"]
RUNS = {
    "vae": ["train", "vae", "--data", "moons", *COMMON, "--lr", "0.01", "hidden=32"],
    "edm": ["train", "edm", "--data", "moons", *COMMON, "--lr", "0.01", "hidden=32", "depth=2"],
    "gan": ["train", "toy-gan", "--data", "ring8", *COMMON, "--lr", "0.01"],
    # Gradient penalty and R1 / R2 (double backward) under DDP; per-example networks, so a split batch is exact.
    "wgan-gp": ["train", "wgan-gp", "--data", "ring8", *COMMON, "--lr", "2e-4", "hidden=16"],
    "r3gan": ["train", "r3gan", "--data", "digits", *COMMON, "--lr", "2e-4", "channels=4", "latent_dim=8"],
    # ActNorm's data-dependent initialisation on the same seeded batch in every process, LU 1x1 convs, split priors.
    "glow": ["train", "glow", "--data", "digits", *COMMON, "--lr", "0.01", "transforms=2", "channels=8"],
    # Augmentations (crops, mixup pairs) and MAE's masks drawn per row: a split batch draws alike. No qkv
    # bias: the key bias's gradient is exactly zero (softmax ignores a shift shared by all keys), so its float
    # noise, normalised by Adam into +-lr steps, would differ between runs (measured 2e-4 at lr 1e-3).
    "vit": ["train", "vit", "--data", "digits", *COMMON, "--lr", "0.01", "patch_size=2", "embed_dim=16", "depth=1", "num_heads=2",
            "crop_pad=1", "mixup=0.4", "label_smoothing=0.1", "qkv_bias=false"],
    "mae": ["train", "mae", "--data", "digits", *COMMON, "--lr", "0.01", "patch_size=2", "embed_dim=16", "depth=1", "num_heads=2",
            "decoder_embed_dim=8", "decoder_depth=1", "decoder_num_heads=2", "qkv_bias=false"],
    # BatchNorm statistics of the global batch (all-reduced): per-process statistics differed by 8e-2.
    "resnet": ["train", "resnet", "--data", "digits", *COMMON, "--lr", "0.01", "widths=4,8", "depths=1,1", "crop_pad=1"],
}
# max |a - b| / (1 + |b|) over every parameter, EMA weight and optimizer moment after 20 steps. Measured
# on CPU: vae 5e-8, edm 6.5e-6, toy-gan 7e-8, wgan-gp 8e-8, r3gan 5.8e-5, glow 2.2e-7, vit 1.7e-7, mae 3.3e-7,
# resnet 2.2e-6 (float sums in another order, amplified by Adam on near-zero gradients; lr = 0.01 moves a weight
# by up to 0.01 per step).
TOLERANCE = 1e-4


def _torchrun(root, names, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(HERE / "ddp_worker.py"), str(root), *names]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _max_diff(a, b):
    out = 0.0
    for f in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        ta, tb = load_file(str(a / f)), load_file(str(b / f))
        assert ta.keys() == tb.keys()
        out = max(out, max(((ta[k].double() - tb[k].double()).abs() / (1 + tb[k].double().abs())).max().item()
                           for k in ta))
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    proc = _torchrun(root, list(RUNS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_equal_one(name, two_processes, tmp_path, one_thread):
    import toy_families  # noqa: F401
    from genlab.cli import main

    root, proc = two_processes
    assert main([*RUNS[name], "--out", str(tmp_path / name), "--no-progress"]) == 0
    one, two = tmp_path / name, root / name
    diff = _max_diff(one / "checkpoints/step_20", two / "checkpoints/step_20")
    print(f"{name}: max relative difference {diff:.2e}")
    assert diff < TOLERANCE
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step_10", "step_20"]  # one tree
    log = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10, 15, 20]  # rank 0 alone logs
    ref = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    key = "loss" if "loss" in ref[0] else "critic/loss"
    assert [r[key] for r in log] == pytest.approx([r[key] for r in ref], rel=1e-5)  # means over ranks
    assert json.loads((two / "metrics.json").read_text())["steps"] == 20


def test_one_line_per_run_and_resume_on_another_world_size(two_processes, tmp_path, one_thread):
    from genlab.cli import main

    root, proc = two_processes
    assert len(re.findall(r"^done: ", proc.stdout, re.M)) == len(RUNS)  # rank 0 alone prints
    assert len(re.findall(r"parameters on 2 processes \(cpu\)", proc.stderr)) == len(RUNS)
    assert "FutureWarning" not in proc.stderr and "DeprecationWarning" not in proc.stderr  # printed by every rank
    # 10 steps on two processes, then 10 more on one, equal 20 on one.
    half = tmp_path / "half"
    shutil.copytree(root / "vae", half)
    shutil.rmtree(half / "checkpoints/step_20")
    assert main(["train", "vae", "--out", str(half), "--resume", "--no-progress"]) == 0
    assert main([*RUNS["vae"], "--out", str(tmp_path / "one"), "--no-progress"]) == 0
    assert _max_diff(half / "checkpoints/step_20", tmp_path / "one/checkpoints/step_20") < TOLERANCE


def test_shards_and_uneven_batches():
    from genlab.errors import UserError
    from genlab.train.distributed import World, check_batch

    assert [World(r, 4, r).shard(64) for r in range(4)] == [(0, 16), (16, 32), (32, 48), (48, 64)]
    with pytest.raises(UserError, match="batch_size=63 does not split evenly across 2 processes"):
        check_batch(World(0, 2, 0), 63)


EXIT_WORKER = """
import torch
from genlab.nn.batch_norm import GlobalBatchNorm2d
from genlab.train.distributed import join, world_from_env

join(world_from_env(), torch.device("cpu"))
bn = GlobalBatchNorm2d(4)
for _ in range(20):
    bn(torch.randn(8, 4, 5, 5, requires_grad=True)).square().sum().backward()
"""


def test_processes_leave_the_group_cleanly(tmp_path):
    # Without destroy_process_group at exit, gloo's threads aborted a finished process in 10 of 20
    # launches of this script (SIGABRT, "terminate called without an active exception"); 4 launches
    # catch that with probability 0.94.
    script = tmp_path / "exit_worker.py"
    script.write_text(EXIT_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    for _ in range(4):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "terminate called" not in proc.stderr and "FutureWarning" not in proc.stderr
