"""Feature extractors: one protocol, content-hashed, for every metric that compares sample sets.

- :class:`NetFeatures`: a :class:`~genlab.metrics.feature_net.FeatureNet` made for the data
  (penultimate features, logits for classifier metrics). genlab ships two, trained by
  ``genlab features train`` on the built-in digits: ``digits28`` (any 1x28x28 grey data) and
  ``digits8`` (any 1x8x8 grey data). ``genlab features train --data PATH`` makes one for labelled
  user data and registers it for that data (:func:`register_for_data`).
- :class:`TorchScriptFeatures`: any TorchScript network the user passes (e.g. the Inception-v3
  TorchScript StyleGAN2-ADA's metrics use), with its input size and range; never downloaded.
- :class:`PixelFeatures`: raw values, the explicit fallback (and exact for 2-D toys).

``hash`` identifies an extractor's weights and settings; reference statistics are cached by it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import UserError
from genlab.metrics.feature_net import FeatureNet, load_feature_net

BUILTIN = {"digits28": (1, 28, 28), "digits8": (1, 8, 8)}
NET_FEATURES = "pooled-v1"  # which layer NetFeatures reads; part of its hash, so caches follow it


def genlab_home() -> Path:
    """Where genlab caches reference statistics and registered feature networks."""
    return Path(os.environ.get("GENLAB_HOME", Path.home() / ".cache" / "genlab"))


class FeatureExtractor(Protocol):
    name: str
    hash: str
    input_shape: tuple[int, ...] | None  # one example's shape; None accepts any

    def features(self, x: Tensor) -> Tensor: ...

    def logits(self, x: Tensor) -> Tensor | None: ...


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def check_input(extractor: FeatureExtractor, x: Tensor) -> None:
    shape = extractor.input_shape
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise UserError(f"feature extractor {extractor.name!r} expects examples of shape {tuple(shape)}, "
                        f"got {tuple(x.shape[1:])}; choose another with --features")


@dataclass
class NetFeatures:
    """A genlab feature network from a safetensors file."""

    name: str
    net: FeatureNet
    classes: list[str]
    hash: str
    info: dict

    @classmethod
    def load(cls, path: str | Path, name: str | None = None) -> NetFeatures:
        path = Path(path)
        net, classes, info = load_feature_net(path)
        return cls(name or path.stem, net, classes, f"{_file_hash(path)}-{NET_FEATURES}", info)

    @property
    def input_shape(self) -> tuple[int, ...]:
        c = self.net.config
        return (c.in_channels, c.size, c.size)

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        return self.net.features(x.float())

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        return self.net(x.float())


@dataclass
class TorchScriptFeatures:
    """A user's TorchScript network: images are resized to ``size``, grey ones repeated to 3
    channels when ``channels`` is 3, and mapped from [-1, 1] to ``value_range``."""

    name: str
    module: torch.jit.ScriptModule
    hash: str
    size: int | None = None
    channels: int | None = None
    value_range: tuple[float, float] = (-1.0, 1.0)
    input_shape: tuple[int, ...] | None = None

    @classmethod
    def load(cls, path: str | Path, size: int | None = None, channels: int | None = None,
             value_range: tuple[float, float] = (-1.0, 1.0)) -> TorchScriptFeatures:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"--features {str(path)!r}: no such file")
        try:
            module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as e:
            raise UserError(f"--features {str(path)!r} is not a TorchScript file ({type(e).__name__}); "
                            "save one with torch.jit.script(net).save(path)") from None
        key = f"{_file_hash(path)}-{size}-{channels}-{value_range}"
        return cls(path.stem, module, hashlib.sha256(key.encode()).hexdigest()[:16], size, channels, value_range)

    def _prepare(self, x: Tensor) -> Tensor:
        x = x.float()
        if self.channels == 3 and x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if self.size and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        lo, hi = self.value_range
        return (x + 1) / 2 * (hi - lo) + lo

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        out = self.module(self._prepare(x))
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.flatten(1).float()

    def logits(self, x: Tensor) -> None:
        return None


@dataclass
class PixelFeatures:
    """Raw values flattened: exact for 2-D toys, a weak fallback for images (warned)."""

    name: str = "pixels"
    hash: str = "pixels"
    input_shape: tuple[int, ...] | None = None

    def features(self, x: Tensor) -> Tensor:
        return x.float().flatten(1)

    def logits(self, x: Tensor) -> None:
        return None


def builtin(name: str) -> NetFeatures:
    """One of the feature networks shipped in the package (``digits28``, ``digits8``)."""
    if name not in BUILTIN:
        raise UserError(f"unknown feature network {name!r}; built in: {', '.join(BUILTIN)}, pixels, "
                        "or a .pt TorchScript / .safetensors file")
    return NetFeatures.load(Path(str(files("genlab.metrics") / "weights" / f"{name}.safetensors")), name)


def data_fingerprint(x: Tensor) -> str:
    """Content hash of a data set's examples (which extractor was made for which data)."""
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:16]


def register_for_data(net_file: Path, train_x: Tensor) -> Path:
    """Record that ``net_file`` is the feature network of the data whose training split is ``train_x``."""
    index = genlab_home() / "features" / "index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    table = json.loads(index.read_text()) if index.is_file() else {}
    table[data_fingerprint(train_x)] = str(Path(net_file).resolve())
    index.write_text(json.dumps(table, indent=2))
    return index


def registered_for(train_x: Tensor) -> Path | None:
    index = genlab_home() / "features" / "index.json"
    if not index.is_file():
        return None
    path = json.loads(index.read_text()).get(data_fingerprint(train_x))
    return Path(path) if path and Path(path).is_file() else None


def get_extractor(spec: str | None, train_x: Tensor, *, size: int | None = None, channels: int | None = None,
                  value_range: tuple[float, float] = (-1.0, 1.0)) -> FeatureExtractor:
    """The extractor ``spec`` names (built-in name, ``pixels``, a ``.pt`` / ``.safetensors`` file), or
    with ``spec`` None the default for the data: its registered network, else the built-in one for
    its shape, else pixels (with a warning for images)."""
    if spec is not None:
        if spec == "pixels":
            return PixelFeatures()
        if spec in BUILTIN:
            return builtin(spec)
        path = Path(spec)
        if path.suffix == ".safetensors":
            if not path.is_file():
                raise UserError(f"--features {spec!r}: no such file")
            return NetFeatures.load(path)
        if path.suffix in (".pt", ".pth", ".ts"):
            return TorchScriptFeatures.load(path, size, channels, value_range)
        return builtin(spec)
    shape = tuple(train_x.shape[1:])
    registered = registered_for(train_x)
    if registered is not None:
        return NetFeatures.load(registered)
    for name, s in BUILTIN.items():
        if shape == s:
            return builtin(name)
    if len(shape) == 3:
        warnings.warn(f"no feature network for images of shape {shape}: comparing raw pixels, which is a weak "
                      "measure; train one with `genlab features train --data PATH`", stacklevel=2)
    return PixelFeatures()


@torch.no_grad()
def extract(extractor: FeatureExtractor, x: Tensor, batch_size: int = 500, *, logits: bool = False,
            show_progress: bool = False, desc: str = "features") -> tuple[Tensor, Tensor | None]:
    """Features (float64, CPU) of ``x`` in batches, and logits when asked and available."""
    from tqdm.auto import tqdm

    check_input(extractor, x)
    feats, outs = [], []
    for i in tqdm(range(0, len(x), batch_size), desc=desc, disable=not show_progress, leave=False):
        part = x[i : i + batch_size]
        feats.append(extractor.features(part).double().cpu())
        if logits:
            out = extractor.logits(part)
            if out is not None:
                outs.append(out.double().cpu())
    return torch.cat(feats), (torch.cat(outs) if outs else None)
