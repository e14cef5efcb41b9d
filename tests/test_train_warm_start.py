"""genlab train --init: a new run from trained weights — their architecture, a fresh head for other classes,
position embeddings resampled to another image size, an MAE's encoder into a ViT, any family's own weights."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import genlab
from genlab.cli import main
from genlab.nn.pos_embed import resize_pos_embed, sincos_2d
from genlab.train.run import start_run
from genlab.vision.vit import timm_kwargs
from genlab.weights import unique_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tiny_vision_runs):
    """The shared tiny mae and vit runs, the vit exported, and labelled data with 3 classes at 8 x 8."""
    root = tiny_vision_runs
    assert main(["export", str(root / "vit"), "--out", str(root / "exported")]) == 0
    x = np.random.default_rng(0).integers(0, 256, (60, 8, 8), dtype=np.uint8)
    np.savez(root / "three.npz", x=x, y=np.arange(60) % 3)  # other classes, same image size
    return root


def _tensors_equal(a, b, skip=()):
    keys = [k for k in a if not k.startswith(skip)]
    assert keys and all(torch.equal(a[k], b[k]) for k in keys), [k for k in keys if not torch.equal(a[k], b[k])]


def test_a_vit_starts_from_an_mae_encoder_at_another_image_size(runs, tmp_path, capsys):
    trainer = start_run("vit", "digits", tmp_path / "ft", {"steps": 2, "batch_size": 32},
                        image_size=12, init=runs / "mae")
    assert "head.weight, head.bias start fresh" in capsys.readouterr().err
    model, encoder = trainer.model, genlab.Model.from_pretrained(runs / "mae" / "model").to_vit()
    cfg = model.config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.patch_size, cfg.global_pool) == (16, 1, 2, 2, "avg")
    assert tuple(cfg.data_shape) == (1, 12, 12) and cfg.num_classes == 10  # the data's, not the source's
    state, source = unique_state_dict(model), unique_state_dict(encoder)
    _tensors_equal(source, state, skip=("pos_embed", "head."))
    assert torch.equal(state["pos_embed"], resize_pos_embed(source["pos_embed"], (6, 6), 1))  # 4x4 grid -> 6x6
    _tensors_equal(state, unique_state_dict(trainer.ema.model))  # the EMA starts from the loaded weights too
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init"] == str(runs / "mae")
    assert trainer.fit()["steps"] == 2


def test_other_classes_get_a_fresh_head_from_a_run_an_export_or_a_timm_file(runs, tmp_path, capsys):
    vit = unique_state_dict(genlab.Model.from_pretrained(runs / "vit" / "model"))
    for source in ("vit", "exported"):
        trainer = start_run("vit", str(runs / "three.npz"), tmp_path / source, {"steps": 1}, init=runs / source)
        assert trainer.model.config.num_classes == 3 and trainer.model.head.weight.shape == (3, 16)
        _tensors_equal(vit, unique_state_dict(trainer.model), skip=("head.",))
        assert "head.weight, head.bias start fresh" in capsys.readouterr().err
    same = start_run("vit", "digits", tmp_path / "same", {"steps": 1, "crop_pad": 2}, init=runs / "vit")
    assert "start fresh" not in capsys.readouterr().err and same.model.config.crop_pad == 2  # options win
    _tensors_equal(vit, unique_state_dict(same.model))  # the same classes keep the trained head
    timm_file = runs / "exported" / "timm.safetensors"  # timm's keyword arguments in its metadata
    args = ["train", "vit", "--data", str(runs / "three.npz"), "--steps", "1", "--no-progress", "--init"]
    assert main([*args, str(timm_file), "--out", str(tmp_path / "t")]) == 0  # the architecture comes with it
    assert "init: weights and options from" in capsys.readouterr().err
    tuned = genlab.Model.from_pretrained(tmp_path / "t" / "model")
    assert (tuned.config.embed_dim, tuned.config.depth, tuned.config.patch_size) == (16, 1, 2)
    bare = tmp_path / "bare.safetensors"  # tensors only: the architecture comes from the options
    save_file(load_file(timm_file), bare)
    assert main([*args, str(bare), "patch_size=2", "embed_dim=16", "depth=1", "num_heads=2",
                 "--out", str(tmp_path / "b")]) == 0
    assert "init: weights from" in capsys.readouterr().err
    assert main([*args, str(bare), "patch_size=2", "--out", str(tmp_path / "bad")]) == 2  # default width 192
    assert "error: --init" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_timm_file_from_a_non_square_grid_is_resampled_to_the_data(tmp_path, capsys):
    torch.manual_seed(0)
    wide = genlab.vision.ViT(img_size=(8, 12), patch_size=2, in_chans=1, num_classes=10, embed_dim=16, depth=1,
                             num_heads=2)  # a 4 x 6 grid: 24 patches, which no square holds
    state = unique_state_dict(wide)
    meta = {"config": json.dumps(timm_kwargs(wide.config))}
    save_file(state, tmp_path / "wide.safetensors", meta)
    trainer = start_run("vit", "digits", tmp_path / "r", {"steps": 1}, init=tmp_path / "wide.safetensors")
    expected = resize_pos_embed(state["pos_embed"], (4, 4), 1, (4, 6))
    assert torch.equal(trainer.model.pos_embed.detach(), expected)
    _tensors_equal(state, unique_state_dict(trainer.model), skip=("pos_embed",))
    save_file(state, tmp_path / "tensors.safetensors")  # without its grid: one error, nothing written
    assert main(["train", "vit", "--data", "digits", "--steps", "1", "--init", str(tmp_path / "tensors.safetensors"),
                 "patch_size=2", "embed_dim=16", "depth=1", "num_heads=2", "--out", str(tmp_path / "bad")]) == 2
    assert "24 patches are not a square grid" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    save_file(state, tmp_path / "junk.safetensors", {"config": "{not json"})
    assert main(["train", "vit", "--data", "digits", "--init", str(tmp_path / "junk.safetensors"),
                 "--out", str(tmp_path / "bad")]) == 2
    assert "its metadata's config is not JSON" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_an_exported_vit_keeps_its_fixed_position_embedding_from_the_folder_or_the_timm_file(tmp_path):
    from genlab.vision.export import export_vit

    torch.manual_seed(0)
    vit = genlab.create("vit", data_shape=(1, 8, 8), patch_size=2, embed_dim=16, depth=1, num_heads=2,
                        pos_embed="sincos")
    export_vit(vit, tmp_path / "enc")
    for source in (tmp_path / "enc", tmp_path / "enc" / "timm.safetensors"):
        model = start_run("vit", "digits", tmp_path / f"from-{source.name}", {"steps": 1}, init=source).model
        assert model.config.pos_embed == "sincos" and not model.pos_embed.requires_grad  # timm would learn it
        assert torch.equal(model.pos_embed.detach(), sincos_2d(16, (4, 4), 1)[None])


def test_a_files_config_is_checked_against_its_tensors():
    torch.manual_seed(0)
    vit = genlab.vision.ViT(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=16, depth=1, num_heads=2)
    state, kwargs = unique_state_dict(vit), timm_kwargs(vit.config)
    read = genlab.vision.ViT.weights_file_source
    assert read(state, {}) is None  # tensors only
    regularised = read(state, {"config": json.dumps({**kwargs, "drop_path_rate": 0.1, "drop_rate": 0.0})})
    _tensors_equal(state, unique_state_dict(regularised))  # timm's dropout rates hold no tensors: read past
    bad = {"[1, 2]": "is list, not timm's keyword arguments",
           json.dumps({**kwargs, "depth": 2}): "its tensors against its metadata's config: missing weights blocks.1",
           json.dumps({**kwargs, "img_size": "8"}): "is not a ViT's",
           json.dumps({**kwargs, "embed_dim": 16.0}): "is not a ViT's",
           json.dumps({**kwargs, "init_values": 1e-5}): "unknown ViT argument(s) init_values"}
    for config, message in bad.items():
        with pytest.raises(genlab.errors.UserError, match=re.escape(message)):
            read(state, {"config": config})
    with pytest.raises(genlab.errors.UserError, match=re.escape("its metadata's pos_embed='fixed': choose one of learn")):
        read(state, {"config": json.dumps(kwargs), "pos_embed": "fixed"})


def test_mae_pretraining_continues_at_another_image_size(runs, tmp_path):
    trainer = start_run("mae", "digits", tmp_path / "mae", {"steps": 1}, image_size=12, init=runs / "mae")
    source = unique_state_dict(genlab.Model.from_pretrained(runs / "mae" / "model"))
    state = unique_state_dict(trainer.model)
    _tensors_equal(source, state, skip=("pos_embed", "decoder_pos_embed"))
    for key, width in (("pos_embed", 16), ("decoder_pos_embed", 8)):  # its own sin-cos tables for the 6 x 6 grid
        assert torch.equal(state[key], sincos_2d(width, (6, 6), 1)[None])


def test_an_mae_encoder_starts_a_vit_pooled_by_the_class_token(runs, tmp_path):
    trainer = start_run("vit", "digits", tmp_path / "tok", {"steps": 1, "global_pool": "token"}, init=runs / "mae")
    encoder = unique_state_dict(genlab.Model.from_pretrained(runs / "mae" / "model").to_vit(global_pool="token"))
    _tensors_equal(encoder, unique_state_dict(trainer.model), skip=("head.",))  # the final norm is norm again


def test_a_flow_starts_from_its_weights_without_redoing_actnorm(tmp_path):
    args = ["--data", "digits", "--batch-size", "32", "transforms=2", "channels=8", "--no-progress"]
    assert main(["train", "glow", *args, "--steps", "3", "--out", str(tmp_path / "glow")]) == 0
    trainer = start_run("glow", "digits", tmp_path / "more", {"steps": 1, "lr": 1e-12}, init=tmp_path / "glow")
    source = genlab.Model.from_pretrained(tmp_path / "glow" / "model")
    trainer.show_progress = False
    trainer.fit()  # ActNorm re-fitted from data would move its parameters far more than lr 1e-12 does
    for key, value in unique_state_dict(trainer.model).items():
        assert torch.allclose(value, unique_state_dict(source)[key], atol=1e-6), key


def test_gan_gammas_and_a_presets_options_are_the_new_runs(tmp_path):
    small = ["--data", "grid25", "--steps", "2", "--batch-size", "32", "hidden=16", "--no-progress"]
    assert main(["train", "gan", *small, "--out", str(tmp_path / "gan")]) == 0
    gan = start_run("gan", "grid25", tmp_path / "g2", {"steps": 1, "r1": 5.0}, init=tmp_path / "gan")
    assert gan.model.gamma.tolist() == [5.0, 0.0]
    assert main(["train", "ddpm", *small, "depth=1", "--out", str(tmp_path / "ddpm")]) == 0
    ddim = start_run("ddim", "grid25", tmp_path / "ddim", {"steps": 1}, init=tmp_path / "ddpm")
    assert ddim.model.config.sampler == "ddim" and ddim.model.config.hidden == 16  # ddim's preset, ddpm's width


CASES = {"resume": "--resume", "missing": "does not exist", "missing file": "does not exist",
         "other family": "cannot start from a 'vit'", "unreadable file": "not a readable safetensors",
         "damaged folder": "cannot be read", "out holds it": "holds the --init weights"}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_init_is_one_error_and_writes_nothing(runs, tmp_path, capsys, case):
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    shutil.copytree(runs / "vit" / "model", tmp_path / "damaged")
    (tmp_path / "damaged" / "model.safetensors").write_bytes(b"\0" * 64)
    init, model, extra = {"resume": (runs / "vit", "vit", ["--resume"]), "missing": (tmp_path / "nope", "vit", []),
                          "missing file": (tmp_path / "nope.safetensors", "vit", []),
                          "other family": (runs / "vit", "resnet", []),
                          "unreadable file": (tmp_path / "junk.safetensors", "vit", []),
                          "damaged folder": (tmp_path / "damaged", "vit", []),
                          "out holds it": (tmp_path / "out" / "model", "vit", [])}[case]
    out = tmp_path / "out"
    assert main(["train", model, "--data", "digits", "--steps", "1", "--init", str(init), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert CASES[case] in err
    assert not out.exists()
