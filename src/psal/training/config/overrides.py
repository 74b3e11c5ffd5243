"""Config files and ``key=value`` overrides on top of a config dataclass.

Precedence, lowest first: the dataclass defaults, a config file (JSON, or TOML on
Python >= 3.11) with the same nested structure, then ``key=value`` overrides with dotted
names (``model.kwargs.width=8``, ``optim.lr=3e-4``). Unknown keys are errors (a typo
must not be ignored silently); values are converted to and checked against the field
types. A config class may declare renamed keys in ``ALIASES`` (``{"model.width":
"model.kwargs.width"}``): old names keep working in files, overrides and the configs
stored in old checkpoints.

Example:
    >>> from psal.training import InpaintConfig
    >>> cfg = apply_overrides(InpaintConfig(), ["model.kwargs.width=8", "optim.lr=3e-4"])
    >>> cfg.model.kwargs["width"], cfg.optim.lr
    (8, 0.0003)
    >>> config_from_dict(config_to_dict(cfg), InpaintConfig()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any

from .options import ConfigError

__all__ = ["apply_overrides", "config_from_dict", "config_to_dict", "load_config_file"]


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain nested dicts (JSON-ready)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check/convert a value (from JSON, TOML or a ``key=value`` string) to type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise ConfigError(f"{name}: cannot use {value!r} ({'; '.join(errors)})", name)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{name} must be a boolean (true/false), got {value!r}", name)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{name} must be an integer, got {value!r}", name)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {value!r}", name)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}", name) from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}", name)
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):
            value = _parse_literal(value)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{name} must be a list of {len(args)} values, got {value!r}", name)
        return tuple(_coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if isinstance(value, str):
            value = _parse_literal(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table/object, got {value!r}", name)
        return dict(value)
    raise TypeError(f"{name}: unsupported field type {tp!r}")  # pragma: no cover


class _Whole(dict):
    """A dict given whole on the command line (replaces the value instead of merging)."""


def _parse_literal(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _merge(base: dict[str, Any], value: dict[str, Any], text: bool) -> dict[str, Any]:
    """``base`` updated key by key, at any depth (``text``: string values parsed as JSON)."""
    out = dict(base)
    for k, v in value.items():
        if isinstance(v, _Whole):
            out[k] = dict(v)
        elif isinstance(v, dict):
            out[k] = _merge(out[k] if isinstance(out.get(k), dict) else {}, v, text)
        else:
            out[k] = _parse_literal(v) if text and isinstance(v, str) else v
    return out


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _apply_aliases(data: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """Move values from old dotted keys to their new ones (new keys win)."""
    if not aliases:
        return data
    data = _copy(data)
    for old, new in aliases.items():
        *path, last = old.split(".")
        holder = data
        for part in path:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if not isinstance(holder, dict) or last not in holder:
            continue
        value = holder.pop(last)
        *npath, nlast = new.split(".")
        target = data
        for part in npath:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        current = target.get(nlast)
        if (
            isinstance(current, dict)
            and isinstance(value, dict)
            and not isinstance(current, _Whole)
        ):
            target[nlast] = type(value)({**value, **current})  # the new key's values win
        else:
            target.setdefault(nlast, value)
    return data


def _copy(d: Any) -> Any:
    if isinstance(d, _Whole):
        return _Whole({k: _copy(v) for k, v in d.items()})
    if isinstance(d, dict):
        return {k: _copy(v) for k, v in d.items()}
    return d


def config_from_dict(
    data: dict[str, Any], base: Any = None, prefix: str = "", _from_text: bool = False
) -> Any:
    """Build a config from nested dicts, on top of ``base`` (default: ``InpaintConfig()``).

    Unknown keys are errors; values are checked against the field types. Dict-valued
    fields (``model.kwargs``) are merged key by key, at any depth, into ``base``'s
    (a JSON object given whole on the command line replaces the value).
    """
    if base is None:
        from ..tasks.inpaint.config import InpaintConfig

        base = InpaintConfig()
    if not isinstance(data, dict):
        key = prefix.rstrip(".") or None
        raise ConfigError(f"{key or 'config'} must be a table/object, got {data!r}", key)
    if not prefix:
        data = _apply_aliases(data, getattr(type(base), "ALIASES", {}))
    fields = _fields(type(base))
    changes: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(sorted(fields))
            hint = ""
            if isinstance(getattr(base, "kwargs", None), dict) and key in base.kwargs:
                hint = f" (did you mean {prefix}kwargs.{key}?)"
            raise ConfigError(f"unknown config key {name!r}{hint}; known keys here: {known}", name)
        tp = fields[key]
        if _is_dataclass_type(tp):
            changes[key] = config_from_dict(value, getattr(base, key), f"{name}.", _from_text)
        elif isinstance(value, _Whole):
            changes[key] = _coerce(dict(value), tp, name)
        elif typing.get_origin(tp) is dict and isinstance(value, dict):
            changes[key] = _merge(getattr(base, key), value, _from_text)
        else:
            changes[key] = _coerce(value, tp, name)
    return dataclasses.replace(base, **changes)


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Apply ``section.key=value`` strings to ``config`` (returns a new config).

    Values are converted to the field's type (``true``, ``8``, ``1e-4``, ``0.5,0.9``);
    JSON objects and lists are parsed. A dict field can be set whole
    (``model.kwargs.attention_options={"k": 4}``) or one key at a time at any depth
    (``model.kwargs.attention_options.k=4``, the value parsed as JSON when possible).
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        parts = key.replace("-", "_").split(".")
        target = nested
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        value: Any = text
        parsed = _parse_literal(text)
        if isinstance(parsed, dict):
            value = _Whole(parsed)
        elif isinstance(parsed, list) or parsed is None:
            value = parsed
        target[parts[-1]] = value
    return config_from_dict(nested, config, _from_text=True)


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``, Python >= 3.11) config file as dicts."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"config file {str(p)!r} is not valid JSON: {err}") from None
    elif suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # pragma: no cover - Python 3.10
            raise ValueError(
                f"config file {str(p)!r}: TOML needs Python >= 3.11 (tomllib); use JSON"
            ) from None
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {str(p)!r} is not valid TOML: {err}") from None
    else:
        raise ValueError(f"config file {str(p)!r} must end in .json or .toml")
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold an object/table at the top")
    return data
