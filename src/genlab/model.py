"""The common model interface every genlab family implements (see docs/architecture.md).

A model is an ``nn.Module`` built from a config dataclass. It owns its mathematics only:
``phases()`` says which parameters each optimizer updates and how (:class:`Phase`),
``loss(batch, phase, ctx)`` returns the objective, and ``sample`` / ``log_prob`` / ``encode`` /
``encode_text`` / ``reconstruct`` expose what the family can do (declared by overriding them).
Optional hooks cover what families need from training without touching the trainer:
``init_from_data`` (ActNorm, k-means codebooks), ``after_update`` (weight clipping, clamps, code
restarts), ``ema_modules`` (a GAN's generator), ``augment`` (seeded batch transforms) and
``eval_step`` (the family's own test metrics). ``warm_start_source`` / ``load_warm_start`` say
what a new run may start from and how those weights go in (``genlab train --init``). The trainer
owns every mechanic.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Union

import torch
from torch import Tensor, nn

from genlab.atomic import read_dir, recover_dir, replace_dir, temp_dir_for, write_json
from genlab.config import apply_overrides, to_dict
from genlab.errors import UserError
from genlab.nn.random import RowRandom
from genlab.registry import MODELS
from genlab.weights import load_state, load_weights, save_weights

CAPABILITIES = ("sample", "log_prob", "encode", "encode_text", "reconstruct")
OPTIMIZERS = ("adamw", "adam", "rmsprop", "sgd")


@dataclass
class Phase:
    """One optimizer's update: ``steps`` consecutive updates of ``parameters`` per round.

    Optimizer settings left as None come from the run's ``TrainConfig`` (``optimizer``, ``lr``,
    ``beta1``/``beta2``, ``momentum``, ``weight_decay``, ``grad_clip``); ``lr`` is absolute, or
    ``lr_scale`` times the run's ``lr``. Weight decay skips norms, biases (every tensor with
    ndim <= 1) and the names in ``Model.no_weight_decay()``, as timm does. ``param_lr_scale``
    maps a parameter's name to a multiplier of the phase's lr (layer-wise lr decay). A user
    overrides any of these with ``<phase name>.<field>=value``.
    """

    name: str
    parameters: list[nn.Parameter]
    steps: int = 1
    optimizer: str | None = None  # adamw | adam | rmsprop | sgd
    lr: float | None = None
    lr_scale: float = 1.0
    betas: tuple[float, float] | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    param_lr_scale: Callable[[str], float] | None = None

    def validate(self) -> None:
        where = f"phase {self.name!r}"
        if self.steps < 1:
            raise UserError(f"{where}: steps={self.steps} must be >= 1")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise UserError(f"{where}: optimizer={self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if (self.lr is not None and self.lr <= 0) or self.lr_scale <= 0:
            raise UserError(f"{where}: lr={self.lr}, lr_scale={self.lr_scale}: must be > 0")
        if self.betas is not None and not all(0 <= b < 1 for b in self.betas):
            raise UserError(f"{where}: betas={self.betas}: each must be in [0, 1)")
        for name in ("momentum", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"{where}: {name}={value} must be >= 0")


# Phase fields a user may set as ``<phase>.<field>=value``.
PHASE_OPTIONS = ("steps", "optimizer", "lr", "lr_scale", "betas", "momentum", "weight_decay", "grad_clip")


@dataclass(frozen=True)
class Context:
    """What one update's loss may use besides the batch: training progress and randomness.

    ``step`` counts the rounds done before this one, ``fraction`` the share of training done
    (by steps or by time budget), ``repeat`` which of the phase's ``steps`` updates this is.
    ``random`` is where the loss draws its noise (``genlab.nn.random``): the trainer passes a
    :class:`~genlab.nn.random.RowRandom`, so that noise does not depend on how the batch is split
    across processes; None (direct calls) means torch's global RNG.
    """

    step: int = 0
    fraction: float = 0.0
    repeat: int = 0
    random: Union[None, torch.Generator, RowRandom] = None


@dataclass
class ModelConfig:
    """Fields every model config has; :func:`data_fields` fills them from a data set.

    ``data_shape`` is one example's shape, (C, H, W) for images or (D,) for vectors;
    ``num_classes`` > 0 enables class conditioning where the family supports it; ``bins`` is the
    number of quantization levels of the data (256 for 8-bit images, 0 for continuous data) and
    makes likelihoods dequantized and reported in bits/dim of the discrete data.
    """

    data_shape: tuple[int, ...] = (2,)
    num_classes: int = 0
    bins: int = 0

    def validate(self) -> None:
        if not self.data_shape or any(d < 1 for d in self.data_shape):
            raise UserError(f"data_shape={self.data_shape}: every dimension must be >= 1")
        if self.num_classes < 0:
            raise UserError(f"num_classes={self.num_classes}: must be >= 0")
        if self.bins < 0 or self.bins == 1:
            raise UserError(f"bins={self.bins}: use 0 for continuous data or >= 2 levels")


def data_fields(data: Any) -> dict[str, Any]:
    """The model fields a data set determines: ``data_shape``, ``num_classes``, ``bins``.

    ``data`` is a ``Dataset`` or ``Splits`` (its training split). The CLI and
    ``create(name, data=...)`` both use this, so a model is the same from Python and from the CLI.
    """
    train = getattr(data, "train", data)
    return {"data_shape": tuple(train.shape), "num_classes": train.num_classes, "bins": train.bins}


class Model(nn.Module):
    """Base class of every model, generative or not: config, capabilities, hooks, persistence."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.name: str | None = registered_name(type(self))

    # -- what a family implements -------------------------------------------------------------
    def phases(self) -> list[Phase]:
        return [Phase("main", [p for p in self.parameters() if p.requires_grad])]

    def loss(self, batch: dict[str, Tensor], phase: str, ctx: Context = Context()) -> dict[str, Tensor]:
        """``{"loss": scalar to minimise, **other scalars to log}`` for one update of ``phase``."""
        raise NotImplementedError

    def sample(self, n: int, *, generator: torch.Generator | None = None, **kw: Any) -> Tensor:
        raise UserError(f"model {self.name!r} cannot sample")

    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """log p(x) per example in nats (of the discrete data when ``config.bins`` > 0)."""
        raise UserError(f"model {self.name!r} has no likelihood")

    def encode(self, x: Tensor) -> Tensor:
        raise UserError(f"model {self.name!r} has no encoder")

    def encode_text(self, tokens: Tensor) -> Tensor:
        raise UserError(f"model {self.name!r} has no text encoder")

    def reconstruct(self, x: Tensor) -> Tensor:
        raise UserError(f"model {self.name!r} does not reconstruct its input")

    def reconstruction_panels(self, x: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """Image batches shown side by side, one column each, in a run's ``reconstructions.png``:
        ``[x, reconstruct(x)]`` where the family reconstructs (MAE adds the masked input); [] otherwise."""
        return [x, self.reconstruct(x)] if self.can("reconstruct") else []

    def sample_defaults(self) -> dict[str, Any]:
        """The value each sampling option of :meth:`sample` takes when it is not given, where the
        family has one: an option given at that value draws the same samples (``genlab eval``
        caches them under one key)."""
        return {}

    def sample_classes(self, n: int) -> Tensor | None:
        """The class each of ``n`` samples is drawn for when none are given; None: unconditional.
        Conditional families override it (and accept ``class_labels=`` in ``sample``)."""
        return None

    def class_labels_for(self, n: int, class_labels: Tensor | None) -> Tensor | None:
        """The labels ``sample`` draws ``n`` samples for: ``class_labels`` checked (n integers in
        0..K-1; none for an unconditional model), or :meth:`sample_classes` when not given."""
        k = self.config.num_classes
        if k == 0:
            if class_labels is not None:
                raise UserError(f"model {self.name!r} is unconditional: it takes no class labels")
            return None
        labels = self.sample_classes(n) if class_labels is None else torch.as_tensor(class_labels).long().reshape(-1)
        if len(labels) != n:
            raise UserError(f"got {len(labels)} class labels for {n} samples")
        if labels.min() < 0 or labels.max() >= k:
            raise UserError(f"class labels must be in 0..{k - 1}, got {labels.min().item()}..{labels.max().item()}")
        return labels.to(self.device)

    # -- optional hooks -------------------------------------------------------------------------
    def init_from_data(self, batch: dict[str, Tensor]) -> None:
        """Called once before training (not on resume) with a training batch, before the EMA copy."""

    def after_update(self, phase: str, ctx: Context) -> None:
        """Called after every applied optimizer step of ``phase`` (skipped steps are not)."""

    def ema_modules(self) -> list[nn.Module]:
        """The modules whose parameters the EMA averages; the rest of the EMA copy follows the
        trained weights. Default: the whole model."""
        return [self]

    def no_weight_decay(self) -> set[str]:
        """Parameter names (or their last component) exempt from weight decay, e.g. ``pos_embed``."""
        return set()

    def augment(self, batch: dict[str, Tensor], random: RowRandom) -> dict[str, Tensor]:
        """Training-time batch transforms drawn from ``random`` (saved with checkpoints). Identity."""
        return batch

    def eval_step(self, batch: dict[str, Tensor], ctx: Context) -> dict[str, Tensor]:
        """Test metrics of one batch: tensors of shape (B,) per example or scalar means of it.

        Default: every phase's loss terms (prefixed ``phase/`` when there are several) and, where
        the family has one, ``log_prob`` (from ``ctx.random`` when it is a generator).
        """
        names = [p.name for p in self.phases()]
        out: dict[str, Tensor] = {}
        for name in names:
            prefix = f"{name}/" if len(names) > 1 else ""
            out.update({prefix + k: v for k, v in self.loss(batch, name, ctx).items()})
        if self.can("log_prob"):
            g = ctx.random if isinstance(ctx.random, torch.Generator) else None
            out["log_prob"] = self.log_prob(batch["x"], generator=g)
        return out

    # -- warm start (genlab train --init) -------------------------------------------------------
    @classmethod
    def warm_start_source(cls, source: Model) -> Model:
        """The model of this class that a new run starts from, given a trained ``source``: ``source``
        itself when it is one. A class that can start from another family overrides this."""
        if not isinstance(source, cls):
            raise UserError(f"a {registered_name(cls) or cls.__name__} run cannot start from a {source.name!r} "
                            f"model ({type(source).__name__})")
        return source

    @classmethod
    def weights_file_source(cls, state: dict[str, Tensor], metadata: dict[str, str]) -> Model | None:
        """The model a bare ``.safetensors`` file describes through its ``metadata``, holding its
        ``state``, so a run from the file takes that model's options (its architecture: a file
        holds no training options); None (the default): the file holds weights only and the
        options come from the command line."""
        return None

    def load_warm_start(self, state: dict[str, Tensor], where: str, source: Model | None = None) -> list[str]:
        """Load a trained ``state`` (from ``source`` when known) before training; returns the names of
        the tensors that keep their initial values. Default: every tensor, shapes equal."""
        load_state(self, state, where)
        return []

    # -- capabilities ----------------------------------------------------------------------------
    @classmethod
    def capabilities(cls) -> list[str]:
        """What this class implements, of ``sample``, ``log_prob``, ``encode``, ``encode_text``, ``reconstruct``."""
        return [c for c in CAPABILITIES if getattr(cls, c) is not getattr(Model, c)]

    def can(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; one of {', '.join(CAPABILITIES)}")
        return capability in self.capabilities()

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    # -- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` atomically (temp folder + rename)."""
        if self.name is None or self.name not in MODELS:
            raise UserError(f"{type(self).__name__} is not registered: decorate it with @register_model(name) "
                            "so that from_pretrained can rebuild it")
        directory = Path(directory)
        recover_dir(directory)
        tmp = temp_dir_for(directory)
        try:
            write_json(tmp / "config.json", {"model": self.name, "config": to_dict(self.config)})
            save_weights(self, tmp / "model.safetensors")
            replace_dir(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> Model:
        """Rebuild a model saved by :meth:`save_pretrained`; it must be a ``cls`` (any family from ``Model``)."""
        directory = Path(directory)

        def read(source: Path) -> Model:  # reads only: a save in progress keeps its temporary folder
            cfg_path, weights = source / "config.json", source / "model.safetensors"
            if not cfg_path.is_file() or not weights.is_file():
                raise UserError(
                    f"{str(directory)!r} is not a saved model: it needs config.json and model.safetensors"
                )
            meta = json.loads(cfg_path.read_text())
            model = create(meta["model"], **meta["config"])
            if not isinstance(model, cls):
                raise UserError(f"{str(directory)!r} holds a {meta['model']!r} model ({type(model).__name__}), "
                                f"not a {cls.__name__}")
            load_weights(model, weights, map_location)
            return model

        return read_dir(directory, read).to(map_location)


def registered_name(cls: type) -> str | None:
    """The first name ``cls`` is registered under (None if it is not registered)."""
    for name in MODELS.names():
        if MODELS.get(name)[0] is cls:
            return name
    return None


def register_model(name: str, help: str = "", **defaults: Any):
    """Class decorator: register ``cls`` under ``name`` with config ``defaults``.

    One class may be registered under several names with different defaults (``ddpm`` and
    ``ddim`` share a class and differ only in the default sampler).
    """

    def deco(cls):
        MODELS.register(name, help or (cls.__doc__ or "").strip().splitlines()[0])((cls, defaults))
        return cls

    return deco


TOO_LARGE = re.compile(r"allocate memory|not enough memory|out of memory|size calculation overflowed")  # torch says so


def create(name: str, *, data: Any = None, **overrides: Any) -> Model:
    """Build a registered model: ``genlab.create("edm", data=splits, channels=32)``.

    ``data`` (a ``Dataset`` or ``Splits``) fills ``data_shape``, ``num_classes`` and ``bins``
    (:func:`data_fields`); explicit ``overrides`` win.
    """
    cls, defaults = MODELS.get(name)
    fields = data_fields(data) if data is not None else {}
    cfg = apply_overrides(cls.config_class(), {**defaults, **fields, **overrides})
    try:
        model = cls(cfg)
    except (RuntimeError, MemoryError) as e:  # torch's allocators refuse with a RuntimeError
        if not isinstance(e, (MemoryError, torch.cuda.OutOfMemoryError)) and not TOO_LARGE.search(str(e)):
            raise
        why = (str(e) or type(e).__name__).splitlines()[0][:200]
        raise UserError(f"model {name!r} with these options does not fit in memory ({why}); make it smaller") from None
    model.name = name
    return model


def config_fields(name: str) -> dict[str, Any]:
    """The resolved default config of a registered model, as a dict."""
    cls, defaults = MODELS.get(name)
    return dataclasses.asdict(apply_overrides(cls.config_class(), defaults))

