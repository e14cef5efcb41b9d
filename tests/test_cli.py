"""The command line: end to end on a toy set, and one clean error line for every bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from genlab.cli import main


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_sample(tmp_path, capsys):
    run_dir = tmp_path / "t"
    code, out, err = run(["train", "vae", "--data", "grid25", "--steps", "30", "--out", str(run_dir), "--no-progress",
                          "hidden=32", "eval_examples=64"], capsys)
    assert code == 0, err
    assert "done:" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 30 and np.isfinite(metrics["nll_nats"])
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["model_config"]["hidden"] == 32 and saved["train"]["steps"] == 30
    code, out, err = run(["sample", str(run_dir), "-n", "16", "--out", str(tmp_path / "s.png")], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "s.png").size[0] > 100
    code, _, _ = run(["sample", str(run_dir / "model"), "-n", "5", "--out", str(tmp_path / "s.npz"), "--seed", "3"], capsys)
    assert code == 0 and np.load(tmp_path / "s.npz")["x"].shape == (5, 2)
    # Resume continues the same run to a later step.
    code, out, err = run(["train", "vae", "--out", str(run_dir), "--resume", "--steps", "40", "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 40


def _corrupt_folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "ok.png")
    (d / "bad.png").write_bytes(b"not a png at all")
    return d


def _mixed_folder(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "a.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(d / "b.png")
    return d


def _nan_npz(tmp_path):
    x = np.zeros((10, 2), np.float32)
    x[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    return tmp_path / "nan.npz"


BAD = [
    (lambda p: ["train", "vea"], "unknown model 'vea'"),
    (lambda p: ["train", "vae", "--data", "mnist6k"], "does not exist and is not a built-in data set"),
    (lambda p: ["train", "vae", "--data", str(p / "missing")], "does not exist"),
    (lambda p: ["train", "vae", "--data", str(_corrupt_folder(p))], "bad.png"),
    (lambda p: ["train", "vae", "--data", str(_mixed_folder(p))], "--image-size"),
    (lambda p: ["train", "vae", "--data", str(_nan_npz(p))], "NaN"),
    (lambda p: ["train", "vae", "--steps", "-1"], "--steps"),
    (lambda p: ["train", "vae", "--data", "ring8", "lr=abc"], "lr='abc': expected a number"),
    (lambda p: ["train", "vae", "--data", "ring8", "colour=red"], "unknown option 'colour'"),
    (lambda p: ["train", "vae", "--data", "ring8", "latent_dim=0"], "latent_dim=0"),
    (lambda p: ["train", "vae", "--data", "ring8", "--time-budget", "soon"], "time budget 'soon'"),
    (lambda p: ["train", "vae", "--resume"], "no run to resume"),
    (lambda p: ["sample", str(p / "nothing")], "does not exist"),
    (lambda p: ["sample", str(p), "--out", "x.gif"], ".png"),
    (lambda p: ["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_input_is_one_error_line_and_exit_2(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(argv(tmp_path), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0]
    made = set(p.name for p in tmp_path.iterdir()) - set(before) - {"imgs", "mixed", "nan.npz"}
    assert not made, f"a failed command left files behind: {made}"


def test_resume_folder_without_checkpoint(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps({"model": "vae"}))
    code, _, err = run(["train", "vae", "--out", str(tmp_path / "r"), "--resume"], capsys)
    assert code == 2 and "no checkpoint to resume from" in err


def test_refuses_to_overwrite_a_run(tmp_path, capsys):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    code, _, err = run(["train", "vae", "--data", "ring8", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "already holds a run" in err


def test_console_script_lists_models_and_data():
    out = subprocess.run([sys.executable, "-m", "genlab.cli", "list"], capture_output=True, text=True, check=True).stdout
    assert "vae" in out and "mnist5k" in out and "grid25" in out


def test_recipe_and_diffusion_sampling_options(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: 15\nhidden: 32\ndepth: 1\nlr: 1.0e-3\neval_examples: 64\nbatch_size: 64\n")
    run_dir = tmp_path / "e"
    code, _, err = run(["train", "edm", "--data", "moons", "--recipe", str(recipe), "--out", str(run_dir), "--no-progress",
                        "steps=12"], capsys)
    assert code == 0, err
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["train"]["steps"] == 12 and saved["model_config"]["hidden"] == 32  # command line beats recipe
    code, out, err = run(["sample", str(run_dir), "-n", "8", "--sampler", "dpmpp_2m", "--steps", "5",
                          "--out", str(tmp_path / "d.npz")], capsys)
    assert code == 0, err
    assert "(5 network evaluations)" in out and np.load(tmp_path / "d.npz")["x"].shape == (8, 2)
    code, _, err = run(["sample", str(run_dir), "-n", "2", "--sampler", "nope"], capsys)
    assert code == 2 and "unknown sampler 'nope'" in err
    code, _, err = run(["sample", str(run_dir), "-n", "2", "--label", "7"], capsys)
    assert code == 2 and "class labels must be in 0..1" in err
    code, _, err = run(["sample", str(run_dir), "-n", "2", "--steps", "0"], capsys)
    assert code == 2 and "--steps" in err
