"""Dataclass configs: typed ``key=value`` overrides, JSON round trips, YAML recipes.

Configs are plain dataclasses. Values a user types (CLI ``key=value`` pairs, YAML recipes,
``create(name, **overrides)``) are checked against the field types here, so a typo or a value of
the wrong type becomes a :class:`~genlab.errors.UserError` that names the field and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from genlab.errors import UserError

C = TypeVar("C")


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert ``value`` (maybe a string typed by a user) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, a, value)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{name}: cannot be None")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip().strip("()[]")
            items = [v for v in (s.strip() for s in text.split(",")) if v]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise UserError(f"{name}={value!r}: expected a comma-separated list")
        elem = args[0] if args else str
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise UserError(f"{name}={value!r}: expected {len(args)} values")
            return tuple(_coerce(name, a, v) for a, v in zip(args, items))
        out = [_coerce(name, elem, v) for v in items]
        return tuple(out) if origin is tuple else out
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise UserError(f"{name}={value!r}: choose one of {', '.join(map(str, args))}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise UserError(f"{name}={value!r}: expected true or false")
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise UserError(f"{name}={value!r}: expected an integer")
        try:
            return int(value) if not isinstance(value, str) else int(value.strip())
        except (TypeError, ValueError):
            raise UserError(f"{name}={value!r}: expected an integer") from None
    if tp is float:
        if isinstance(value, bool):
            raise UserError(f"{name}={value!r}: expected a number")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{name}={value!r}: expected a number") from None
        if not math.isfinite(out):
            raise UserError(f"{name}={value!r}: expected a finite number")
        return out
    if tp is str:
        return str(value)
    if tp is Any:
        return value
    return value


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def apply_overrides(cfg: C, overrides: dict[str, Any]) -> C:
    """Return a copy of dataclass ``cfg`` with typed, validated ``overrides`` applied."""
    types_ = field_types(type(cfg))
    clean = {}
    for key, value in overrides.items():
        if key not in types_:
            close = difflib.get_close_matches(key, types_, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(
                f"unknown option {key!r} for {type(cfg).__name__}{hint}; "
                f"valid options: {', '.join(sorted(types_))}"
            )
        clean[key] = _coerce(key, types_[key], value)
    out = dataclasses.replace(cfg, **clean)
    validate = getattr(out, "validate", None)
    if validate is not None:
        validate()
    return out


def parse_key_values(pairs: list[str]) -> dict[str, str]:
    """Split ``["a=1", "b=x"]`` into a dict; a pair without ``=`` is an error."""
    out: dict[str, str] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise UserError(f"expected key=value, got {p!r}")
        out[key.strip()] = value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"recipe {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"recipe {str(p)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"recipe {str(p)!r} must be a mapping of key: value")
    return data
