"""The command line: end to end on a toy set, and one clean error line for every bad input."""

import json
import re
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


def _images_6x6(tmp_path):
    np.savez(tmp_path / "six.npz", x=np.zeros((10, 1, 6, 6), np.uint8))
    return tmp_path / "six.npz"


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
    (lambda p: ["train", "edm", "--data", "moons", "rho=0"], "rho=0.0: must be > 0"),
    (lambda p: ["train", "edm", "--data", "moons", "grid=ddpm"], "needs a VP schedule"),
    (lambda p: ["train", "flow", "--data", "moons", "grid=karras"], "use grid=uniform_t"),
    (lambda p: ["train", "ddpm", "--data", "moons", "spacing=middle"], "spacing='middle'"),
    (lambda p: ["train", "edm", "--data", "checkerboard", "guidance=2"], "needs a class-conditional model"),
    (lambda p: ["train", "vae", "--data", "moons", "main.lr=-1"], "phase 'main': lr=-1.0"),
    (lambda p: ["train", "vae", "--data", "moons", "critic.lr=1"], "no phase called 'critic'"),
    (lambda p: ["train", "vae", "--data", "moons", "--fp16", "device=cpu"], "fp16=true needs CUDA"),
    (lambda p: ["train", "glow", "--data", str(_images_6x6(p))], "6x6 is not divisible by 4"),
    (lambda p: ["train", "nsf", "--data", "moons", "spline_bins=1"], "spline_bins=1"),
    (lambda p: ["train", "wgan", "--data", "moons", "n_critic=0"], "n_critic=0"),
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
    made = set(p.name for p in tmp_path.iterdir()) - set(before) - {"imgs", "mixed", "nan.npz", "six.npz"}
    assert not made, f"a failed command left files behind: {made}"


def test_resume_folder_without_checkpoint(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps({"model": "vae"}))
    code, _, err = run(["train", "vae", "--out", str(tmp_path / "r"), "--resume"], capsys)
    assert code == 2 and "no checkpoint to resume from" in err
    code, _, err = run(["sample", str(tmp_path / "r")], capsys)  # and --init, eval: no resume advice
    assert code == 2 and "has not saved a checkpoint yet" in err


def test_refuses_to_overwrite_a_run(tmp_path, capsys):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    code, _, err = run(["train", "vae", "--data", "ring8", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "already holds a run" in err


def test_console_script_lists_models_capabilities_and_data():
    out = subprocess.run([sys.executable, "-m", "genlab.cli", "list"], capture_output=True, text=True, check=True).stdout
    assert "mnist5k" in out and "grid25" in out
    assert re.search(r"^  vae .*\[sample, log_prob, encode\]$", out, re.M)
    assert re.search(r"^  edm .*\[sample, log_prob\]$", out, re.M)
    assert all(re.search(rf"^  {name} .*\[encode\]$", out, re.M) for name in ("vit", "resnet", "mae"))


def test_vector_data_of_any_dimension(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(500, 5)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    run_dir = tmp_path / "r"
    code, out, err = run(["train", "edm", "--data", str(tmp_path / "x.npz"), "--steps", "4", "--out", str(run_dir),
                          "--no-progress", "hidden=16", "depth=1", "sample_every=2", "eval_examples=32"], capsys)
    assert code == 0, err
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 4
    assert Image.open(run_dir / "samples.png").size[0] > 300  # a pair plot of the first 4 dimensions
    assert (run_dir / "samples/step_4.png").is_file() and (run_dir / "report.html").is_file()
    code, out, err = run(["sample", str(run_dir), "-n", "7", "--out", str(tmp_path / "s.npz")], capsys)
    assert code == 0 and np.load(tmp_path / "s.npz")["x"].shape == (7, 5)


USER_IMAGE_MODELS = {  # tiny settings per family; `metrics` adds each family's own score to the sample metrics
    "r3gan": (["channels=4", "latent_dim=8"], "fd"),
    "glow": (["channels=8", "transforms=1"], "fd,nll"),
    "nsf": (["channels=8", "transforms=1", "spline_bins=4"], "fd,nll"),
    "realnvp": (["channels=8", "transforms=1"], "nll"),
}


@pytest.mark.parametrize("name", USER_IMAGE_MODELS)
def test_user_images_train_sample_and_evaluate(name, tmp_path, capsys):
    """Unlabelled RGB images from a user's .npz: an unconditional model of their shape, sampled and scored."""
    import genlab

    options, metrics = USER_IMAGE_MODELS[name]
    x = (np.random.default_rng(0).random((64, 3, 16, 16)) * 255).astype(np.uint8)
    np.savez(tmp_path / "imgs.npz", x=x)
    run_dir = tmp_path / "run"
    code, _, err = run(["train", name, "--data", str(tmp_path / "imgs.npz"), "--steps", "4", "--batch-size", "16",
                        "--out", str(run_dir), *options, "eval_examples=16", "--no-progress"], capsys)
    assert code == 0, err
    model = genlab.Model.from_pretrained(run_dir / "model")
    assert model.config.data_shape == (3, 16, 16) and model.config.num_classes == 0
    code, _, err = run(["sample", str(run_dir), "-n", "4", "--out", str(tmp_path / "s.png")], capsys)
    assert code == 0 and (tmp_path / "s.png").is_file(), err
    code, _, err = run(["eval", str(run_dir), "-n", "32", "--metrics", metrics, "--no-progress"], capsys)
    assert code == 0, err
    scores = json.loads((run_dir / "metrics.json").read_text())["eval"]["n=32 seed=0"]
    for key in metrics.replace("nll", "bits_per_dim").split(","):
        assert np.isfinite(scores[key]), (key, scores)


def test_unpicturable_samples_are_a_one_line_error(tmp_path, capsys):
    import genlab

    genlab.create("edm", data_shape=(2, 4, 4), channels=8, channel_mult=(1,), num_res_blocks=1,
                  attn_levels=()).save_pretrained(tmp_path / "m")
    code, _, err = run(["sample", str(tmp_path / "m"), "--out", str(tmp_path / "s.png")], capsys)
    assert code == 2 and "cannot picture samples of shape (2, 4, 4)" in err and not (tmp_path / "s.png").exists()
    code, _, err = run(["sample", str(tmp_path / "m"), "-n", "2", "--steps", "1", "--out", str(tmp_path / "s.npz")], capsys)
    assert code == 0 and np.load(tmp_path / "s.npz")["x"].shape == (2, 2, 4, 4)



def test_sample_clip_denoised_on_and_off(tmp_path, capsys):
    import torch

    import genlab

    torch.manual_seed(0)
    m = genlab.create("ddim", data_shape=(1, 8, 8), channels=8, channel_mult=(1,), num_res_blocks=1, attn_levels=())
    with torch.no_grad():
        for p in m.parameters():  # a zero-initialised output layer would give D inside [-1, 1] anyway
            p.add_(0.1 * torch.randn_like(p))
    m.save_pretrained(tmp_path / "m")
    x = {}
    for flag in ("--clip-denoised", "--no-clip-denoised"):
        code, _, err = run(["sample", str(tmp_path / "m"), "-n", "4", "--steps", "3", flag,
                            "--out", str(tmp_path / f"{flag}.npz")], capsys)
        assert code == 0, err
        x[flag] = np.load(tmp_path / f"{flag}.npz")["x"]
    assert np.abs(x["--clip-denoised"]).max() <= 1 < np.abs(x["--no-clip-denoised"]).max()


def test_resume_time_budget_is_this_invocations_and_data_is_the_runs(tmp_path, capsys):
    run_dir = tmp_path / "t"
    base = ["train", "vae", "--out", str(run_dir), "--no-progress"]
    code, out, err = run([*base, "--data", "ring8", "--time-budget", "0.5", "hidden=8", "depth=1", "eval_examples=16"],
                         capsys)
    assert code == 0, err
    first = json.loads((run_dir / "metrics.json").read_text())
    assert first["stopped_by"] == "time_budget" and "steps_target" not in first
    code, out, err = run([*base, "--resume", "--time-budget", "0.5"], capsys)
    assert code == 0, err
    second = json.loads((run_dir / "metrics.json").read_text())
    assert second["steps"] > first["steps"] and second["train_seconds"] >= 1.0  # 0.5 s more, not 0.5 s in all
    assert "is this invocation's, so training stops at 1 s in all" in err
    code, _, err = run([*base, "--resume", "--data", "moons"], capsys)
    assert code == 2 and "--data moons differs from the run's ring8" in err
    code, _, err = run([*base, "--resume", "--image-size", "8"], capsys)
    assert code == 2 and "--image-size 8 differs" in err


def test_a_budget_that_ends_training_early_says_so(tmp_path, capsys):
    run_dir = tmp_path / "b"
    code, out, err = run(["train", "vae", "--data", "ring8", "--out", str(run_dir), "--no-progress", "steps=100000",
                          "time_budget=0.3", "hidden=8", "depth=1", "eval_examples=16"], capsys)
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stopped_by"] == "time_budget" and metrics["steps_target"] == 100000
    assert f"the 0.3 s time budget ended training at step {metrics['steps']} of 100000" in out


def test_phase_options_from_the_command_line(tmp_path, capsys):
    run_dir = tmp_path / "p"
    code, _, err = run(["train", "vae", "--data", "ring8", "--steps", "2", "--out", str(run_dir), "--no-progress",
                        "main.optimizer=sgd", "main.momentum=0.9", "main.lr=0.5", "hidden=8", "eval_examples=16"], capsys)
    assert code == 0, err
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["train"]["phases"] == {"main": {"optimizer": "sgd", "momentum": "0.9", "lr": "0.5"}}
    state = json.loads((run_dir / "checkpoints/step_2/trainer.json").read_text())
    group = state["optimizers"]["main"]["param_groups"][0]
    assert group["momentum"] == 0.9 and "betas" not in group


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
    code, _, err = run(["sample", str(run_dir), "-n", "2", "--clip-denoised", "--out", str(tmp_path / "c.npz")], capsys)
    assert code == 2 and "has no fixed range" in err and not (tmp_path / "c.npz").exists()
