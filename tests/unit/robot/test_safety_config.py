"""The safety configuration fails closed: every limit is required, and bad values are refused by name."""

from __future__ import annotations

import copy
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import yaml

from kiban.errors import ConfigError
from kiban.robot import arm
from kiban.robot.safety_config import (
    Box,
    JointLimits,
    SafetyConfig,
    SeparationConfig,
    load_safety_config,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "robot-safety.yaml"


def example_data() -> dict:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "safety.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def leaf_fields() -> list[str]:
    """Every field of the config as a dotted name; every one of them is required."""
    out = []
    for f in fields(SafetyConfig):
        nested = {"joints": JointLimits, "workspace": Box, "separation": SeparationConfig}.get(f.name)
        out += [f"{f.name}.{g.name}" for g in fields(nested)] if nested else [f.name]
    out += [f"keep_out[0].{g.name}" for g in fields(Box)]
    return out


def test_the_example_loads_with_its_stated_values() -> None:
    c = load_safety_config(EXAMPLE)
    assert c.collaborative_speed_m_s == 0.25  # ISO 10218-1 §5.6, stated in the file
    assert c.separation.human_speed_m_s == 1.6  # ISO 13855 K
    assert c.cycle_s == 0.002
    assert [z.name for z in c.keep_out] == ["fixture"]
    assert all(v <= arm.UR5E_MAX_JOINT_VEL_RAD_S for v in c.joints.vel_max_rad_s)
    comp = c.compiled
    assert comp.pos_min_rad.shape == (6,) and comp.zone_min_m.shape == (1, 3)
    np.testing.assert_allclose(comp.zone_min_m[0], np.array([0.30, -0.20, 0.0]) - c.keep_out_margin_m)
    sep = c.separation
    expected = 1.6 * (0.1 + 0.3) + 0.1 + 0.2 + 0.1 + 0.05
    assert math.isclose(sep.constant_part_m(), expected) and math.isclose(comp.sp_constant_m, expected)


@pytest.mark.parametrize("name", leaf_fields())
def test_each_missing_field_is_named(tmp_path: Path, name: str) -> None:
    data = example_data()
    node, *path = name.replace("[0]", ".0").split(".")
    parent = data
    keys = [node, *path]
    for key in keys[:-1]:
        parent = parent[int(key)] if key.isdigit() else parent[key]
    del parent[keys[-1]]
    with pytest.raises(ConfigError, match="missing required field") as e:
        load_safety_config(write(tmp_path, data))
    assert f"'{name}'" in str(e.value)


def test_all_missing_limits_are_named_at_once(tmp_path: Path) -> None:
    data = example_data()
    del data["joints"]["jerk_max_rad_s3"], data["separation"]["stopping_time_s"], data["cycle_s"]
    with pytest.raises(ConfigError) as e:
        load_safety_config(write(tmp_path, data))
    for name in ("joints.jerk_max_rad_s3", "separation.stopping_time_s", "cycle_s"):
        assert f"'{name}'" in str(e.value)
    assert "never defaults a limit" in str(e.value)


def test_an_empty_file_names_every_section(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="'joints'.*'workspace'.*'cycle_s'"):
        load_safety_config(path)


BAD = [
    ("joints.vel_max_rad_s", [1.0, 1.0, float("nan"), 1.0, 1.0, 1.0], r"vel_max_rad_s\[2\] must be finite"),
    ("joints.acc_max_rad_s2", [4.0, 4.0, 4.0, float("inf"), 4.0, 4.0], r"acc_max_rad_s2\[3\] must be finite"),
    ("joints.jerk_max_rad_s3", [40.0, 0.0, 40.0, 40.0, 40.0, 40.0], r"jerk_max_rad_s3\[1\] must be > 0"),
    ("joints.acc_max_rad_s2", [4.0, -4.0, 4.0, 4.0, 4.0, 4.0], r"acc_max_rad_s2\[1\] must be > 0"),
    ("joints.vel_max_rad_s", [1.0] * 5, "must have 6 values"),
    ("joints.vel_max_rad_s", [4.0] * 6, r"exceeds the UR5e's π rad/s"),
    ("joints.pos_min_rad", [6.2831] * 6, "joint 1: need -2π ≤ pos_min_rad < pos_max_rad"),
    ("joints.pos_max_rad", [7.0] * 6, "UR5e range"),
    ("joints.pos_min_rad", "low", "must be a list"),
    ("workspace.min_m", [0.0, 0.0, 2.0], "must be below max_m"),
    ("keep_out_margin_m", -0.01, "keep_out_margin_m must be a finite number ≥ 0"),
    ("tool_speed_max_m_s", 0.0, "tool_speed_max_m_s must be a finite number > 0"),
    ("tool_speed_max_m_s", float("inf"), "tool_speed_max_m_s must be a finite number > 0"),
    ("collaborative_speed_m_s", 2.0, "collaborative_speed_m_s must not exceed tool_speed_max_m_s"),
    ("separation.human_speed_m_s", 0.0, "human_speed_m_s must be a finite number > 0"),
    ("separation.intrusion_distance_m", -0.1, "intrusion_distance_m must be a finite number ≥ 0"),
    ("separation.reaction_time_s", float("nan"), "reaction_time_s must be a finite number > 0"),
    ("command_timeout_s", 0.001, "command_timeout_s must be at least one cycle_s"),
    ("heartbeat_timeout_s", -1.0, "heartbeat_timeout_s must be a finite number > 0"),
    ("cycle_s", 0.0, "cycle_s must be a finite number > 0"),
    ("tracking_error_max_rad", "x", "must be a number"),
    ("keep_out", [{"name": "a", "min_m": [1, 1, 0], "max_m": [2, 2, 1]}] * 2, "names must be unique"),
    (
        "keep_out",
        [{"name": "base", "min_m": [-0.1, -0.1, 0], "max_m": [0.1, 0.1, 0.3]}],
        "contains the robot's shoulder",
    ),
    ("workspace.max_m", [0.65, 0.65, 0.1], "must contain the robot's shoulder"),
    ("joints.acc_max_rad_s2", [1e-6] * 6, "too small to brake"),
    ("unknown_limit", 1.0, "unknown field 'unknown_limit'"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD, ids=[f"{n}={v!r}"[:60] for n, v, _ in BAD])
def test_bad_values_are_refused_by_name(tmp_path: Path, name: str, value: object, message: str) -> None:
    data = example_data()
    *parents, leaf = name.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[leaf] = copy.deepcopy(value)
    with pytest.raises(ConfigError, match=message) as e:
        load_safety_config(write(tmp_path, data))
    assert str(e.value).startswith(str(tmp_path / "safety.yaml"))  # the file is named too


def test_no_keep_out_zones_must_be_said(tmp_path: Path) -> None:
    data = example_data()
    data["keep_out"] = []
    assert load_safety_config(write(tmp_path, data)).keep_out == ()


def test_direct_construction_checks_too() -> None:
    c = load_safety_config(EXAMPLE)
    with pytest.raises(ValueError, match="must be finite"):
        JointLimits([0.0] * 6, [1.0] * 6, [1.0] * 6, [1.0] * 6, [math.nan] * 6)
    with pytest.raises(ValueError, match="needs a name"):
        Box("", (0, 0, 0), (1, 1, 1))
    j = c.joints  # lists and arrays are accepted and stored as tuples of floats
    limits = JointLimits(
        list(j.pos_min_rad), np.array(j.pos_max_rad), j.vel_max_rad_s, j.acc_max_rad_s2, j.jerk_max_rad_s3
    )
    assert limits == j and isinstance(limits.pos_max_rad, tuple)


def test_the_installed_default_is_the_example() -> None:
    """`kiban robot sim` without --config reads the copy installed with the package; the example in
    examples/ is the one users copy: the two give the same limits."""
    from kiban.robot.loop import DEFAULT_CONFIG

    assert DEFAULT_CONFIG.is_file() and "examples" not in DEFAULT_CONFIG.parts
    assert load_safety_config(DEFAULT_CONFIG) == load_safety_config(EXAMPLE)
