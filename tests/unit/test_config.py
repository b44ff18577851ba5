from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kiban.config import apply_overrides, from_dict, load_config
from kiban.errors import ConfigError


@dataclass
class Inner:
    n: int = 5
    ratio: float = 0.5


@dataclass
class Outer:
    name: str = "x"
    flags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    mode: str | None = None

    def __post_init__(self) -> None:
        if self.inner.n < 0:
            raise ValueError("inner.n must be ≥ 0")


def test_nested_fields_and_types() -> None:
    cfg = from_dict(Outer, {"name": "y", "flags": ["a"], "inner": {"n": 3, "ratio": 1}})
    assert cfg.inner.n == 3 and cfg.inner.ratio == 1.0 and cfg.flags == ["a"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"m": 1}}, "unknown field 'inner.m'"),
        ({"inner": {"n": "many"}}, "field 'inner.n' must be int"),
        ({"inner": {"n": True}}, "field 'inner.n' must be int"),
        ({"flags": "a"}, "field 'flags' must be a list"),
        ({"inner": {"n": -1}}, "inner.n must be ≥ 0"),
    ],
)
def test_errors_name_the_field(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data, where="c.yaml")


def test_overrides_and_yaml(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("inner:\n  n: 2\n")
    cfg = load_config(Outer, p, ["inner.ratio=0.25", "name=z"])
    assert (cfg.inner.n, cfg.inner.ratio, cfg.name) == (2, 0.25, "z")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["nonsense"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "missing.yaml")
