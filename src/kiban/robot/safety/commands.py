"""Command validation: a command the supervisor cannot trust is refused (the arm brakes) with a name —
wrong type or kind, wrong shape, NaN/Inf, a gripper outside [0, 1], a stale or a future timestamp."""

from __future__ import annotations

import numpy as np

from kiban.robot.safety.memory import SupervisorMemory, is_finite
from kiban.robot.safety_config import N_JOINTS, SafetyConfig
from kiban.robot.types import Command, CommandKind


def validate_command(
    command: object, memory: SupervisorMemory, config: SafetyConfig, now_s: float
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """(position target, desired velocity, refusal reason or "")."""
    if not isinstance(command, Command):
        return None, None, f"malformed:type:{type(command).__name__}"
    kind = command.kind
    if not isinstance(kind, str):
        return None, None, "malformed:kind"
    if kind == CommandKind.POSITION:
        raw, name = command.q_rad, "q_rad"
    elif kind == CommandKind.VELOCITY:
        raw, name = command.qd_rad_s, "qd_rad_s"
    else:
        return None, None, "malformed:kind"
    try:
        arr = (
            raw if type(raw) is np.ndarray and raw.dtype == np.float64 else np.asarray(raw, dtype=np.float64)
        )
    except Exception:  # noqa: BLE001  (anything a caller put there: nested lists, objects, huge ints)
        return None, None, f"malformed:{name}"
    if raw is None or arr.shape != (N_JOINTS,):
        return None, None, f"malformed:{name}:shape"
    if not np.isfinite(arr).all():
        return None, None, f"non_finite:{name}"
    if not is_finite(command.t_s):
        return None, None, "malformed:t_s"
    g = command.gripper
    if g is not None and not (is_finite(g) and 0.0 <= g <= 1.0):
        return None, None, "gripper_out_of_range"
    age = now_s - command.t_s
    if age > config.command_timeout_s:
        return None, None, f"stale_command:{age:.3f}s"
    if -age > config.command_timeout_s:
        return None, None, f"future_command:{-age:.3f}s"
    dt = config.cycle_s
    if name == "q_rad":
        return arr, (arr - memory.last_q_rad) / dt, ""
    return memory.last_q_rad + arr * dt, arr, ""
