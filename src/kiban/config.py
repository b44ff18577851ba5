"""Typed configs from YAML files and `--set a.b=value` overrides.

Each stage declares its config as nested dataclasses with a docstring under each field.
`load_config(cls, path, overrides)` builds one, and every error names the file and the field:

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     min_chars: int = 400
    >>> from_dict(C, {"min_chars": "x"}, where="curate.yaml")
    Traceback (most recent call last):
    ...
    kiban.errors.ConfigError: curate.yaml: field 'min_chars' must be int, got 'x'
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kiban.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str = "config", prefix: str = "") -> T:
    """Build dataclass `cls` from `data`, refusing unknown fields and wrong types by name."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"{where}: unknown field '{prefix}{unknown[0]}' (known: {known})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, where=where, name=f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {prefix.rstrip('.') or cls.__name__}: {e}") from e


def _coerce(tp: Any, value: Any, *, where: str, name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where, prefix=f"{name}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where=where, name=name)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: field '{name}' must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: field '{name}' must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, where=where, name=f"{name}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: field '{name}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: field '{name}' must be true or false, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: field '{name}' must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: field '{name}' must be int, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: field '{name}' must be a string, got {value!r}")
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    """The resolved config as plain data, for manifests."""
    return dataclasses.asdict(obj)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`filters.japanese.min_chars=200` -> (["filters", "japanese", "min_chars"], 200)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. dedup.num_bands=14")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{k}' is not a section")
        node[keys[-1]] = value
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(cls: type[T], path: Path | None = None, overrides: list[str] | None = None) -> T:
    data = read_yaml(path) if path else {}
    data = apply_overrides(data, overrides or [])
    where = str(path) if path else "config"
    return from_dict(cls, data, where=where)
