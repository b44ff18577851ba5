"""The safety supervisor's configuration: every limit it enforces, read from YAML, never defaulted.

    config = load_safety_config("examples/robot-safety.yaml")   # ConfigError names any missing limit
    verdict, memory = supervise(command, state, config, memory, now_s=t)     # kiban.robot.safety

Fail closed: a limit that is missing, not finite, not positive, or outside the arm's published
range is refused when the file is loaded, by name; nothing here has a default value. A cell without
keep-out zones says so with `keep_out: []`.

Sources for the numbers a user puts here (examples/robot-safety.yaml cites them per value):
ISO 10218-1:2011 §5.6 (reduced speed 250 mm/s), ISO/TS 15066:2016 §5.5.4 (speed and separation
monitoring, protective separation distance S_p), ISO 13855:2010 §6 (human approach speed
K = 1.6 m/s, intrusion distance C), the UR5e technical specifications (joint ranges and speeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from kiban.config import from_dict, read_yaml
from kiban.errors import ConfigError
from kiban.robot import arm

N_JOINTS = arm.N_JOINTS
INNER = 1.0 - 1e-6
"""The supervisor works to limits this much inside the configured ones, so float rounding of the
positions it sends (a third difference over dt³ amplifies it ~10⁹ times) never crosses a limit."""
BRAKE_CYCLES_MAX = 16384
"""The longest braking plan the supervisor tabulates (33 s at 500 Hz)."""


def _vector(obj: Any, name: str, n: int) -> tuple[float, ...]:
    """`obj.name` as a tuple of `n` finite floats (stored back, so lists and arrays are accepted)."""
    raw = getattr(obj, name)
    try:
        values = tuple(float(x) for x in raw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a list of {n} numbers, got {raw!r}") from e
    if len(values) != n:
        raise ValueError(
            f"{name} must have {n} values (one per {'joint' if n == N_JOINTS else 'axis'}), got {len(values)}"
        )
    for i, x in enumerate(values):
        if not math.isfinite(x):
            raise ValueError(f"{name}[{i}] must be finite, got {x}")
    object.__setattr__(obj, name, values)
    return values


def _positive(obj: Any, name: str, *, allow_zero: bool = False) -> float:
    x = getattr(obj, name)
    if (
        isinstance(x, bool)
        or not isinstance(x, int | float)
        or not math.isfinite(x)
        or x < 0
        or (x == 0 and not allow_zero)
    ):
        raise ValueError(f"{name} must be a finite number {'≥' if allow_zero else '>'} 0, got {x!r}")
    object.__setattr__(obj, name, float(x))
    return float(x)


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits of the commands the supervisor sends; each a list of 6 values, base to wrist 3."""

    pos_min_rad: tuple[float, ...]
    """Lowest joint position. Within the UR5e's ±2π."""
    pos_max_rad: tuple[float, ...]
    """Highest joint position. Within the UR5e's ±2π; above pos_min_rad."""
    vel_max_rad_s: tuple[float, ...]
    """|q̇| limit (finite differences of sent positions). At most the UR5e's π rad/s."""
    acc_max_rad_s2: tuple[float, ...]
    """|q̈| limit (finite differences)."""
    jerk_max_rad_s3: tuple[float, ...]
    """|d³q/dt³| limit (finite differences)."""

    def __post_init__(self) -> None:
        lo = _vector(self, "pos_min_rad", N_JOINTS)
        hi = _vector(self, "pos_max_rad", N_JOINTS)
        for j in range(N_JOINTS):
            if not -arm.UR5E_JOINT_RANGE_RAD - 1e-9 <= lo[j] < hi[j] <= arm.UR5E_JOINT_RANGE_RAD + 1e-9:
                raise ValueError(
                    f"joint {j + 1}: need -2π ≤ pos_min_rad < pos_max_rad ≤ 2π (UR5e range), got [{lo[j]}, {hi[j]}]"
                )
        for name in ("vel_max_rad_s", "acc_max_rad_s2", "jerk_max_rad_s3"):
            for j, x in enumerate(_vector(self, name, N_JOINTS)):
                if x <= 0:
                    raise ValueError(f"{name}[{j}] must be > 0, got {x}")
        for j, x in enumerate(self.vel_max_rad_s):
            if x > arm.UR5E_MAX_JOINT_VEL_RAD_S + 1e-9:
                raise ValueError(f"vel_max_rad_s[{j}] = {x} exceeds the UR5e's π rad/s")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in the robot's base frame (m)."""

    name: str
    min_m: tuple[float, ...]
    """(x, y, z) lower corner."""
    max_m: tuple[float, ...]
    """(x, y, z) upper corner, above min_m on every axis."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a box needs a name, got {self.name!r}")
        lo, hi = _vector(self, "min_m", 3), _vector(self, "max_m", 3)
        if not all(a < b for a, b in zip(lo, hi, strict=True)):
            raise ValueError(
                f"box '{self.name}': min_m {list(lo)} must be below max_m {list(hi)} on every axis"
            )


@dataclass(frozen=True)
class SeparationConfig:
    """Speed and separation monitoring, ISO/TS 15066:2016 §5.5.4:

        S_p = S_h + S_r + S_s + C + Z_d + Z_r,   S_h = v_h (T_r + T_s),   S_r = v_r T_r

    with v_r the robot's current speed (the fastest link point: conservative, speed toward the
    person is at most that). A person nearer than S_p: protective stop; nearer than S_p +
    warning_margin_m: the tool is slowed to collaborative_speed_m_s.
    """

    human_speed_m_s: float
    """v_h: ISO 13855:2010 §6.2: K = 1.6 m/s for approach by walking (2.0 m/s for reach within 0.5 m)."""
    reaction_time_s: float
    """T_r: sensing plus supervisor reaction (sensor latency + one control cycle)."""
    stopping_time_s: float
    """T_s: the robot's stopping time (measured per ISO 10218-1 Annex B for the cell's speeds/payload)."""
    stopping_distance_m: float
    """S_s: the robot's stopping distance over T_s."""
    intrusion_distance_m: float
    """C: ISO 13855 intrusion distance: how far a body part gets past the sensing field before detection."""
    position_uncertainty_human_m: float
    """Z_d: the person-detecting sensor's position uncertainty."""
    position_uncertainty_robot_m: float
    """Z_r: the robot's position uncertainty (encoder accuracy, tracking error)."""
    warning_margin_m: float
    """Beyond S_p: the band in which speed is reduced to collaborative_speed_m_s before a stop is needed."""

    def __post_init__(self) -> None:
        for f in fields(self):
            allow_zero = f.name not in ("human_speed_m_s", "reaction_time_s", "stopping_time_s")
            _positive(self, f.name, allow_zero=allow_zero)

    def constant_part_m(self) -> float:
        """S_p of a robot at rest: S_h + S_s + C + Z_d + Z_r."""
        return (
            self.human_speed_m_s * (self.reaction_time_s + self.stopping_time_s)
            + self.stopping_distance_m
            + self.intrusion_distance_m
            + self.position_uncertainty_human_m
            + self.position_uncertainty_robot_m
        )


@dataclass(frozen=True)
class SafetyConfig:
    """Everything the supervisor enforces; required field by field (see load_safety_config)."""

    joints: JointLimits
    workspace: Box
    """Every link point from the shoulder to the tool stays inside (the base mount is fixed)."""
    keep_out: tuple[Box, ...]
    """Zones no link segment may enter (fixtures, a conveyor, a walkway); `[]` for none."""
    keep_out_margin_m: float
    """Clearance between the arm's DH polyline and every keep-out zone: the links' radius plus slack."""
    tool_speed_max_m_s: float
    """Tool centre point speed limit in normal operation."""
    collaborative_speed_m_s: float
    """Reduced tool speed while a person is within S_p + warning margin: 0.25 m/s per ISO 10218-1:2011
    §5.6 (the value ISO/TS 15066 builds on); stated here, never assumed."""
    separation: SeparationConfig
    """Speed and separation monitoring (ISO/TS 15066 §5.5.4): protective stop and reduced-speed distances."""
    command_timeout_s: float
    """A command older than this (now - command.t_s) is refused as stale; the robot brakes."""
    heartbeat_timeout_s: float
    """No heartbeat (and no fresh observation) for longer than this: protective stop."""
    tracking_error_max_rad: float
    """The measured joint positions may lag the last sent command by at most this much."""
    cycle_s: float
    """The control period: finite differences of sent positions are taken over it (0.002 at 500 Hz)."""

    def __post_init__(self) -> None:
        for name, cls in (("joints", JointLimits), ("workspace", Box), ("separation", SeparationConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name} must be a {cls.__name__}")
        object.__setattr__(self, "keep_out", tuple(self.keep_out))
        if not all(isinstance(z, Box) for z in self.keep_out):
            raise ValueError("keep_out must be a list of boxes")
        names = [z.name for z in self.keep_out]
        if len(set(names)) != len(names):
            raise ValueError(f"keep_out zone names must be unique, got {names}")
        for name in ("tool_speed_max_m_s", "collaborative_speed_m_s", "command_timeout_s"):
            _positive(self, name)
        for name in ("heartbeat_timeout_s", "tracking_error_max_rad", "cycle_s"):
            _positive(self, name)
        _positive(self, "keep_out_margin_m", allow_zero=True)
        if self.collaborative_speed_m_s > self.tool_speed_max_m_s:
            raise ValueError("collaborative_speed_m_s must not exceed tool_speed_max_m_s")
        for name in ("command_timeout_s", "heartbeat_timeout_s"):
            if getattr(self, name) < self.cycle_s:
                raise ValueError(
                    f"{name} must be at least one cycle_s ({self.cycle_s}), or every cycle would stop"
                )
        shoulder = arm.link_points(np.zeros(N_JOINTS))[1]  # fixed: joint 1 turns about the base's z axis
        if not (np.all(shoulder >= self.workspace.min_m) and np.all(shoulder <= self.workspace.max_m)):
            raise ValueError(
                f"workspace '{self.workspace.name}' must contain the robot's shoulder {shoulder.tolist()}"
            )
        for zone in self.keep_out:
            lo = np.asarray(zone.min_m) - self.keep_out_margin_m
            hi = np.asarray(zone.max_m) + self.keep_out_margin_m
            if np.all(shoulder >= lo) and np.all(shoulder <= hi):
                raise ValueError(f"keep_out zone '{zone.name}' (with margin) contains the robot's shoulder")
        j = self.joints
        for k in range(N_JOINTS):  # the supervisor's own braking from full speed must fit its plan table
            brake_s = max(
                1.5 * j.vel_max_rad_s[k] / j.acc_max_rad_s2[k],
                math.sqrt(6 * j.vel_max_rad_s[k] / j.jerk_max_rad_s3[k]),
            )
            if brake_s > 0.5 * BRAKE_CYCLES_MAX * self.cycle_s:
                raise ValueError(
                    f"joint {k + 1}: acc_max_rad_s2/jerk_max_rad_s3 too small to brake from vel_max_rad_s "
                    f"within {0.5 * BRAKE_CYCLES_MAX} cycles"
                )

    @cached_property
    def compiled(self) -> CompiledSafety:
        """The same limits as numpy arrays plus the arm's kinematic bounds, for the per-cycle check."""
        return CompiledSafety.build(self)


def _missing(cls: type, data: Any, prefix: str = "") -> list[str]:
    """Dotted names of the required fields absent from `data` (recursing into nested configs)."""
    if not isinstance(data, dict):
        return []
    out = []
    for f in fields(cls):
        name = f"{prefix}{f.name}"
        if f.name not in data:
            out.append(name)
        elif isinstance(f.type, str) and f.type in _NESTED:
            out += _missing(_NESTED[f.type], data[f.name], f"{name}.")
        elif f.name == "keep_out" and isinstance(data[f.name], list):
            for i, zone in enumerate(data[f.name]):
                out += _missing(Box, zone, f"{name}[{i}].")
    return out


_NESTED = {"JointLimits": JointLimits, "Box": Box, "SeparationConfig": SeparationConfig}


def load_safety_config(path: str | Path) -> SafetyConfig:
    """Read and check a safety configuration; ConfigError names the file and the field at fault.

    >>> load_safety_config("examples/robot-safety.yaml").collaborative_speed_m_s
    0.25
    """
    path = Path(path)
    data = read_yaml(path)
    missing = _missing(SafetyConfig, data)
    if missing:
        raise ConfigError(
            f"{path}: missing required field{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}"
            " (the safety supervisor never defaults a limit)"
        )
    try:
        return from_dict(SafetyConfig, data, where=str(path))
    except ConfigError as e:
        if str(e).startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {e}") from e


# ---------------------------------------------------------------------------------------------
# the compiled form: arrays for the hot path, and bounds on how far the arm's points can move


@dataclass(frozen=True)
class CompiledSafety:
    """Arrays the per-cycle check uses; built once per config (SafetyConfig.compiled)."""

    dt_s: float
    pos_min_rad: np.ndarray  # (6,)
    pos_max_rad: np.ndarray  # (6,)
    vel_max_rad_s: np.ndarray  # (6,)
    acc_max_rad_s2: np.ndarray  # (6,)
    jerk_max_rad_s3: np.ndarray  # (6,)
    workspace_min_m: np.ndarray  # (3,)
    workspace_max_m: np.ndarray  # (3,)
    zone_names: tuple[str, ...]
    zone_min_m: np.ndarray  # (K, 3), grown by the margin
    zone_max_m: np.ndarray  # (K, 3)
    dh_a_m: tuple[float, ...]
    dh_d_m: tuple[float, ...]
    dh_sin_alpha: tuple[float, ...]
    dh_cos_alpha: tuple[float, ...]
    tool_offset_m: float
    reach_m: np.ndarray  # (8, 6): R[i, j] ≥ distance of link point i from joint j's axis, for every q
    curvature_m: np.ndarray  # (8, 6, 6): bound on |∂²p_i/∂q_j∂q_k| over every q
    moves: np.ndarray  # (8, 6) bool: joint j moves link point i (j ≤ i in 1-based DH numbering)
    jerk_step_py: tuple[float, ...]  # J·dt·INNER: the most the acceleration may change in one cycle
    acc_py: tuple[float, ...]  # A·INNER
    vel_py: tuple[float, ...]  # V·INNER
    pos_min_py: tuple[float, ...]
    pos_max_py: tuple[float, ...]
    workspace_py: tuple[tuple[float, ...], tuple[float, ...]]  # (min, max) as floats
    zones_py: tuple[
        tuple[str, tuple[float, ...], tuple[float, ...]], ...
    ]  # (name, min, max) grown by the margin
    sp_constant_m: float  # S_h + S_s + C + Z_d + Z_r
    reaction_time_s: float
    warning_margin_m: float

    @classmethod
    def build(
        cls, c: SafetyConfig, dh: arm.DH = arm.UR5E, tool_offset_m: float = arm.TOOL_OFFSET_M
    ) -> CompiledSafety:
        j = c.joints
        reach = arm.axis_reach_m(dh, tool_offset_m)
        # ∂p_i/∂q_j = z_j × (p_i − o_j) =: c_j; ∂c_j/∂q_k is c_j or c_k turned by 90° (whichever joint is
        # further out), so |∂²p_i/∂q_j∂q_k| ≤ R[i, max(j, k)].
        jj = np.arange(N_JOINTS)
        curvature = reach[:, np.maximum(jj[:, None], jj[None, :])]  # (8, 6, 6)
        margin = c.keep_out_margin_m
        zmin = np.array([z.min_m for z in c.keep_out], dtype=np.float64).reshape(-1, 3) - margin
        zmax = np.array([z.max_m for z in c.keep_out], dtype=np.float64).reshape(-1, 3) + margin
        return cls(
            dt_s=c.cycle_s,
            pos_min_rad=np.array(j.pos_min_rad),
            pos_max_rad=np.array(j.pos_max_rad),
            vel_max_rad_s=np.array(j.vel_max_rad_s),
            acc_max_rad_s2=np.array(j.acc_max_rad_s2),
            jerk_max_rad_s3=np.array(j.jerk_max_rad_s3),
            workspace_min_m=np.array(c.workspace.min_m),
            workspace_max_m=np.array(c.workspace.max_m),
            zone_names=tuple(z.name for z in c.keep_out),
            zone_min_m=zmin,
            zone_max_m=zmax,
            dh_a_m=tuple(dh.a_m),
            dh_d_m=tuple(dh.d_m),
            dh_sin_alpha=tuple(math.sin(x) for x in dh.alpha_rad),
            dh_cos_alpha=tuple(math.cos(x) for x in dh.alpha_rad),
            tool_offset_m=tool_offset_m,
            reach_m=reach,
            curvature_m=curvature,
            moves=reach > 0,
            jerk_step_py=tuple(x * c.cycle_s * INNER for x in j.jerk_max_rad_s3),
            acc_py=tuple(x * INNER for x in j.acc_max_rad_s2),
            vel_py=tuple(x * INNER for x in j.vel_max_rad_s),
            pos_min_py=j.pos_min_rad,
            pos_max_py=j.pos_max_rad,
            workspace_py=(c.workspace.min_m, c.workspace.max_m),
            zones_py=tuple(
                (z.name, tuple(x - margin for x in z.min_m), tuple(x + margin for x in z.max_m))
                for z in c.keep_out
            ),
            sp_constant_m=c.separation.constant_part_m(),
            reaction_time_s=c.separation.reaction_time_s,
            warning_margin_m=c.separation.warning_margin_m,
        )
