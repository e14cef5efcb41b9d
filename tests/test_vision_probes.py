"""Probes: k-NN against brute force, the linear probe on separable data, label subsets, genlab eval --probe."""

import json

import pytest
import torch

from genlab.cli import main
from genlab.errors import UserError
import genlab
from genlab.train.probe import RECIPE, finetune_model, parse_labels
from genlab.vision.probes import LinearProbeSettings, accuracy, knn_predict, label_subset, linear_probe

pytestmark = pytest.mark.usefixtures("one_thread")


def test_knn_equals_brute_force_weighted_vote():
    g = torch.Generator().manual_seed(0)
    train, labels, test = torch.randn(300, 8, generator=g), torch.randint(0, 4, (300,), generator=g), torch.randn(50, 8, generator=g)
    pred = knn_predict(train, labels, test, 4, k=7, temperature=0.1, chunk=16)
    for i in range(50):
        sims = [float(torch.nn.functional.cosine_similarity(test[i], train[j], dim=0)) for j in range(300)]
        top = sorted(range(300), key=lambda j: -sims[j])[:7]
        votes = [sum(torch.tensor(sims[j] / 0.1).exp().item() for j in top if labels[j] == c) for c in range(4)]
        assert pred[i] == max(range(4), key=lambda c: votes[c])


def test_linear_probe_separates_separable_classes():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 16, generator=g) * 4
    y = torch.randint(0, 5, (1000,), generator=g)
    f = centers[y] + torch.randn(1000, 16, generator=g) + 100  # an offset the BatchNorm removes
    probe = linear_probe(f[:800], y[:800], 5, LinearProbeSettings(epochs=20))
    assert not probe[0].affine
    with torch.no_grad():
        assert accuracy(probe(f[800:]), y[800:]) > 0.98


def test_label_subsets_are_stratified_and_seeded():
    y = torch.arange(1000) % 10
    idx = label_subset(y, 0.1, seed=3)
    assert len(idx) == 100 and (torch.bincount(y[idx]) == 10).all()
    assert torch.equal(idx, label_subset(y, 0.1, seed=3)) and not torch.equal(idx, label_subset(y, 0.1, seed=4))
    assert parse_labels("10%") == 0.1 and parse_labels("0.5") == 0.5 and parse_labels(None) == 1.0
    for bad in ("0%", "150%", "ten"):
        with pytest.raises(UserError, match="--labels"):
            parse_labels(bad)


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "mae"
    assert main(["train", "mae", "--data", "digits", "--steps", "30", "--batch-size", "64", "--lr", "2e-3",
                 "patch_size=2", "embed_dim=32", "depth=2", "num_heads=2", "decoder_embed_dim=16", "decoder_depth=1",
                 "decoder_num_heads=2", "eval_examples=64", "--no-progress", "--out", str(out)]) == 0
    return out


def test_probes_write_accuracy_into_metrics_json(mae_run, capsys):
    for kind, extra in (("knn", []), ("linear", ["--probe-epochs", "10"]), ("finetune", ["--probe-epochs", "10"])):
        assert main(["eval", str(mae_run), "--probe", kind, "--labels", "50%", "--no-progress", *extra]) == 0
        assert "accuracy" in capsys.readouterr().out
    probes = json.loads((mae_run / "metrics.json").read_text())["probe"]
    assert set(probes) == {f"{k} labels=50% seed=0" for k in ("knn", "linear", "finetune")}
    for r in probes.values():
        assert 0.2 < r["accuracy"] <= 1 and r["train_examples"] == 809 and r["test_examples"] == 180
    assert probes["knn labels=50% seed=0"]["feature_dim"] == 32
    assert probes["finetune labels=50% seed=0"]["layer_decay"] == 0.75


def test_probe_errors(mae_run, tmp_path, capsys):
    assert main(["eval", str(mae_run), "--probe", "svm"]) == 2
    assert "choose one of linear, knn, finetune" in capsys.readouterr().err
    assert main(["eval", str(mae_run), "--labels", "10%"]) == 2
    assert "go with --probe" in capsys.readouterr().err
    run = tmp_path / "edm"
    assert main(["train", "edm", "--data", "moons", "--steps", "2", "hidden=8", "depth=1", "eval_examples=16",
                 "num_samples=4", "--no-progress", "--out", str(run)]) == 0
    assert main(["eval", str(run), "--probe", "knn"]) == 2
    assert "a probe needs a model with an encoder; 'edm' can: sample, log_prob" in capsys.readouterr().err


def test_every_network_fine_tunes_with_the_same_recipe():
    vit = genlab.create("vit", data_shape=(1, 8, 8), num_classes=10, patch_size=2, embed_dim=16, depth=1, num_heads=2,
                        mixup=0.4, label_smoothing=0.0, crop_pad=0)
    mae = genlab.create("mae", data_shape=(1, 8, 8), patch_size=2, embed_dim=16, depth=1, num_heads=2,
                        decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)
    resnet = genlab.create("resnet", data_shape=(1, 8, 8), num_classes=3, widths=(4,), depths=(1,), crop_pad=3)
    for model in (vit, mae, resnet):
        net = finetune_model(model, 10)
        assert {k: getattr(net.config, k) for k in RECIPE} == dict(layer_decay=0.75, label_smoothing=0.1, crop_pad=2,
                                                                   mixup=0.0)
        assert net.config.num_classes == 10
    assert vit.config.mixup == 0.4 and resnet.config.crop_pad == 3  # the runs' own models are left alone
