"""Importing peers that import torchvision, which does not work beside genlab's CPU torch build.

timm (and open_clip) import torchvision at module level for data transforms, datasets and
``FrozenBatchNorm2d``, none of which a model forward pass uses. ``import_timm()`` installs a stub
``torchvision`` package first: every ``torchvision.*`` module imports, and any name taken from it
is a placeholder class that raises if it is ever called. Install the peer itself without its
dependencies, so pip never replaces torch:

    .venv/bin/pip install --no-deps timm        # needs huggingface_hub, pyyaml, safetensors (present)

Benchmark-only: nothing in ``genlab`` imports this.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types


class _PlaceholderMeta(type):
    def __getattr__(cls, name: str):  # InterpolationMode.NEAREST and the like: more placeholders
        if name.startswith("__"):
            raise AttributeError(name)
        return _PlaceholderMeta(name, (_Placeholder,), {})


class _Placeholder(metaclass=_PlaceholderMeta):
    def __init__(self, *args, **kwargs) -> None:
        raise RuntimeError("torchvision is stubbed (benchmarks/peers.py): this peer feature is unavailable")


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _PlaceholderMeta(name, (_Placeholder,), {})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


def stub_torchvision() -> None:
    """Make ``import torchvision...`` succeed with placeholders (only if the real one is absent or broken)."""
    if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, _StubFinder())


def import_timm():
    """timm, or None with the reason printed (it is a benchmark-only peer)."""
    try:
        import timm  # noqa: F401

        return timm
    except ImportError:
        stub_torchvision()
    try:
        import timm

        return timm
    except ImportError as e:
        print(f"timm is not installed ({e}); install it with: pip install --no-deps timm")
        return None
