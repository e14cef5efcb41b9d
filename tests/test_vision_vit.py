"""ViT: timm parity on a fixture, timm's keyword names and keys, position embeddings, errors."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import genlab
from genlab.errors import UserError
from genlab.nn.pos_embed import resize_pos_embed, sincos_2d
from genlab.vision import ViT

pytestmark = pytest.mark.usefixtures("one_thread")
FIXTURE = Path(__file__).parent / "fixtures" / "timm_vit_cls_p4_28.safetensors"


def _fixture():
    with safe_open(str(FIXTURE), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    return json.loads(meta["config"]), state, tensors


def test_timm_state_dict_loads_unchanged_and_reproduces_timm_outputs():
    config, state, t = _fixture()
    vit = ViT(**config).eval()
    assert set(vit.state_dict()) == set(state)  # the same key names, nothing extra
    vit.load_state_dict(state)
    with torch.no_grad():
        features = vit.forward_features(t["input"])
        logits = vit.forward_head(features)
    assert (features - t["expected_features"]).abs().max() < 1e-5
    assert (logits - t["expected_logits"]).abs().max() < 1e-5
    with torch.no_grad():  # forward's class-token-only last block
        assert (vit(t["input"]) - t["expected_logits"]).abs().max() < 1e-5
    assert vit.blocks[0].norm1.eps == 1e-6 and vit.blocks[0].mlp.act.approximate == "none"


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_class_token_forward_equals_the_full_last_block_with_gradients(qkv_bias):
    torch.manual_seed(0)
    vit = ViT(img_size=(8, 12), patch_size=4, in_chans=2, num_classes=3, embed_dim=16, depth=2, num_heads=2,
              qkv_bias=qkv_bias).double()
    x = torch.randn(5, 2, 8, 12, dtype=torch.float64)
    fast, full = vit(x), vit.forward_head(vit.forward_features(x))
    assert (fast - full).abs().max() < 1e-12
    w = torch.randn(fast.shape, dtype=torch.float64)
    params = list(vit.parameters())
    g_fast = torch.autograd.grad((fast * w).sum(), params, allow_unused=True)
    g_full = torch.autograd.grad((full * w).sum(), params, allow_unused=True)
    assert all((a is None and b is None) or (a - b).abs().max() < 1e-12 for a, b in zip(g_fast, g_full))


def test_timm_keywords_map_to_the_config_and_unknown_ones_are_errors():
    vit = ViT(img_size=(28, 36), patch_size=4, in_chans=3, num_classes=5, embed_dim=32, depth=1, num_heads=2,
              global_pool="avg", class_token=False)
    assert vit.config.data_shape == (3, 28, 36) and vit.patch_embed.grid_size == (7, 9)
    assert vit.pos_embed.shape == (1, 63, 32) and vit.cls_token is None
    assert isinstance(vit.norm, torch.nn.Identity) and isinstance(vit.fc_norm, torch.nn.LayerNorm)  # timm's rule
    assert vit(torch.randn(2, 3, 28, 36)).shape == (2, 5)
    assert vit.encode(torch.randn(2, 3, 28, 36)).shape == (2, 32)
    with pytest.raises(UserError, match="unknown ViT argument"):
        ViT(img_size=28, drop_rate=0.1)
    with pytest.raises(UserError, match="not divisible by patch_size=5"):
        ViT(img_size=28, patch_size=5)
    with pytest.raises(UserError, match="needs class_token=true"):
        ViT(img_size=28, patch_size=4, class_token=False, global_pool="token")


def test_sincos_matches_the_mae_reference_formula():
    def mae_1d(dim, pos):  # facebookresearch/mae util/pos_embed.py, in numpy
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    d, gh, gw = 16, 3, 5
    grid = np.stack(np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32)), axis=0)
    ref = np.concatenate([mae_1d(d // 2, grid[0]), mae_1d(d // 2, grid[1])], axis=1)
    ref = np.concatenate([np.zeros((1, d)), ref])
    assert np.abs(sincos_2d(d, (gh, gw), prefix_tokens=1).numpy() - ref).max() < 1e-6
    vit = ViT(img_size=8, patch_size=2, in_chans=1, num_classes=2, embed_dim=16, depth=1, num_heads=2)
    fixed = genlab.create("vit", data_shape=(1, 8, 8), num_classes=2, patch_size=2, embed_dim=16, depth=1,
                          num_heads=2, pos_embed="sincos")
    assert not fixed.pos_embed.requires_grad and vit.pos_embed.requires_grad


def test_position_embeddings_are_resampled_to_other_grids():
    config, state, t = _fixture()
    for size, grid in ((32, (8, 8)), ((28, 36), (7, 9)), (28, (7, 7))):
        vit = ViT(**{**config, "img_size": size}).eval()
        vit.load_state_dict(state)
        assert vit.pos_embed.shape == (1, 1 + math.prod(grid), 64)
        assert torch.equal(vit.pos_embed[:, 0], state["pos_embed"][:, 0])  # the class token's row is kept
        h, w = (size, size) if isinstance(size, int) else size
        assert torch.isfinite(vit(torch.randn(2, 1, h, w))).all()
    wide = ViT(**{**config, "img_size": (28, 36)})
    wide.load_state_dict(state)
    back = ViT(**{**config, "img_size": 32})
    back.load_state_dict(wide.state_dict(), grid=(7, 9))  # from a non-square grid, given its shape
    assert back.pos_embed.shape == (1, 65, 64)
    for grid, message in ((None, r"63 patches are not a square grid; pass the checkpoint's grid"),
                          ((9, 9), r"grid=\(9, 9\) holds 81 patches, the checkpoint 63")):
        with pytest.raises(UserError, match=r"pos_embed: checkpoint shape \(1, 64, 64\) vs model \(1, 65, 64\): " + message):
            back.load_state_dict(wide.state_dict(), grid=grid)
    same = resize_pos_embed(state["pos_embed"], (7, 7), 1)
    assert same is state["pos_embed"]
    # A field linear in the column index stays linear in the interior after bicubic upsampling.
    cols = torch.arange(7.0).repeat(7)[None, :, None].expand(1, 49, 4)
    up = resize_pos_embed(cols, (7, 14), 0).reshape(7, 14, 4)[..., 0]
    assert torch.allclose(up[:, 2:-2], up[:1, 2:-2].expand(7, -1), atol=1e-5)  # constant down the rows
    assert (up[0, 4:-3] - up[0, 3:-4]).std() < 1e-5  # evenly spaced away from the edges


def test_a_mismatched_checkpoint_names_the_key_and_both_shapes():
    config, state, _ = _fixture()
    vit = ViT(**{**config, "num_classes": 7})
    with pytest.raises(UserError, match=r"head.bias: checkpoint shape \(10,\) does not match the model's \(7,\)"):
        vit.load_state_dict(state)
    wide = ViT(**{**config, "embed_dim": 32, "num_heads": 2})
    with pytest.raises(UserError, match=r"pos_embed: checkpoint shape \(1, 50, 64\)"):
        wide.load_state_dict(state)
    pooled = ViT(**{**config, "class_token": False, "global_pool": "avg"})
    with pytest.raises(UserError, match=r"cls_token: the checkpoint has class token, the model was built with class_token=False"):
        pooled.load_state_dict(state)
    with pytest.raises(UserError, match=r"cls_token: the checkpoint has no class token, the model was built with class_token=True"):
        vit.load_state_dict(pooled.state_dict())


def test_layer_ids_for_layer_wise_decay():
    vit = genlab.create("vit", data_shape=(1, 8, 8), num_classes=3, patch_size=2, embed_dim=16, depth=3,
                        num_heads=2, layer_decay=0.5)
    ids = {n: vit.layer_id(n) for n, _ in vit.named_parameters()}
    assert ids["cls_token"] == ids["patch_embed.proj.weight"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["blocks.2.mlp.fc2.bias"] == 3
    assert ids["head.weight"] == ids["norm.weight"] == 4
    scale = vit.phases()[0].param_lr_scale
    assert scale("head.weight") == 1.0 and scale("blocks.2.norm1.weight") == 0.5 and scale("pos_embed") == 0.5**4
