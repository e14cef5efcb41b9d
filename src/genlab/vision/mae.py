"""Masked autoencoder (He et al. 2022): the encoder sees only the visible patches, a light decoder
reconstructs the masked ones.

Masking follows the reference: per-sample noise, ``ids_shuffle = argsort(noise)``, keep the first
``(1 - mask_ratio) L`` patches, ``ids_restore = argsort(ids_shuffle)`` puts the decoder's tokens
back in order. The encoder is a ViT with fixed 2-D sin-cos position embeddings whose parameter
names are the ViT's (``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``, ``norm``), so
:meth:`MAE.encoder_state_dict` is a timm / genlab ViT state dict. The decoder (``decoder_embed``,
``mask_token``, ``decoder_pos_embed``, ``decoder_blocks``, ``decoder_norm``, ``decoder_pred``) is
narrower and shallower. The loss is the mean squared error on masked patches only, against
per-patch normalised pixels when ``norm_pix_loss``. AdamW with betas (0.9, 0.95) and weight decay
0.05 (the paper's pretraining settings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genlab.errors import UserError
from genlab.model import Context, Model, ModelConfig, Phase, register_model
from genlab.nn.patches import PatchEmbed, check_patch_grid, patchify, unpatchify
from genlab.nn.pos_embed import sincos_2d
from genlab.nn.random import Source, rand
from genlab.nn.transformer import Block, init_transformer_weights, layer_norm

NORM_PIX_EPS = 1e-6


@dataclass
class MAEConfig(ModelConfig):
    data_shape: tuple[int, ...] = (1, 28, 28)
    patch_size: int = 4
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    decoder_embed_dim: int = 96  # a light decoder: 8% of the encoder's per-token FLOPs, as MAE's ViT-L default
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True

    def validate(self) -> None:
        super().validate()
        if len(self.data_shape) != 3:
            raise UserError(f"data_shape={self.data_shape}: MAE takes (C, H, W) images")
        grid = check_patch_grid(tuple(self.data_shape[1:]), self.patch_size)
        if not 0 < self.mask_ratio < 1:
            raise UserError(f"mask_ratio={self.mask_ratio}: must be in (0, 1), e.g. 0.75")
        for name in ("embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth", "decoder_num_heads"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 1")
        if not self.mlp_ratio > 0:
            raise UserError(f"mlp_ratio={self.mlp_ratio}: must be > 0")
        for dim, heads in ((self.embed_dim, "num_heads"), (self.decoder_embed_dim, "decoder_num_heads")):
            if dim % 4 or dim % getattr(self, heads):
                raise UserError(f"width {dim} must be divisible by 4 (sin-cos embeddings) and by {heads}="
                                f"{getattr(self, heads)}")
        if int(grid[0] * grid[1] * (1 - self.mask_ratio)) < 1:
            raise UserError(f"mask_ratio={self.mask_ratio} leaves no visible patch of {grid[0] * grid[1]}")


def random_masking(n: int, length: int, keep: int, source: Source, device) -> tuple[Tensor, Tensor, Tensor]:
    """MAE's per-sample random masking: ``ids_keep`` (n, keep), the binary ``mask`` (n, length;
    1 = masked) in the original order, and ``ids_restore`` (n, length), the inverse permutation."""
    noise = rand((n, length), source, device)
    ids_shuffle = noise.argsort(dim=1)  # ascending: small noise is kept
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = torch.ones(n, length, device=device)
    mask[:, :keep] = 0
    return ids_shuffle[:, :keep], mask.gather(1, ids_restore), ids_restore


@register_model("mae", help="masked autoencoder (He et al. 2022): ViT encoder on visible patches")
class MAE(Model):
    """ViT encoder on visible patches + light transformer decoder predicting the masked pixels."""

    config_class = MAEConfig

    def __init__(self, config: MAEConfig) -> None:
        super().__init__(config)
        c, h, w = config.data_shape
        d, dd = config.embed_dim, config.decoder_embed_dim
        self.patch_embed = PatchEmbed((h, w), config.patch_size, c, d)
        grid = self.patch_embed.grid_size
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos_embed = nn.Parameter(sincos_2d(d, grid, 1)[None], requires_grad=False)
        self.blocks = nn.Sequential(*[Block(d, config.num_heads, config.mlp_ratio, config.qkv_bias) for _ in range(config.depth)])
        self.norm = layer_norm(d)
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dd) * 0.02)
        self.decoder_pos_embed = nn.Parameter(sincos_2d(dd, grid, 1)[None], requires_grad=False)
        self.decoder_blocks = nn.Sequential(*[Block(dd, config.decoder_num_heads, config.mlp_ratio, config.qkv_bias)
                                              for _ in range(config.decoder_depth)])
        self.decoder_norm = layer_norm(dd)
        self.decoder_pred = nn.Linear(dd, config.patch_size**2 * c)
        init_transformer_weights(self.blocks)
        init_transformer_weights(self.decoder_blocks)
        for lin in (self.decoder_embed, self.decoder_pred):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    @property
    def num_patches(self) -> int:
        return self.patch_embed.num_patches

    def num_visible(self) -> int:
        return int(self.num_patches * (1 - self.config.mask_ratio))

    def phases(self) -> list[Phase]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [Phase("main", params, optimizer="adamw", betas=(0.9, 0.95), weight_decay=0.05)]

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "mask_token", "pos_embed", "decoder_pos_embed"}

    def load_warm_start(self, state: dict[str, Tensor], where: str, source: Model | None = None) -> list[str]:
        """As :meth:`Model.load_warm_start`, but the fixed sin-cos position embeddings are this model's
        own (they follow its grid), so pretraining continues at another image size too."""
        fixed = {k: v.detach() for k, v in self.state_dict().items() if k in ("pos_embed", "decoder_pos_embed")}
        return super().load_warm_start({**state, **fixed}, where, source)

    # -- the two halves ------------------------------------------------------------------------
    def forward_encoder(self, x: Tensor, ids_keep: Tensor | None = None) -> Tensor:
        """Tokens (B, 1 + kept, D) after the final norm; ``ids_keep`` None = all patches."""
        if ids_keep is None:
            tokens = self.patch_embed(x) + self.pos_embed[:, 1:]
        else:  # embed only the visible patches
            tokens = self.patch_embed.forward_subset(x, ids_keep) + self.pos_embed[0, 1:][ids_keep]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(len(x), -1, -1)
        return self.norm(self.blocks(torch.cat([cls, tokens], dim=1)))

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Predicted patches (B, L, p*p*C) for every position, from the visible tokens."""
        x = self.decoder_embed(latent)
        b, length = ids_restore.shape
        masked = self.mask_token.expand(b, length + 1 - x.shape[1], -1).to(x.dtype)
        seq = torch.cat([x[:, 1:], masked], dim=1)
        seq = seq.gather(1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))  # unshuffle
        seq = torch.cat([x[:, :1], seq], dim=1) + self.decoder_pos_embed
        return self.decoder_pred(self.decoder_norm(self.decoder_blocks(seq)))[:, 1:]

    def target(self, x: Tensor) -> Tensor:
        """Pixels per patch, normalised per patch when ``norm_pix_loss``."""
        t = patchify(x, self.config.patch_size)
        if self.config.norm_pix_loss:
            mean, var = t.mean(dim=-1, keepdim=True), t.var(dim=-1, keepdim=True)
            t = (t - mean) / (var + NORM_PIX_EPS).sqrt()
        return t

    def masked_prediction(self, x: Tensor, source: Source = None) -> tuple[Tensor, Tensor]:
        """One random masking of ``x``: predictions (B, L, p*p*C) and the mask (B, L; 1 = masked)."""
        ids_keep, mask, ids_restore = random_masking(len(x), self.num_patches, self.num_visible(), source, x.device)
        return self.forward_decoder(self.forward_encoder(x, ids_keep), ids_restore), mask

    def loss(self, batch: dict[str, Tensor], phase: str, ctx: Context = Context()) -> dict[str, Tensor]:
        x = batch["x"]
        pred, mask = self.masked_prediction(x, ctx.random)
        per_patch = (pred.float() - self.target(x)).pow(2).mean(dim=-1)
        loss = (per_patch * mask).sum() / mask.sum()  # mean over masked patches only
        return {"loss": loss, "visible_loss": (per_patch * (1 - mask)).sum() / (1 - mask).sum().clamp(min=1)}

    @torch.no_grad()
    def eval_step(self, batch: dict[str, Tensor], ctx: Context) -> dict[str, Tensor]:
        return {"loss": self.loss(batch, "main", ctx)["loss"]}

    # -- what users get ------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Average of the patch tokens of the whole (unmasked) image after the encoder's norm."""
        return self.forward_encoder(x)[:, 1:].mean(dim=1).float()

    @torch.no_grad()
    def reconstruction_panels(self, x: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """[original, masked (hidden patches grey), reconstruction with the visible patches pasted in].

        With ``norm_pix_loss`` the predicted patches are mapped back to pixels with each original
        patch's mean and std, as the reference's visualisation does."""
        p, c = self.config.patch_size, self.config.data_shape[0]
        pred, mask = self.masked_prediction(x, generator)
        pred = pred.float()
        if self.config.norm_pix_loss:
            t = patchify(x, p)
            pred = pred * (t.var(dim=-1, keepdim=True) + NORM_PIX_EPS).sqrt() + t.mean(dim=-1, keepdim=True)
        grid = self.patch_embed.grid_size
        pixel_mask = unpatchify(mask[..., None].expand(-1, -1, p * p * c), p, c, grid)
        recon = unpatchify(pred, p, c, grid)
        return [x, x * (1 - pixel_mask), x * (1 - pixel_mask) + recon.clamp(-1, 1) * pixel_mask]

    def encoder_state_dict(self) -> dict[str, Tensor]:
        """The encoder as a ViT (timm ``VisionTransformer``) state dict, without a head."""
        keep = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k.startswith(keep)}

    def to_vit(self, num_classes: int = 0, global_pool: str = "avg", **options) -> "Model":
        """A genlab ``vit`` initialised from this encoder (for fine-tuning): same widths, learned
        position embeddings starting from the sin-cos ones; with average pooling the encoder's final
        norm initialises ``fc_norm`` (timm's rule puts the norm after pooling)."""
        from genlab.model import create

        cfg = self.config
        vit = create("vit", data_shape=cfg.data_shape, num_classes=num_classes, patch_size=cfg.patch_size,
                     embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
                     qkv_bias=cfg.qkv_bias,
                     global_pool=global_pool, bins=cfg.bins, **options)
        state = self.encoder_state_dict()
        if global_pool == "avg":
            state = {("fc_" + k if k.startswith("norm.") else k): v for k, v in state.items()}
        missing, unexpected = vit.load_state_dict(state, strict=False)
        assert not unexpected and all(k.startswith("head.") for k in missing), (missing, unexpected)
        return vit
