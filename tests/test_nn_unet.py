"""Denoiser networks: UNet, MLPDenoiser, embeddings and spatial self-attention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import apply_overrides
from genlab.errors import UserError
from genlab.nn.attention import SelfAttention2d, num_groups
from genlab.nn.embeddings import NoiseEmbedding, drop_labels, sinusoidal_embedding
from genlab.nn.mlp import MLPDenoiser, MLPDenoiserConfig
from genlab.nn.unet import UNet, UNetConfig, Upsample

SMALL = dict(channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, groups=8, attn_head_dim=16)


def small_unet(**kw) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(**{**SMALL, **kw}))


def randomize_zero_inits(net: nn.Module) -> None:
    """Zero-initialised output layers would hide the dependence of outputs on inputs."""
    torch.manual_seed(1)
    for p in net.parameters():
        if not p.any():
            nn.init.normal_(p, std=0.05)


@pytest.mark.parametrize(
    "channels,size", [(1, 28), (1, 8), (1, 32), (3, 32), (3, 8), (1, 7), (2, 13), (1, 1)]
)
def test_unet_output_shape(channels: int, size: int) -> None:
    net = small_unet(in_channels=channels)
    x = torch.randn(2, channels, size, size)
    out = net(x, torch.tensor([3.0, 999.0]))
    assert out.shape == x.shape
    assert out.is_contiguous()


def test_unet_out_channels_and_scalar_noise() -> None:
    net = small_unet(in_channels=3, out_channels=6)
    assert net(torch.randn(2, 3, 8, 8), torch.tensor(0.5)).shape == (2, 6, 8, 8)


def test_default_unet_parameter_count() -> None:
    net = UNet(UNetConfig())
    n = sum(p.numel() for p in net.parameters())
    # Same layout as diffusers UNet2DModel(block_out_channels=(64, 128, 128), 2 layers, attention
    # at 7x7 and in the middle block), whose count is also 6,469,889.
    assert n == 6_469_889
    assert 6.4e6 < n < 6.6e6


def test_upsample_equals_nearest_then_conv() -> None:
    torch.manual_seed(0)
    up = Upsample(5).double()
    x = torch.randn(2, 5, 7, 6, dtype=torch.double)
    ref = up.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
    torch.testing.assert_close(up(x, (14, 12)), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(up(x, (13, 11)), ref[:, :, :13, :11], rtol=0, atol=1e-12)


def test_channels_last_matches_nchw() -> None:
    a, b = small_unet(), small_unet(channels_last=True)
    b.load_state_dict(a.state_dict())
    randomize_zero_inits(a)
    b.load_state_dict(a.state_dict())
    x, c = torch.randn(2, 1, 28, 28), torch.tensor([0.1, -0.7])
    torch.testing.assert_close(b(x, c), a(x, c), rtol=1e-4, atol=1e-5)


def test_class_conditioning_and_null_label() -> None:
    net = small_unet(num_classes=3)
    randomize_zero_inits(net)
    x, c = torch.randn(1, 1, 8, 8).expand(4, -1, -1, -1), torch.zeros(4)
    out = net(x, c, torch.tensor([0, 1, 2, 3]))
    diffs = [(out[i] - out[j]).abs().max().item() for i in range(4) for j in range(i + 1, 4)]
    assert min(diffs) > 1e-4
    uncond = net(x[:1], c[:1])
    torch.testing.assert_close(uncond, out[3:4], rtol=1e-5, atol=1e-6)


def test_label_errors() -> None:
    net = small_unet()
    with pytest.raises(UserError, match="unconditional"):
        net(torch.randn(2, 1, 8, 8), torch.zeros(2), torch.tensor([0, 1]))
    cond = small_unet(num_classes=2)
    with pytest.raises(UserError, match="class_labels"):
        cond(torch.randn(2, 1, 8, 8), torch.zeros(2), torch.tensor([0.0, 1.0]))
    with pytest.raises(UserError, match="class_labels"):
        cond(torch.randn(2, 1, 8, 8), torch.zeros(2), torch.tensor([0]))
    with pytest.raises(UserError, match="c_noise"):
        cond(torch.randn(2, 1, 8, 8), torch.zeros(3))
    with pytest.raises(UserError, match=r"\(B, 1, H, W\)"):
        cond(torch.randn(2, 3, 8, 8), torch.zeros(2))


@pytest.mark.parametrize("scale_shift", [False, True])
def test_every_parameter_gets_a_gradient(scale_shift: bool) -> None:
    net = small_unet(num_classes=2, scale_shift=scale_shift, dropout=0.1, attn_levels=(1, -1))
    randomize_zero_inits(net)
    out = net(torch.randn(3, 1, 12, 12), torch.rand(3), torch.tensor([0, 1, 2]))
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_fresh_unet_outputs_zero_but_trains_everything() -> None:
    net = small_unet()
    out = net(torch.randn(2, 1, 8, 8), torch.rand(2))
    assert out.abs().max().item() == 0.0
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_determinism_with_seed() -> None:
    a, b = small_unet(dropout=0.2), small_unet(dropout=0.2)
    randomize_zero_inits(a)
    randomize_zero_inits(b)
    x, c = torch.randn(2, 1, 8, 8), torch.rand(2)
    outs = []
    for net in (a, b):
        torch.manual_seed(5)
        outs.append(net(x, c))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    a.eval()
    torch.testing.assert_close(a(x, c), a(x, c), rtol=0, atol=0)


@pytest.mark.parametrize(
    "override",
    [
        {"channel_mult": ()},
        {"channel_mult": (1, 0)},
        {"channels": 0},
        {"num_res_blocks": 0},
        {"num_res_blocks": (1, 0, 1)},
        {"num_res_blocks": (1, 2)},
        {"attn_levels": (3,)},
        {"dropout": 1.0},
        {"num_classes": -1},
        {"out_channels": 0},
        {"embedding": "learned"},
    ],
)
def test_bad_config_is_a_user_error(override: dict) -> None:
    with pytest.raises(UserError):
        UNet(UNetConfig(**{**SMALL, **override}))


def test_per_level_blocks_build_the_efficient_layout() -> None:
    """(1, 2, 3) down blocks: 1 + 2 + 3 down and 2 + 3 + 4 up ResBlocks, each level its width."""
    net = small_unet(num_res_blocks=(1, 2, 3))
    widths = [stage[0].conv2.out_channels for stage in net.down if isinstance(stage, nn.ModuleList)]
    assert widths == [16, 32, 32, 32, 32, 32]
    up = [stage[0].conv2.out_channels for stage in net.up if isinstance(stage, nn.ModuleList)]
    assert up == [32] * 4 + [32] * 3 + [16] * 2
    randomize_zero_inits(net)
    x = torch.randn(2, 1, 28, 28)
    out = net(x, torch.rand(2))
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert small_unet(num_res_blocks=[1, 2, 3]).config.blocks_per_level() == (1, 2, 3)
    same = small_unet(num_res_blocks=(1, 1, 1))
    assert sum(p.numel() for p in same.parameters()) == sum(p.numel() for p in small_unet().parameters())


def test_config_overrides_are_typed() -> None:
    cfg = apply_overrides(UNetConfig(), {"channel_mult": "1,2", "attn_levels": "-1", "dropout": "0.1"})
    assert cfg.channel_mult == (1, 2) and cfg.attn_levels == (-1,) and cfg.dropout == 0.1
    assert apply_overrides(UNetConfig(), {"num_res_blocks": "3"}).num_res_blocks == 3
    assert apply_overrides(UNetConfig(), {"num_res_blocks": "1,2,3"}).num_res_blocks == (1, 2, 3)
    assert apply_overrides(UNetConfig(), {"num_res_blocks": [1, 2, 3]}).num_res_blocks == (1, 2, 3)
    with pytest.raises(UserError, match="channel_mult"):
        apply_overrides(UNetConfig(), {"channel_mult": "1,0"})


def test_sinusoidal_embedding_values_for_both_noise_scales() -> None:
    emb = sinusoidal_embedding(torch.tensor([0.0, 1.0]), 4)
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0], [math.cos(1), math.cos(0.01), math.sin(1), math.sin(0.01)]])
    torch.testing.assert_close(emb, expected)
    # EDM's ln(sigma)/4 (a step of 0.05) and DDPM timesteps (a step of 1) both give distinct codes.
    for a, b in [(0.0, 0.05), (500.0, 501.0)]:
        e = sinusoidal_embedding(torch.tensor([a, b]), 64)
        assert (e[0] - e[1]).norm() > 0.04
    fourier = NoiseEmbedding(8, 16, "fourier")(torch.tensor([0.1, 0.2]))
    assert fourier.shape == (2, 16)
    with pytest.raises(UserError):
        sinusoidal_embedding(torch.zeros(2), 3)


def test_drop_labels() -> None:
    labels = torch.tensor([0, 1, 2, 1, 0, 2, 1, 0])
    assert torch.equal(drop_labels(labels, 0.0, 3), labels)
    assert torch.equal(drop_labels(labels, 1.0, 3), torch.full_like(labels, 3))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    half = drop_labels(labels, 0.5, 3, g1)
    assert torch.equal(half, drop_labels(labels, 0.5, 3, g2))
    assert set(half.tolist()) <= {0, 1, 2, 3}
    with pytest.raises(UserError):
        drop_labels(labels, 1.5, 3)


def test_attention_matches_explicit_softmax() -> None:
    torch.manual_seed(0)
    attn = SelfAttention2d(32, head_dim=16, groups=8)
    nn.init.normal_(attn.proj.weight, std=0.1)
    x = torch.randn(2, 32, 3, 5)
    tokens = attn.norm(x).flatten(2).transpose(1, 2)
    q, k, v = attn.qkv(tokens).view(2, 15, 3, 2, 16).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1)
    ref = x + attn.proj((weights @ v).transpose(1, 2).reshape(2, 15, 32)).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(attn(x), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attn(x.contiguous(memory_format=torch.channels_last)), ref, rtol=1e-4, atol=1e-5)
    assert num_groups(192, 32) == 32 and num_groups(24, 32) == 24 and num_groups(40, 32) == 20


def test_mlp_denoiser() -> None:
    torch.manual_seed(0)
    net = MLPDenoiser(MLPDenoiserConfig(dim=2, hidden=64, depth=3, num_classes=4))
    assert sum(p.numel() for p in net.parameters()) == 46_914
    x, c = torch.randn(5, 2), torch.randn(5)
    assert net(x, c).abs().max().item() == 0.0
    randomize_zero_inits(net)
    out = net(x, c, torch.tensor([0, 1, 2, 3, 4]))
    assert out.shape == (5, 2)
    same_x = net(x[:1].expand(2, -1), c[:1].expand(2), torch.tensor([0, 1]))
    assert (same_x[0] - same_x[1]).abs().max() > 1e-4
    torch.testing.assert_close(net(x[4:], c[4:]), out[4:], rtol=1e-5, atol=1e-6)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    plain = MLPDenoiser(MLPDenoiserConfig(dim=3, layer_norm=False))
    assert plain(torch.randn(4, 3), torch.rand(4)).shape == (4, 3)
    with pytest.raises(UserError, match="unconditional"):
        plain(torch.randn(4, 3), torch.rand(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(UserError, match=r"\(B, 3\)"):
        plain(torch.randn(4, 2), torch.rand(4))
    with pytest.raises(UserError, match="depth"):
        MLPDenoiser(MLPDenoiserConfig(depth=0))
