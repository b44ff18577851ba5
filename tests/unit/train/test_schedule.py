"""Learning-rate schedules: values at the boundaries, shapes, and the module's doctests."""

from __future__ import annotations

import doctest
import math

import pytest

from kiban.train import schedule
from kiban.train.schedule import lr_at


def test_doctests() -> None:
    assert doctest.testmod(schedule).failed == 0


def test_cosine_warmup_peak_and_floor() -> None:
    kw = {"peak_lr": 3e-4, "max_steps": 100, "warmup_steps": 10, "min_lr_ratio": 0.1}
    assert lr_at(0, **kw) == pytest.approx(3e-5)  # (0 + 1) / 10 of the peak: never a step at lr 0
    assert lr_at(9, **kw) == pytest.approx(3e-4)
    assert lr_at(10, **kw) == pytest.approx(3e-4)
    assert lr_at(55, **kw) == pytest.approx(3e-5 + 0.5 * (3e-4 - 3e-5))  # half-way: the mean
    assert lr_at(100, **kw) == pytest.approx(3e-5)
    values = [lr_at(s, **kw) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert min(values) > 3e-5  # the floor is reached only after the last step


def test_wsd_stable_then_linear_decay() -> None:
    kw = {"peak_lr": 1.0, "max_steps": 100, "warmup_steps": 10, "kind": "wsd", "decay_fraction": 0.2}
    assert [lr_at(s, **kw, min_lr_ratio=0.0) for s in (10, 50, 79)] == [1.0, 1.0, 1.0]
    assert lr_at(80, **kw, min_lr_ratio=0.0) == 1.0
    assert lr_at(90, **kw, min_lr_ratio=0.0) == pytest.approx(0.5)
    assert lr_at(99, **kw, min_lr_ratio=0.0) == pytest.approx(0.05)
    assert lr_at(100, **kw, min_lr_ratio=0.5) == pytest.approx(0.5)


def test_no_warmup_starts_at_peak() -> None:
    assert lr_at(0, peak_lr=1.0, max_steps=10, warmup_steps=0) == 1.0
    assert lr_at(0, peak_lr=1.0, max_steps=10, warmup_steps=0, kind="wsd") == 1.0


def test_pure_function_of_step() -> None:
    kw = {"peak_lr": 1e-3, "max_steps": 50, "warmup_steps": 5}
    first = [lr_at(s, **kw) for s in range(50)]
    assert first == [lr_at(s, **kw) for s in reversed(range(50))][::-1]
    assert all(math.isfinite(v) and v > 0 for v in first)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, peak_lr=1.0, max_steps=10)
    with pytest.raises(ValueError, match="kind"):
        lr_at(5, peak_lr=1.0, max_steps=10, kind="linear")  # type: ignore[arg-type]
