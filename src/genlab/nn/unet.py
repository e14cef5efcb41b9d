"""DDPM-style UNet denoiser for images: ``forward(x, c_noise, class_labels) -> same shape as x``.

Layout (Ho et al. 2020, as in NVlabs/edm's DDPM++ and diffusers' ``UNet2DModel``): an input
conv; per resolution level ``num_res_blocks`` ResBlocks (GroupNorm-SiLU-conv, noise embedding
added or applied as scale/shift, GroupNorm-SiLU-dropout-conv, 1x1 skip when the width changes),
self-attention after each ResBlock of the levels in ``attn_levels``; a stride-2 conv between
levels; a middle ResBlock-attention-ResBlock; the mirrored way up with ``num_res_blocks + 1``
ResBlocks per level, each fed the concatenation of the previous output and one stored skip; an
output GroupNorm-SiLU-conv whose conv starts at zero.

``num_res_blocks`` may differ per level (Imagen's Efficient U-Net, Saharia et al. 2022, App. B):
a level at 4x the pixels costs 4x per ResBlock of the same width, so fewer blocks at high
resolution and more at low resolution buy speed at a similar parameter count: on 28x28, (1, 1, 3)
trains about 1.33x faster per image than (2, 2, 2) with 1.4% fewer parameters, and 1.42x faster
than diffusers' ``UNet2DModel`` with (2, 2, 2) (``benchmarks/unet_speed.py``).

Any H and W work: a stride-2 conv maps n to ceil(n / 2) (28 -> 14 -> 7 -> 4) and the way up
crops each 2x upsampling to the size of its skip.

Speed: the "nearest 2x upsample + 3x3 conv" is computed exactly as one 2x2 conv at the low
resolution followed by a pixel shuffle (16 instead of 36 multiply-adds per output pixel and
channel pair; 1.7x faster on CPU); SiLU runs in place on GroupNorm outputs and the noise
embedding goes through SiLU once for all ResBlocks. ``channels_last=True`` stores feature maps
channels-last (for GPUs with AMP); on CPU the default NCHW measured faster, because GroupNorm is
slower channels-last there (``benchmarks/unet_speed.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.nn.attention import SelfAttention2d, num_groups
from genlab.nn.embeddings import ClassEmbedding, EmbeddingKind, NoiseEmbedding, check_labels, embed_conditions


@dataclass
class UNetConfig:
    """UNet hyperparameters.

    ``channel_mult[i] * channels`` is the width of level i (level 0 at full resolution);
    ``num_res_blocks`` is one count for every level or one per level (down path; the up path
    has one more per level); ``attn_levels`` lists level indices (negative counts from the
    lowest resolution) that get self-attention; ``num_classes`` > 0 adds a class embedding with
    a null label at index ``num_classes``; ``scale_shift`` applies the noise embedding as
    GroupNorm scale and shift (improved DDPM) instead of adding it; ``groups`` is the GroupNorm
    group count (fewer when a width is not divisible by it).
    """

    in_channels: int = 1
    out_channels: int | None = None
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int | tuple[int, ...] = 2
    attn_levels: tuple[int, ...] = (-1,)
    mid_attention: bool = True
    attn_head_dim: int = 64
    dropout: float = 0.0
    num_classes: int = 0
    groups: int = 32
    embedding: EmbeddingKind = "positional"
    scale_shift: bool = False
    channels_last: bool = False
    patch_size: int = 1  # pixel-unshuffle p x p patches into channels first: p^2 less compute

    def validate(self) -> None:
        for name in ("in_channels", "channels", "groups", "attn_head_dim", "patch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.out_channels is not None and self.out_channels < 1:
            raise UserError(f"out_channels={self.out_channels}: must be >= 1 (None = in_channels)")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise UserError(f"channel_mult={self.channel_mult}: needs one or more values >= 1")
        levels = len(self.channel_mult)
        blocks = self.num_res_blocks
        if isinstance(blocks, (tuple, list)) and len(blocks) != levels:
            raise UserError(f"num_res_blocks={blocks}: give one count or one per level ({levels} levels)")
        if min(self.blocks_per_level()) < 1:
            raise UserError(f"num_res_blocks={blocks}: must be >= 1")
        bad = [a for a in self.attn_levels if not -levels <= a < levels]
        if bad:
            raise UserError(f"attn_levels={self.attn_levels}: levels run 0..{levels - 1} (or -1..)")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout={self.dropout}: must be in [0, 1)")
        if self.num_classes < 0:
            raise UserError(f"num_classes={self.num_classes}: must be >= 0")
        if self.embedding not in ("positional", "fourier"):
            raise UserError(f"embedding={self.embedding!r}: choose positional or fourier")

    def blocks_per_level(self) -> tuple[int, ...]:
        """Down-path ResBlocks of each level."""
        blocks = self.num_res_blocks
        return tuple(blocks) if isinstance(blocks, (tuple, list)) else (blocks,) * len(self.channel_mult)


def norm_silu(norm: nn.GroupNorm, x: Tensor) -> Tensor:
    """``silu(norm(x))`` without a second activation-sized buffer (SiLU in place)."""
    return F.silu(norm(x), inplace=True)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, + noise embedding, GroupNorm-SiLU-dropout-conv, + (1x1) skip."""

    def __init__(
        self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float, scale_shift: bool
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups(cin, groups), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout if scale_shift else cout)
        self.norm2 = nn.GroupNorm(num_groups(cout, groups), cout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.scale_shift = scale_shift

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(norm_silu(self.norm1, x))
        e = self.emb(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = F.silu(torch.addcmul(shift, self.norm2(h), scale + 1), inplace=True)
        else:
            h = norm_silu(self.norm2, h.add_(e))
        h = self.conv2(self.dropout(h))
        return h.add_(self.skip(x))


class Downsample(nn.Module):
    """Stride-2 3x3 conv: n -> ceil(n / 2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest 2x upsampling then a 3x3 conv, cropped to ``size``; computed at low resolution.

    Output pixel (2i + a, 2j + b) of the upsampled conv sees input rows {i-1, i} (a = 0) or
    {i, i+1} (a = 1) with the 3x3 kernel's rows summed accordingly (same for columns), so the
    whole layer is one 2x2 conv (padding 1) with four kernels per output channel, derived from
    the 3x3 kernel, then a pixel shuffle. The parameters are the usual ``conv.weight`` (C, C, 3, 3).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        # Row (and column) mixing for the pixel-shuffle order: odd phase (a = 1), then even.
        mix = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
        self.register_buffer("mix", mix, persistent=False)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        w, b = self.conv.weight, self.conv.bias
        c_out, c_in = w.shape[:2]
        mix = self.mix.to(w.dtype)
        w4 = torch.einsum("aij,bkl,ocjl->oabcik", mix, mix, w).reshape(4 * c_out, c_in, 2, 2)
        if x.is_contiguous(memory_format=torch.channels_last):
            w4 = w4.contiguous(memory_format=torch.channels_last)
        y = F.pixel_shuffle(F.conv2d(x, w4, b.repeat_interleave(4), padding=1), 2)
        return y[:, :, 1 : 1 + size[0], 1 : 1 + size[1]]


class UNet(nn.Module):
    """DDPM-style UNet; ``forward(x, c_noise, class_labels=None)`` returns a tensor shaped like x.

    ``c_noise`` is (B,) (or a scalar, broadcast): timesteps or ``ln(sigma) / 4`` both work with
    the sinusoidal embedding. ``class_labels`` is (B,) int64 in [0, num_classes]; index
    ``num_classes`` (also used when labels are None) is the unconditional "null" label.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or UNetConfig()
        cfg.validate()
        self.config = cfg
        ch, levels = cfg.channels, len(cfg.channel_mult)
        emb_dim = 4 * ch
        attn = {a % levels for a in cfg.attn_levels}
        blocks = cfg.blocks_per_level()
        block = dict(
            emb_dim=emb_dim, groups=cfg.groups, dropout=cfg.dropout, scale_shift=cfg.scale_shift
        )

        self.noise_emb = NoiseEmbedding(ch, emb_dim, cfg.embedding)
        self.class_emb = ClassEmbedding(cfg.num_classes, emb_dim) if cfg.num_classes else None
        p2 = cfg.patch_size**2
        self.conv_in = nn.Conv2d(cfg.in_channels * p2, ch, 3, padding=1)

        self.down = nn.ModuleList()
        widths, cur = [ch], ch
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(blocks[level]):
                self.down.append(self._stage(ResBlock(cur, ch * mult, **block), level in attn, cfg))
                cur = ch * mult
                widths.append(cur)
            if level != levels - 1:
                self.down.append(Downsample(cur))
                widths.append(cur)

        self.mid = nn.ModuleList(
            [ResBlock(cur, cur, **block)]
            + ([SelfAttention2d(cur, cfg.attn_head_dim, cfg.groups)] if cfg.mid_attention else [])
            + [ResBlock(cur, cur, **block)]
        )

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for _ in range(blocks[level] + 1):
                res = ResBlock(cur + widths.pop(), ch * mult, **block)
                self.up.append(self._stage(res, level in attn, cfg))
                cur = ch * mult
            if level != 0:
                self.up.append(Upsample(cur))

        self.norm_out = nn.GroupNorm(num_groups(cur, cfg.groups), cur)
        self.conv_out = nn.Conv2d(cur, (cfg.out_channels or cfg.in_channels) * p2, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        if cfg.channels_last:
            self.to(memory_format=torch.channels_last)

    @staticmethod
    def _stage(res: ResBlock, attention: bool, cfg: UNetConfig) -> nn.ModuleList:
        width = res.conv2.out_channels
        attn = [SelfAttention2d(width, cfg.attn_head_dim, cfg.groups)] if attention else []
        return nn.ModuleList([res, *attn])

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            raise UserError(f"UNet expects (B, {cfg.in_channels}, H, W), got {tuple(x.shape)}")
        batch = x.shape[0]
        check_labels(class_labels, cfg.num_classes, batch)
        emb = embed_conditions(self.noise_emb, self.class_emb, c_noise, class_labels, batch)

        p = cfg.patch_size
        if p > 1:
            if x.shape[-2] % p or x.shape[-1] % p:
                raise UserError(f"patch_size={p} needs image sides divisible by {p}, got {tuple(x.shape[-2:])}")
            x = F.pixel_unshuffle(x, p)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.conv_in(x)
        skips = [h]
        for stage in self.down:
            h = self._run(stage, h, emb)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for stage in self.up:
            if isinstance(stage, Upsample):
                h = stage(h, skips[-1].shape[-2:])
            else:
                h = self._run(stage, torch.cat([h, skips.pop()], dim=1), emb)
        out = self.conv_out(norm_silu(self.norm_out, h))
        return (F.pixel_shuffle(out, p) if p > 1 else out).contiguous()

    @staticmethod
    def _run(stage: nn.ModuleList | Downsample, h: Tensor, emb: Tensor) -> Tensor:
        if isinstance(stage, Downsample):
            return stage(h)
        h = stage[0](h, emb)
        for attn in stage[1:]:
            h = attn(h)
        return h
