"""``genlab train MODEL --init SOURCE``: a new run that starts from trained weights.

SOURCE is a run folder, a saved model folder (``genlab export`` writes one) or a ``.safetensors``
file of the model's own keys (timm's, for a ViT). From a folder, or a file whose metadata
describes its model (:meth:`Model.weights_file_source`: timm's keyword arguments, for a ViT),
the new model also takes the source's options (:func:`inherited_options`); options given on the
command line win. The model's class says what it can start from (:meth:`Model.warm_start_source`:
a ViT from an MAE's encoder too) and how the weights go in (:meth:`Model.load_warm_start`: a
classifier's head starts fresh for another number of classes, a ViT's position embedding is
resampled to another image size).
The trainer's state (optimizer, schedule, step count) starts anew (``docs/training.md``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from torch import Tensor

from genlab.config import to_dict
from genlab.errors import UserError
from genlab.model import Model, ModelConfig, config_fields
from genlab.registry import MODELS
from genlab.train.saved import load_run_model
from genlab.weights import unique_state_dict

DATA_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))  # the data set's, never inherited


def read_init(path: str | Path, model_name: str) -> tuple[Model | None, dict[str, Tensor]]:
    """The model a ``model_name`` run starts from (None for a file of weights only) and its weights."""
    path = Path(path)
    cls = MODELS.get(model_name)[0]
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise UserError(f"--init {str(path)!r} does not exist")
        try:
            with safe_open(str(path), "pt") as f:  # one read: the tensors and the metadata
                state, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
        except (SafetensorError, OSError) as e:
            raise UserError(f"--init {str(path)!r} is not a readable safetensors file ({e})") from None
        try:
            trained = cls.weights_file_source(state, metadata)
        except UserError as e:
            raise UserError(f"--init {str(path)!r}: {e}") from None
        if trained is None:
            return None, state
    elif not path.exists():
        raise UserError(f"--init {str(path)!r} does not exist; pass a run folder, a saved model folder or a "
                        ".safetensors file")
    else:
        try:
            trained = load_run_model(path)
        except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:  # a damaged folder
            raise UserError(f"--init {str(path)!r}: its model cannot be read ({type(e).__name__}: {e})") from None
    source = cls.warm_start_source(trained)
    return source, unique_state_dict(source)


def inherited_options(source: Model | None, model_name: str) -> dict[str, Any]:
    """The options of ``source``'s config that a new ``model_name`` model takes: those its config has,
    but the data's and, for another registered name of the same class (ddpm -> ddim), those that
    name's preset sets (they are what the name means)."""
    if source is None:
        return {}
    own = config_fields(model_name)
    preset = set(MODELS.get(model_name)[1]) if source.name != model_name else set()
    return {k: v for k, v in to_dict(source.config).items() if k in own and k not in DATA_FIELDS | preset}
