"""``genlab export RUN --out DIR``: a vit or mae run's network as a plain ViT, for genlab and for timm.

An MAE's encoder becomes a ``vit`` without a head (``MAE.to_vit``: average pooling by default,
the encoder's final norm as ``fc_norm``); a vit run is exported as trained, head included. DIR is
a saved genlab model (``config.json`` + ``model.safetensors``: ``genlab eval DIR --probe knn
--data ...`` works on it) plus ``timm.safetensors``, the same tensors under timm's keys with timm's
``VisionTransformer`` keyword arguments as JSON in its metadata (``config``), so that
``VisionTransformer(**config).load_state_dict(tensors)`` loads it unchanged, and ``pos_embed``
(learn | sincos: timm learns every position embedding; ``genlab train vit --init`` keeps a fixed
one fixed). Written atomically: DIR appears whole or not at all.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import save_file

from genlab.atomic import fsync_file, recover_dir, replace_dir, temp_dir_for
from genlab.errors import UserError
from genlab.model import Model
from genlab.vision.mae import MAE
from genlab.vision.vit import ViT, timm_kwargs
from genlab.weights import unique_state_dict

POOLS = ("avg", "token")


def as_vit(model: Model, global_pool: str | None = None) -> ViT:
    """The ViT a vit or mae model exports as; ``global_pool`` (avg | token) applies to an MAE's encoder."""
    if global_pool is not None and global_pool not in POOLS:
        raise UserError(f"--global-pool {global_pool!r}: choose avg or token")
    if isinstance(model, MAE):
        return model.to_vit(num_classes=0, global_pool=global_pool or "avg").eval()
    if isinstance(model, ViT):
        if global_pool not in (None, model.config.global_pool):
            raise UserError(f"--global-pool applies to an mae's encoder; this vit pools by {model.config.global_pool}")
        return model.eval()
    raise UserError(f"export makes a ViT of a vit or mae run; {model.name!r} is a {type(model).__name__}")


def export_vit(model: Model, out: str | Path, global_pool: str | None = None) -> ViT:
    """Write ``model`` as a ViT to folder ``out`` (see the module docstring); returns that ViT."""
    vit, out = as_vit(model, global_pool), Path(out)
    recover_dir(out)
    tmp = temp_dir_for(out)
    try:
        vit.save_pretrained(tmp)
        meta = {"config": json.dumps(timm_kwargs(vit.config)), "pos_embed": vit.config.pos_embed,
                "source": f"genlab {model.name} exported as a ViT"}
        save_file(unique_state_dict(vit), str(tmp / "timm.safetensors"), meta)
        fsync_file(tmp / "timm.safetensors")
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return vit
