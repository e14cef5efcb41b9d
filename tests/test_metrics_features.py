"""Feature extractors, classifier metrics, memorization, the one-pass suite and `genlab eval`."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import genlab
from genlab.cli import main
from genlab.data import load_dataset
from genlab.errors import UserError
from genlab.metrics.classifier import classifier_metrics
from genlab.metrics.feature_net import accuracy
from genlab.metrics.features import PixelFeatures, builtin, extract, get_extractor, registered_for
from genlab.metrics.frechet import frechet_distance
from genlab.metrics.memorization import memorization
from genlab.metrics.suite import evaluate_samples

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist5k")


def test_shipped_digit_networks_are_accurate_and_small(mnist):
    net = builtin("digits28")
    assert accuracy(net.net, mnist.test.x, mnist.test.y) >= 0.98  # stated: 98.4% on the 500 test digits
    assert net.info["test_accuracy"] >= 0.98 and net.info["data"] == "mnist5k"
    small = builtin("digits8")
    digits = load_dataset("digits")
    assert accuracy(small.net, digits.test.x, digits.test.y) >= 0.97
    params = sum(p.numel() for p in net.net.parameters()) + sum(b.numel() for b in net.net.buffers())
    assert params * 4 < 1_000_000  # < 1 MB of float32
    assert net.hash == builtin("digits28").hash and net.hash != small.hash


def test_default_extractor_follows_the_data(mnist):
    assert get_extractor(None, mnist.train.x[:10]).name == "digits28"
    assert get_extractor(None, torch.zeros(4, 1, 8, 8)).name == "digits8"
    assert isinstance(get_extractor(None, torch.zeros(4, 2)), PixelFeatures)
    with pytest.warns(UserWarning, match="comparing raw pixels"):
        assert get_extractor(None, torch.zeros(4, 3, 16, 16)).name == "pixels"
    with pytest.raises(UserError, match="unknown feature network 'inception'"):
        get_extractor("inception", mnist.train.x[:2])
    with pytest.raises(UserError, match=r"expects examples of shape \(1, 28, 28\), got \(1, 8, 8\)"):
        extract(builtin("digits28"), torch.zeros(2, 1, 8, 8))


def test_fd_of_real_digits_is_small_and_of_noise_large(mnist):
    net = builtin("digits28")
    train, _ = extract(net, mnist.train.x[:1000])
    test, _ = extract(net, mnist.test.x)
    noise, _ = extract(net, torch.rand(500, 1, 28, 28) * 2 - 1)
    real, fake = frechet_distance(train, test), frechet_distance(noise, test)
    assert real < 0.5 and fake > 50 * real


def test_torchscript_extractor(tmp_path):
    class Net(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3)) * 2

    torch.jit.script(Net()).save(str(tmp_path / "f.pt"))
    ext = get_extractor(str(tmp_path / "f.pt"), torch.zeros(1, 1, 8, 8), size=16, channels=3, value_range=(0.0, 255.0))
    feats, logits = extract(ext, torch.zeros(4, 1, 8, 8), logits=True)
    assert feats.shape == (4, 3) and logits is None
    torch.testing.assert_close(feats, torch.full((4, 3), 255.0, dtype=torch.float64))  # 0 in [-1, 1] -> 127.5, x2
    (tmp_path / "bad.pt").write_bytes(b"not torchscript")
    with pytest.raises(UserError, match="is not a TorchScript file"):
        get_extractor(str(tmp_path / "bad.pt"), torch.zeros(1, 2))


def test_classifier_metrics_numbers():
    logits = torch.log(torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.6, 0.4], [0.95, 0.05]]))
    c = classifier_metrics(logits, requested=torch.tensor([0, 1, 1, 0]))
    assert c.confident == 0.75 and c.conditional_accuracy == 0.75
    hist = np.array([0.75, 0.25])
    assert c.class_entropy == pytest.approx(-(hist * np.log(hist)).sum())
    p = logits.exp().double()
    expected = math.exp(float((p * (p.log() - p.mean(0).log())).sum(1).mean()))
    assert c.classifier_score == pytest.approx(expected) and 1 <= c.classifier_score <= 2


def test_memorization_flags_copies_not_fresh_images(mnist):
    train, test = mnist.train.x, mnist.test.x
    copies = train[:50] + 0.01 * torch.randn(50, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    m = memorization(torch.cat([copies, test[:50]]), train, test[50:])
    flagged = (m.distances < m.ratio * m.scales)
    assert flagged[:50].all() and flagged[50:].double().mean() <= 0.04
    assert m.share == pytest.approx(float(flagged.double().mean())) and m.test_share <= 0.04


def test_exact_toy_samples_score_like_the_data():
    splits = load_dataset("grid25")
    exact = splits.test.x[:1000]
    out, _ = evaluate_samples(exact, splits, PixelFeatures(), ["modes", "w2", "ll", "pr", "fd"], cache=False)
    assert out["modes"] == 25 and out["high_quality"] > 0.97
    assert out["precision"] > 0.9 and out["recall"] > 0.9 and out["fd"] < 0.01  # the floor is ~0.002
    assert out["true_ll"] == pytest.approx(out["floor_true_ll"], abs=0.1)
    centre = splits.test.x[(splits.test.y == 12)][:200]
    assert evaluate_samples(centre, splits, PixelFeatures(), ["modes"], cache=False)[0]["modes"] == 1


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    assert main(["train", "edm", "--data", "ring8", "--steps", "200", "--out", str(out), "--no-progress",
                 "hidden=32", "depth=2", "lr=3e-3", "eval_examples=64"]) == 0
    return out


def test_genlab_eval_merges_results_and_caches_samples(toy_run, capsys):
    assert main(["eval", str(toy_run), "-n", "300", "--steps", "6", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "modes" in out and "w2" in out and "(test data:" in out
    results = json.loads((toy_run / "metrics.json").read_text())
    assert results["steps"] == 200  # training metrics kept
    entry = results["eval"]["n=300 seed=0 steps=6"]
    assert {"fd", "kid", "precision", "recall", "density", "coverage", "vendi", "modes", "w2", "true_ll",
            "bits_per_dim"} <= set(entry)
    cached = list((toy_run / "eval").glob("samples-*.npz"))
    assert len(cached) == 1 and np.load(cached[0])["x"].shape == (300, 2)
    assert main(["eval", str(toy_run), "-n", "300", "--steps", "6", "--metrics", "fd", "--no-progress"]) == 0
    assert len(list((toy_run / "eval").glob("samples-*.npz"))) == 1  # sampled once
    assert main(["eval", str(toy_run), "-n", "300", "--steps", "6", "--sampler", "heun", "--no-clip-denoised",
                 "--metrics", "fd", "--no-progress"]) == 0  # the model's own defaults, spelled out
    assert len(list((toy_run / "eval").glob("samples-*.npz"))) == 1
    assert list(json.loads((toy_run / "metrics.json").read_text())["eval"]) == ["n=300 seed=0 steps=6"]


def test_an_option_is_at_its_default_only_when_equal_and_of_the_same_kind():
    from genlab.train.assess import at_default

    assert at_default("heun", "heun") and at_default(18, 18) and at_default(18, 18.0) and at_default(False, False)
    assert not at_default(1, True) and not at_default(0, False) and not at_default(1.0, True)
    assert not at_default(torch.tensor(1.0), 1.0) and not at_default("18", 18) and not at_default(17, 18)


def test_eval_samples_again_when_the_saved_sampling_defaults_change(toy_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(toy_run, run, ignore=shutil.ignore_patterns("eval"))
    argv = ["eval", str(run), "-n", "100", "--steps", "3", "--metrics", "fd", "--no-progress"]
    assert main(argv) == 0
    saved = json.loads((run / "model/config.json").read_text())
    saved["config"]["sampler"] = "euler"  # the same weights, another default sampler
    (run / "model/config.json").write_text(json.dumps(saved))
    assert main(argv) == 0
    assert len(list((run / "eval").glob("samples-*.npz"))) == 2


def test_genlab_eval_on_a_vae_run(tmp_path, capsys):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--data", "grid25", "--steps", "20", "--out", str(run), "--no-progress",
                 "hidden=16", "depth=1", "eval_examples=32"]) == 0
    assert main(["eval", str(run), "-n", "200", "--metrics", "fd,modes,nll", "--no-progress"]) == 0
    entry = json.loads((run / "metrics.json").read_text())["eval"]["n=200 seed=0"]
    assert entry["samples"] == 200 and 0 <= entry["modes"] <= 25 and entry["nll_examples"] == 200
    assert math.isfinite(entry["fd"]) and math.isfinite(entry["bits_per_dim"])


BAD_EVAL = [
    (["--metrics", "fid"], "unknown metric 'fid'"),
    (["--features", "inception"], "unknown feature network 'inception'"),
    (["--metrics", "pr", "-n", "3"], "metric pr needs at least 4 samples, got -n 3"),
    (["--metrics", "memo"], "memo (memorization) applies to images"),
    (["--features", "digits28"], "expects examples of shape (1, 28, 28)"),
    (["--data", "moons", "--metrics", "modes"], "modes and ll need a known mixture"),
]


@pytest.mark.parametrize("extra,needle", BAD_EVAL, ids=[b[1] for b in BAD_EVAL])
def test_bad_eval_input_is_one_error_line(toy_run, extra, needle, capsys):
    assert main(["eval", str(toy_run), "-n", "50", "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_eval_needs_a_model_and_data(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "neither a run folder nor a saved model" in capsys.readouterr().err
    genlab.create("vae", data_shape=(2,), hidden=8, depth=1).save_pretrained(tmp_path / "m")
    assert main(["eval", str(tmp_path / "m")]) == 2
    assert "--data NAME" in capsys.readouterr().err


def test_features_train_registers_a_network_for_user_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for label, value in (("dark", 40), ("light", 215)):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(30):
            img = np.clip(rng.normal(value, 20, (12, 12)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "imgs" / label / f"{i}.png")
    assert main(["features", "train", "--data", str(tmp_path / "imgs"), "--epochs", "3", "--no-progress"]) == 0
    assert "registered as the feature network of" in capsys.readouterr().out
    data = load_dataset(str(tmp_path / "imgs"))
    assert registered_for(data.train.x) is not None
    ext = get_extractor(None, data.train.x)
    assert ext.input_shape == (1, 12, 12) and ext.classes == ["dark", "light"]
    assert main(["features", "train", "--data", "moons"]) == 2
    assert "needs labelled images" in capsys.readouterr().err
