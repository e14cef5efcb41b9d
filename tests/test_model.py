"""The model interface: persistence (each tensor once, atomic, typed loading), capabilities, data fields."""

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import genlab
import genlab.atomic as atomic
from genlab.autoencoders.vae import VAE
from genlab.cli import main
from genlab.data import load_dataset
from genlab.diffusion import DiffusionConfig, DiffusionModel
from genlab.errors import UserError
from genlab.model import Model
from genlab.train.run import start_run
from genlab.weights import load_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def test_diffusion_weights_are_stored_once_and_old_files_load(tmp_path):
    m = genlab.create("edm", data_shape=(1, 8, 8), channels=8, channel_mult=(1,), num_res_blocks=1, attn_levels=())
    n = sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers())  # each tensor once
    m.save_pretrained(tmp_path / "new")
    stored = load_file(str(tmp_path / "new/model.safetensors"))
    assert not any(k.startswith("denoiser.") for k in stored)  # net.* and denoiser.net.* are one module
    assert sum(v.numel() for v in stored.values()) == n
    # A file written before deduplication (both names) still loads.
    (tmp_path / "old").mkdir()
    (tmp_path / "old/config.json").write_text((tmp_path / "new/config.json").read_text())
    both = {k: v.clone().contiguous() for k, v in m.state_dict().items()}
    assert any(k.startswith("denoiser.net.") for k in both)
    save_file(both, str(tmp_path / "old/model.safetensors"))
    assert os.path.getsize(tmp_path / "new/model.safetensors") < 0.6 * os.path.getsize(tmp_path / "old/model.safetensors")
    for d in ("new", "old"):
        m2 = Model.from_pretrained(tmp_path / d)
        assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters()))
        assert m2.net is m2.denoiser.net


def test_loading_names_the_key_and_both_shapes(tmp_path):
    a = genlab.create("vae", data_shape=(2,), hidden=8, depth=1)
    b = genlab.create("vae", data_shape=(2,), hidden=16, depth=1)
    a.save_pretrained(tmp_path / "a")
    with pytest.raises(UserError, match=r"decoder.0.bias has shape \(8,\) but the model expects \(16,\)"):
        load_weights(b, tmp_path / "a/model.safetensors")


def test_from_pretrained_checks_the_class_and_constructor_built_models_reload(tmp_path):
    vae = genlab.create("vae", data_shape=(2,), hidden=8, depth=1)
    vae.save_pretrained(tmp_path / "v")
    assert isinstance(VAE.from_pretrained(tmp_path / "v"), VAE)
    with pytest.raises(UserError, match="holds a 'vae' model \\(VAE\\), not a DiffusionModel"):
        DiffusionModel.from_pretrained(tmp_path / "v")
    built = DiffusionModel(DiffusionConfig(data_shape=(3,), hidden=8, depth=1, schedule="flow",
                                           parameterization="velocity", grid="uniform_t"))
    built.save_pretrained(tmp_path / "d")
    again = DiffusionModel.from_pretrained(tmp_path / "d")
    assert again.config == built.config and json.loads((tmp_path / "d/config.json").read_text())["model"] != "model"
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(built.sample(2, generator=g()), again.sample(2, generator=g()))


def test_python_and_cli_build_the_same_model(tmp_path):
    data = load_dataset("grid25")
    from_python = genlab.create("edm", data=data)
    from_cli = start_run("edm", "grid25", tmp_path / "r", {}).model
    assert from_python.config == from_cli.config and from_python.config.num_classes == 25


def test_capabilities_are_what_a_class_overrides():
    assert DiffusionModel.capabilities() == ["sample", "log_prob"]
    assert VAE.capabilities() == ["sample", "log_prob", "encode"]
    with pytest.raises(UserError, match="has no text encoder"):
        genlab.create("vae", data_shape=(2,)).encode_text(torch.zeros(1, 3))


def test_a_crash_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    m = genlab.create("vae", data_shape=(2,), hidden=8, depth=1)
    m.save_pretrained(tmp_path / "m")
    before = (tmp_path / "m/model.safetensors").read_bytes()
    with torch.no_grad():
        m.encoder[0].weight.add_(1.0)
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)  # a file system without RENAME_EXCHANGE
    real_rename, calls = os.rename, []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between "dst -> old" and "tmp -> dst"
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        m.save_pretrained(tmp_path / "m")
    monkeypatch.setattr(os, "rename", real_rename)
    assert not (tmp_path / "m").exists() and any(p.name.startswith(".m.old-") for p in tmp_path.iterdir())
    left = sorted(p.name for p in tmp_path.iterdir())
    restored = Model.from_pretrained(tmp_path / "m")  # a reader loads the displaced old folder, touching nothing
    assert isinstance(restored, VAE) and sorted(p.name for p in tmp_path.iterdir()) == left
    torch.testing.assert_close(restored.encoder[0].weight, m.encoder[0].weight - 1.0)  # the version before
    m.save_pretrained(tmp_path / "m")  # the next writer puts the old folder back, drops the temporaries, writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert (tmp_path / "m/model.safetensors").read_bytes() != before


def test_a_reader_whose_displaced_folder_vanishes_mid_read_reads_the_new_one(tmp_path, monkeypatch):
    m = genlab.create("vae", data_shape=(2,), hidden=8, depth=1)
    m.save_pretrained(tmp_path / "new")
    m.save_pretrained(tmp_path / "old")
    os.rename(tmp_path / "old", tmp_path / ".m.old-1")  # a writer between its two renames
    real_load, calls = genlab.model.load_weights, []

    def writer_finishes_first(model, path, *args):
        calls.append(path.parent.name)
        if len(calls) == 1:  # the writer's second rename and its clean-up land mid-read
            os.rename(tmp_path / "new", tmp_path / "m")
            shutil.rmtree(tmp_path / ".m.old-1")
        return real_load(model, path, *args)

    monkeypatch.setattr(genlab.model, "load_weights", writer_finishes_first)
    assert isinstance(Model.from_pretrained(tmp_path / "m"), VAE)
    assert calls == [".m.old-1", "m"]  # the vanished version, then the whole new one
    with pytest.raises(UserError, match="is not a saved model"):  # nothing to fall back to
        Model.from_pretrained(tmp_path / "absent")


def test_reading_a_model_leaves_a_save_in_progress_alone(tmp_path):
    m = genlab.create("vae", data_shape=(2,), hidden=8, depth=1)
    m.save_pretrained(tmp_path / "m")
    writing = atomic.temp_dir_for(tmp_path / "m")  # another process's save, half written
    (writing / "config.json").write_text("{")
    Model.from_pretrained(tmp_path / "m")
    assert (writing / "config.json").read_text() == "{"


def test_replacing_a_folder_is_one_exchange(tmp_path):
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst/f").write_text("old")
    (tmp_path / "src").mkdir()
    (tmp_path / "src/f").write_text("new")
    if not atomic.exchange(tmp_path / "src", tmp_path / "dst"):
        pytest.skip("this file system cannot exchange names atomically")
    assert (tmp_path / "dst/f").read_text() == "new" and (tmp_path / "src/f").read_text() == "old"


def test_saved_folders_get_the_usual_permissions(tmp_path):
    genlab.create("vae", data_shape=(2,), hidden=8, depth=1).save_pretrained(tmp_path / "m")
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "m") == 0o777 & ~atomic.UMASK  # not mkdtemp's 0700
    assert mode(tmp_path / "m/model.safetensors") == mode(tmp_path / "m/config.json") == 0o666 & ~atomic.UMASK


def test_no_model_option_is_shadowed_by_a_training_option():
    """``key=value`` goes to the trainer first; a model field of the same name must mean the same thing."""
    from genlab.config import field_types
    from genlab.model import config_fields
    from genlab.registry import MODELS
    from genlab.train import TrainConfig

    shared = {n: set(config_fields(n)) & set(field_types(TrainConfig)) for n in MODELS.names()}
    assert all(s <= {"lr", "optimizer"} for s in shared.values()), shared


def test_a_model_too_large_for_memory_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserError, match="model 'vit' with these options does not fit in memory"):
        genlab.create("vit", data_shape=(1, 8, 8), patch_size=4, mlp_ratio=1e12)  # 10^17 bytes: past any address space
    assert main(["train", "edm", "--data", "ring8", "hidden=100000000000000", "--out", str(tmp_path / "r")]) == 2
    assert "error: model 'edm' with these options does not fit in memory" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
