"""Vision Transformer (Dosovitskiy et al. 2021) that loads timm ``VisionTransformer`` weights unchanged.

Conv patch embedding, optional class token, learned or fixed 2-D sin-cos position embeddings,
pre-norm blocks (``genlab.nn.transformer``), class-token or average pooling. Module names,
LayerNorm eps (1e-6), exact GELU and the norm / fc_norm rule follow timm, so
``vit.load_state_dict(timm_model.state_dict())`` works and gives the same outputs (tested against
a timm fixture to 1e-5). ``ViT(img_size=28, patch_size=4, in_chans=1, ...)`` takes timm's keyword
names; the registry builds it from a :class:`ViTConfig`. Loading weights made for another image
size resamples the position embedding (bicubic, any grid).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from genlab.config import apply_overrides
from genlab.errors import UserError
from genlab.model import Model, register_model
from genlab.nn.patches import PatchEmbed, check_patch_grid
from genlab.nn.pos_embed import resize_pos_embed, sincos_2d
from genlab.nn.transformer import Block, init_transformer_weights, layer_norm
from genlab.vision.classifier import Classifier, ClassifierConfig
from genlab.weights import load_state

TIMM_DROPOUT = ("drop_rate", "pos_drop_rate", "patch_drop_rate", "proj_drop_rate", "attn_drop_rate",
                "drop_path_rate")  # timm's training-time regularisers: no tensors, read past in a file's config
TIMM_NAMES = ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads",
              "mlp_ratio", "global_pool", "class_token", "qkv_bias")


@dataclass
class ViTConfig(ClassifierConfig):
    data_shape: tuple[int, ...] = (1, 28, 28)
    patch_size: int = 4
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    global_pool: Literal["token", "avg"] = "token"
    pos_embed: Literal["learn", "sincos"] = "learn"  # sincos: fixed (not trained), as MAE's encoder

    def validate(self) -> None:
        super().validate()
        check_patch_grid(tuple(self.data_shape[1:]), self.patch_size)
        for name in ("embed_dim", "depth", "num_heads"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.embed_dim % self.num_heads:
            raise UserError(f"embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}")
        if not self.mlp_ratio > 0:
            raise UserError(f"mlp_ratio={self.mlp_ratio}: must be > 0")
        if self.global_pool == "token" and not self.class_token:
            raise UserError("global_pool=token needs class_token=true; use global_pool=avg without a class token")
        if self.pos_embed == "sincos" and self.embed_dim % 4:
            raise UserError(f"pos_embed=sincos needs embed_dim divisible by 4, got {self.embed_dim}")


def config_from_timm(**kw: Any) -> ViTConfig:
    """A :class:`ViTConfig` from timm's ``VisionTransformer`` keyword arguments."""
    unknown = sorted(set(kw) - set(TIMM_NAMES))
    if unknown:
        raise UserError(f"unknown ViT argument(s) {', '.join(unknown)}; genlab's ViT takes {', '.join(TIMM_NAMES)}")
    size = kw.pop("img_size", 224)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    cfg = replace(ViTConfig(), data_shape=(kw.pop("in_chans", 3), h, w), patch_size=kw.pop("patch_size", 16),
                  num_classes=kw.pop("num_classes", 1000), embed_dim=768, depth=12, num_heads=12)
    if kw.get("global_pool") == "":
        raise UserError("global_pool='' (no pooling) is not supported; use 'token' or 'avg'")
    cfg = replace(cfg, **kw)
    cfg.validate()
    return cfg


def timm_kwargs(config: ViTConfig) -> dict[str, Any]:
    """timm ``VisionTransformer`` keyword arguments for ``config`` (the inverse of :func:`config_from_timm`).
    A fixed sin-cos position embedding becomes timm's learned one holding the same values."""
    c, h, w = config.data_shape
    return dict(img_size=h if h == w else [h, w], patch_size=config.patch_size, in_chans=c,
                num_classes=config.num_classes, embed_dim=config.embed_dim, depth=config.depth,
                num_heads=config.num_heads, mlp_ratio=config.mlp_ratio, global_pool=config.global_pool,
                class_token=config.class_token, qkv_bias=config.qkv_bias)


@register_model("vit", help="Vision Transformer classifier (timm-compatible weights); top-1 accuracy")
class ViT(Classifier):
    """ViT backbone + linear head; ``forward_features`` returns all tokens after the final norm."""

    config_class = ViTConfig

    def __init__(self, config: ViTConfig | None = None, **timm_kwargs: Any) -> None:
        if config is None:
            config = config_from_timm(**timm_kwargs)
        elif timm_kwargs:
            raise UserError("give ViT either a config or timm keyword arguments, not both")
        super().__init__(config)
        c, h, w = config.data_shape
        d = config.embed_dim
        self.patch_embed = PatchEmbed((h, w), config.patch_size, c, d)
        self.num_prefix_tokens = int(config.class_token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if config.class_token else None
        n = self.patch_embed.num_patches + self.num_prefix_tokens
        if config.pos_embed == "sincos":
            fixed = sincos_2d(d, self.patch_embed.grid_size, self.num_prefix_tokens)[None]
            self.pos_embed = nn.Parameter(fixed, requires_grad=False)
        else:
            self.pos_embed = nn.Parameter(torch.randn(1, n, d) * 0.02)
        self.blocks = nn.Sequential(*[Block(d, config.num_heads, config.mlp_ratio, config.qkv_bias)
                                      for _ in range(config.depth)])
        use_fc_norm = config.global_pool == "avg"  # timm: average pooling normalises after pooling
        self.norm = nn.Identity() if use_fc_norm else layer_norm(d)
        self.fc_norm = layer_norm(d) if use_fc_norm else nn.Identity()
        self.head = nn.Linear(d, config.num_classes) if config.num_classes > 0 else nn.Identity()
        init_transformer_weights(self.blocks)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        if isinstance(self.head, nn.Linear):  # timm: truncated normal, std 0.02
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def embed(self, x: Tensor) -> Tensor:
        """Patch tokens with the class token in front and position embeddings added (B, N, D)."""
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        return x + self.pos_embed

    def forward_features(self, x: Tensor) -> Tensor:
        return self.norm(self.blocks(self.embed(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits. With class-token pooling the last block runs for the class token only (its keys and
        values still see every token): the same logits and gradients as
        ``forward_head(forward_features(x))`` without the other tokens' attention output and MLP."""
        if self.config.global_pool != "token":
            return super().forward(x)
        tokens = self.blocks[:-1](self.embed(x))
        return self.forward_head(self.norm(self.blocks[-1](tokens, first=1)))

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        if self.config.global_pool == "avg":
            pooled = features[:, self.num_prefix_tokens:].mean(dim=1)
        else:
            pooled = features[:, 0]
        pooled = self.fc_norm(pooled)
        return pooled if pre_logits else self.head(pooled)

    def num_layers(self) -> int:
        return self.config.depth + 1

    def layer_id(self, name: str) -> int:
        """MAE's ``get_layer_id_for_vit``: embeddings 0, block i is i + 1, the rest (norms, head) last."""
        if name.split(".")[0] in ("cls_token", "pos_embed", "patch_embed"):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers()

    @classmethod
    def warm_start_source(cls, source: Model) -> Model:
        """A ViT run starts from a ViT, or from an MAE's encoder pooled by average, as MAE fine-tunes."""
        if not isinstance(source, ViT) and hasattr(source, "to_vit"):
            return source.to_vit(num_classes=0, global_pool="avg")
        return super().warm_start_source(source)

    @classmethod
    def weights_file_source(cls, state: dict[str, Tensor], metadata: dict[str, str]) -> Model | None:
        """A file with timm's ``VisionTransformer`` keyword arguments as JSON in its metadata
        (``config``, as ``genlab export`` writes it) is the ViT they describe: its architecture and
        patch grid (a non-square one too) come with the weights. timm has no fixed sin-cos position
        embedding; ``genlab export`` names it in ``pos_embed`` (learn | sincos) beside ``config``."""
        if "config" not in metadata:
            return None
        try:
            kwargs = json.loads(metadata["config"])
        except json.JSONDecodeError as e:
            raise UserError(f"its metadata's config is not JSON ({e})") from None
        if not isinstance(kwargs, dict):
            raise UserError(f"its metadata's config is {type(kwargs).__name__}, not timm's keyword arguments")
        kwargs = {k: v for k, v in kwargs.items() if k not in TIMM_DROPOUT}
        try:
            model = cls(config_from_timm(**kwargs))
        except (TypeError, ValueError) as e:
            raise UserError(f"its metadata's config {metadata['config']} is not a ViT's ({e})") from None
        if metadata.get("pos_embed", model.config.pos_embed) != model.config.pos_embed:
            try:
                model = cls(apply_overrides(model.config, {"pos_embed": metadata["pos_embed"]}))
            except UserError as e:
                raise UserError(f"its metadata's {e}") from None
        load_state(model, state, "its tensors against its metadata's config")
        return model

    def load_warm_start(self, state: dict[str, Tensor], where: str, source: Model | None = None) -> list[str]:
        """As :meth:`Classifier.load_warm_start`, the position embedding resampled to this model's
        grid from the source's (square when the source is a file of weights only; a fixed sin-cos one
        is kept), and the final norm moved between ``norm`` and ``fc_norm`` when the source pooled
        the other way."""
        state = dict(state)
        mine, other = ("fc_norm.", "norm.") if self.config.global_pool == "avg" else ("norm.", "fc_norm.")
        if not any(k.startswith(mine) for k in state):  # pooled the other way: the final norm moves (timm's rule)
            state = {(mine + k[len(other):] if k.startswith(other) else k): v for k, v in state.items()}
        if self.config.pos_embed == "sincos":  # fixed by this model's grid: keep it exact
            state["pos_embed"] = self.pos_embed.detach()
        grid = source.patch_embed.grid_size if isinstance(source, ViT) else None
        try:
            state = self._resized(state, grid)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
        return super().load_warm_start(state, where, source)

    def _resized(self, state: dict[str, Tensor], grid: tuple[int, int] | None) -> dict[str, Tensor]:
        """``state`` with its ``pos_embed`` resampled to this model's grid from ``grid`` where the shapes differ."""
        pos = state.get("pos_embed")
        if pos is not None and pos.shape != self.pos_embed.shape:
            mismatch = f"pos_embed: checkpoint shape {tuple(pos.shape)} vs model {tuple(self.pos_embed.shape)}"
            if pos.shape[-1] != self.pos_embed.shape[-1]:
                raise UserError(f"{mismatch} (different embed_dim)")
            try:
                state["pos_embed"] = resize_pos_embed(pos, self.patch_embed.grid_size, self.num_prefix_tokens, grid)
            except UserError as e:  # the grid does not fit the checkpoint: say which tensor and shapes
                raise UserError(f"{mismatch}: {e}") from None
        return state

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True, assign: bool = False,
                        grid: tuple[int, int] | None = None):
        """timm / genlab / MAE-encoder state dicts; the position embedding is resampled to this
        model's grid from the checkpoint's ``grid`` of patches (rows, columns; needed only where it
        is not square); any other shape mismatch is an error naming the key and both shapes."""
        state = dict(state_dict)
        if strict and ("cls_token" in state) != (self.cls_token is not None):
            raise UserError(f"cls_token: the checkpoint {'has' if 'cls_token' in state else 'has no'} class token, "
                            f"the model was built with class_token={self.config.class_token}")
        state = self._resized(state, grid)
        own = self.state_dict()
        for key, value in state.items():
            if key in own and tuple(own[key].shape) != tuple(value.shape):
                raise UserError(f"{key}: checkpoint shape {tuple(value.shape)} does not match the model's "
                                f"{tuple(own[key].shape)}")
        return super().load_state_dict(state, strict=strict, assign=assign)
