"""genlab export: a vit or mae run as a saved ViT plus timm-keyed weights with timm's keyword arguments."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import genlab
from genlab.cli import main
from genlab.data import load_dataset
from genlab.vision import ViT

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tiny_vision_runs):
    return tiny_vision_runs


def _timm_file(folder):
    with safe_open(str(folder / "timm.safetensors"), "pt") as f:
        config = json.loads(f.metadata()["config"])
    return config, load_file(str(folder / "timm.safetensors"))


@pytest.mark.parametrize("pool", ["avg", "token"])
def test_an_mae_encoder_exports_as_a_vit_for_genlab_and_timm(runs, tmp_path, pool, capsys):
    out = tmp_path / "encoder"
    assert main(["export", str(runs / "mae"), "--out", str(out), "--global-pool", pool]) == 0
    assert "wrote" in capsys.readouterr().out
    config, tensors = _timm_file(out)
    assert config == dict(img_size=8, patch_size=2, in_chans=1, num_classes=0, embed_dim=16, depth=1, num_heads=2,
                          mlp_ratio=4.0, global_pool=pool, class_token=True, qkv_bias=True)
    timm_style = ViT(**config).eval()
    timm_style.load_state_dict(tensors)  # strict: timm's keys, no head, nothing else
    assert ("norm.weight" in tensors) == (pool == "token") and ("fc_norm.weight" in tensors) == (pool == "avg")
    mae = genlab.Model.from_pretrained(runs / "mae" / "model").eval()
    saved = genlab.Model.from_pretrained(out).eval()
    x = load_dataset("digits").test.x[:8]
    with torch.no_grad():
        expected = mae.to_vit(global_pool=pool).eval().encode(x)
        assert torch.allclose(saved.encode(x), expected, atol=1e-6)
        assert torch.allclose(timm_style.encode(x), expected, atol=1e-6)
    assert main(["eval", str(out), "--probe", "knn", "--data", "digits"]) == 0  # a saved model folder probes


def test_a_vit_run_exports_with_its_head_and_bad_requests_write_nothing(runs, tmp_path, capsys):
    assert main(["export", str(runs / "vit"), "--out", str(tmp_path / "vit")]) == 0
    config, tensors = _timm_file(tmp_path / "vit")
    assert config["num_classes"] == 10 and config["global_pool"] == "token" and "head.weight" in tensors
    vit = genlab.Model.from_pretrained(runs / "vit" / "model")
    assert all(torch.equal(tensors[k], v) for k, v in vit.state_dict().items())
    capsys.readouterr()
    for argv, message in (([str(runs / "vit"), "--global-pool", "avg"], "--global-pool applies to an mae's encoder"),
                          ([str(runs / "mae"), "--global-pool", "max"], "--global-pool 'max': choose avg or token"),
                          ([str(tmp_path / "nothing")], "does not exist")):
        assert main(["export", *argv, "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    edm = tmp_path / "edm"
    assert main(["train", "edm", "--data", "moons", "--steps", "2", "hidden=8", "depth=1", "eval_examples=16",
                 "num_samples=4", "--no-progress", "--out", str(edm)]) == 0
    assert main(["export", str(edm), "--out", str(tmp_path / "bad")]) == 2
    assert "export makes a ViT of a vit or mae run; 'edm' is a" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))
