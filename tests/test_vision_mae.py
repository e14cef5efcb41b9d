"""MAE: masking by argsort of noise, a visible-only encoder, a masked-only loss, export as a ViT."""

import json
import shutil

import pytest
import torch

import genlab
from genlab.cli import main
from genlab.data import load_dataset
from genlab.errors import UserError
from genlab.nn.patches import PatchEmbed, patchify, unpatchify
from genlab.vision import ViT
from genlab.vision.mae import random_masking
from resume import assert_same_checkpoints

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(data_shape=(1, 8, 8), patch_size=2, embed_dim=16, depth=2, num_heads=2, decoder_embed_dim=8,
            decoder_depth=1, decoder_num_heads=2)


def _mae(**kw):
    torch.manual_seed(0)
    return genlab.create("mae", **{**TINY, **kw})


def test_random_masking_keeps_a_share_and_restores_the_order():
    g = torch.Generator().manual_seed(0)
    ids_keep, mask, ids_restore = random_masking(5, 16, 4, g, "cpu")
    assert ids_keep.shape == (5, 4) and mask.shape == (5, 16)
    assert (mask.sum(1) == 12).all()  # 75% masked
    for i in range(5):
        assert (mask[i, ids_keep[i]] == 0).all()  # kept = visible
        shuffle = ids_restore[i].argsort()
        assert torch.equal(shuffle[ids_restore[i]], torch.arange(16))  # a permutation and its inverse
        assert torch.equal(shuffle[:4], ids_keep[i])
    other = random_masking(5, 16, 4, torch.Generator().manual_seed(0), "cpu")[0]
    assert torch.equal(other, ids_keep)  # seeded


def test_embedding_only_the_visible_patches_equals_embedding_all_then_gathering():
    torch.manual_seed(0)
    embed = PatchEmbed((8, 12), 4, 3, 5)  # non-square 2 x 3 grid, 3 channels
    x = torch.randn(4, 3, 8, 12)
    ids = torch.stack([torch.randperm(6)[:2] for _ in range(4)])
    full = embed(x)
    expected = full.gather(1, ids[..., None].expand(-1, -1, 5))
    subset = embed.forward_subset(x, ids)
    assert subset.shape == (4, 2, 5)
    assert torch.allclose(subset, expected, atol=1e-6)
    g_full = torch.autograd.grad(expected.square().sum(), embed.parameters())
    g_subset = torch.autograd.grad(embed.forward_subset(x, ids).square().sum(), embed.parameters())
    for a, b in zip(g_full, g_subset):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(UserError, match="8, 12"):
        embed.forward_subset(torch.randn(1, 3, 8, 8), ids[:1])


def test_patchify_round_trip_and_order():
    x = torch.randn(2, 3, 8, 12)
    p = patchify(x, 4)
    assert p.shape == (2, 6, 48)
    assert torch.equal(unpatchify(p, 4, 3, (2, 3)), x)
    assert torch.equal(p[0, 1].view(4, 4, 3), x[0, :, 0:4, 4:8].permute(1, 2, 0))  # row-major, (p, p, C)


def test_the_encoder_sees_only_visible_patches():
    mae = _mae().eval()
    x = torch.randn(3, 1, 8, 8)
    ids_keep, mask, _ = random_masking(3, 16, mae.num_visible(), torch.Generator().manual_seed(1), "cpu")
    latent = mae.forward_encoder(x, ids_keep)
    assert latent.shape == (3, 1 + 4, 16)  # class token + the 4 visible of 16 patches
    pixel_mask = unpatchify(mask[..., None].expand(-1, -1, 4), 2, 1, (4, 4))
    changed = x + 10 * torch.randn_like(x) * pixel_mask  # alter only the masked patches
    assert torch.allclose(mae.forward_encoder(changed, ids_keep), latent, atol=1e-6)


def test_the_loss_is_the_error_on_masked_patches_against_normalised_pixels():
    mae = _mae()
    x = torch.randn(4, 1, 8, 8)
    loss = mae.loss({"x": x}, "main", genlab.Context(random=torch.Generator().manual_seed(3)))["loss"]
    pred, mask = mae.masked_prediction(x, torch.Generator().manual_seed(3))
    t = patchify(x, 2)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    assert torch.allclose(t.mean(-1), torch.zeros(4, 16), atol=1e-5)
    per_patch = ((pred - t) ** 2).mean(-1)
    assert torch.allclose(loss, per_patch[mask.bool()].mean(), atol=1e-6)
    raw = _mae(norm_pix_loss=False)
    loss = raw.loss({"x": x}, "main", genlab.Context(random=torch.Generator().manual_seed(3)))["loss"]
    pred, mask = raw.masked_prediction(x, torch.Generator().manual_seed(3))
    assert torch.allclose(loss, ((pred - patchify(x, 2)) ** 2).mean(-1)[mask.bool()].mean(), atol=1e-6)


def test_optimizer_settings_are_the_papers():
    phase = _mae().phases()[0]
    assert (phase.optimizer, phase.betas, phase.weight_decay) == ("adamw", (0.9, 0.95), 0.05)
    assert not _mae().pos_embed.requires_grad and not _mae().decoder_pos_embed.requires_grad


def test_the_encoder_exports_as_a_timm_vit_state_dict():
    mae = _mae().eval()
    state = mae.encoder_state_dict()
    assert not any(k.startswith(("decoder", "mask_token")) for k in state)
    vit = ViT(img_size=8, patch_size=2, in_chans=1, num_classes=0, embed_dim=16, depth=2, num_heads=2).eval()
    vit.load_state_dict(state)  # strict: exactly the ViT's keys (no head: num_classes=0)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(vit.forward_features(x), mae.forward_encoder(x), atol=1e-6)
    tuned = mae.to_vit(num_classes=10)
    assert torch.allclose(tuned.fc_norm.weight, mae.norm.weight)
    mae.norm = torch.nn.Identity()  # with average pooling timm normalises after pooling, not before
    with torch.no_grad():
        assert torch.allclose(tuned.encode(x), tuned.fc_norm(mae.forward_encoder(x)[:, 1:].mean(1)), atol=1e-5)


def test_bad_settings_fail(tmp_path, capsys):
    with pytest.raises(UserError, match="mask_ratio=1.0: must be in"):
        _mae(mask_ratio=1.0)
    with pytest.raises(UserError, match="not divisible by patch_size=3"):
        _mae(patch_size=3)
    with pytest.raises(UserError, match="mlp_ratio=-1.0: must be > 0"):
        _mae(mlp_ratio=-1)
    assert main(["train", "mae", "--data", "digits", "mask_ratio=0", "--out", str(tmp_path / "r")]) == 2
    assert "mask_ratio=0.0: must be in (0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_training_lowers_the_loss_writes_reconstructions_and_resumes_exactly(tmp_path):
    args = ["train", "mae", "--data", "digits", "--batch-size", "64", "--lr", "2e-3", "patch_size=2", "embed_dim=32",
            "depth=2", "num_heads=2", "decoder_embed_dim=16", "decoder_depth=1", "decoder_num_heads=2",
            "warmup=5", "ckpt_every=20", "log_every=10", "eval_examples=64", "--no-progress"]
    assert main([*args, "--steps", "40", "--out", str(tmp_path / "a")]) == 0
    log = [json.loads(ln) for ln in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 0.9 * log[0]["loss"]
    assert (tmp_path / "a/reconstructions.png").is_file() and not (tmp_path / "a/samples.png").exists()
    assert "reconstructions.png" not in (tmp_path / "a/report.html").read_text()  # embedded, not linked
    assert "what the model makes of them" in (tmp_path / "a/report.html").read_text()
    # Resume from the step-20 checkpoint (as after a crash) and redo steps 21-40: bitwise the same.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b/checkpoints/step_40")
    assert main([*args, "--steps", "40", "--out", str(tmp_path / "b"), "--resume"]) == 0  # same options: fine

    assert_same_checkpoints(tmp_path / "a", tmp_path / "b", 40)
    assert main(["train", "mae", "--steps", "60", "--out", str(tmp_path / "b"), "--resume", "depth=3"]) == 2


def test_reconstruction_panels_keep_the_visible_patches():
    mae = _mae().eval()
    x = load_dataset("digits").test.x[:4]
    original, masked, recon = mae.reconstruction_panels(x, torch.Generator().manual_seed(0))
    visible = masked != 0
    assert torch.equal(original, x) and torch.equal(recon[visible], x[visible])
    assert (masked == 0).float().mean() > 0.5  # most patches hidden
