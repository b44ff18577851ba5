"""What the supervisor carries from one cycle to the next (it is otherwise stateless), and liveness.

memory = initial_memory(robot.observe())      # at rest where the arm is; starting is a heartbeat
memory = heartbeat(memory, now_s)              # proof of life from the supervised side
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from kiban.robot.safety.plan import plan_grid
from kiban.robot.safety.zones import forward_points
from kiban.robot.safety_config import N_JOINTS, CompiledSafety
from kiban.robot.types import Command, RobotState


@dataclass(frozen=True, slots=True)
class SupervisorMemory:
    """What the supervisor carries from one cycle to the next (it is otherwise stateless)."""

    last_sent: Command | None
    last_q_rad: np.ndarray  # (6,) the last position sent
    last_qd_rad_s: np.ndarray  # (6,) its finite-difference velocity
    last_qdd_rad_s2: np.ndarray  # (6,) its finite-difference acceleration
    points_m: np.ndarray | None  # (8, 3) link points at last_q_rad; None until the first cycle
    point_speed_m_s: float  # the fastest link point over the last step (v_r of S_p)
    plan_q0_rad: np.ndarray  # (6,) the braking plan verified for the current state starts here ...
    plan_v0_rad_s: np.ndarray  # (6,) ... at this velocity
    plan_a0_rad_s2: np.ndarray  # (6,) ... and this acceleration,
    plan_index: int  # its length is plan_grid()[0][plan_index] cycles,
    plan_k: int  # and the current state is its step k
    estop_latched: bool = False
    estop_reason: str = ""
    last_heartbeat_t_s: float | None = None
    reset_by: str | None = None
    approach: tuple[int, ...] | None = None
    """Cycles left, per joint, of the approach plan to a clamped position request (joint_limits.py);
    None when the last request was not limited by one."""
    requests: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None = None
    """The last three positions requested (the newest first) while following: the request's own speed,
    acceleration and jerk, so that a clamped joint rejoins a MOVING request instead of stopping at it."""


def initial_memory(state: RobotState) -> SupervisorMemory:
    """Start at the measured position, at rest; starting counts as a heartbeat. Raises ValueError on a
    state that is not finite (the supervisor does not start on a robot it cannot see)."""
    q = np.array(state.q_rad, dtype=np.float64).reshape(-1)
    if q.shape != (N_JOINTS,) or not np.all(np.isfinite(q)) or not is_finite(state.t_s):
        raise ValueError(
            f"cannot start the supervisor on a state with q_rad={state.q_rad!r}, t_s={state.t_s!r}"
        )
    plan_grid()  # built here (~8 ms, once per process), not in the first control cycle
    zero = np.zeros(N_JOINTS)
    return SupervisorMemory(
        None, q, zero, zero, None, 0.0, q, zero, zero, 0, 0, last_heartbeat_t_s=float(state.t_s)
    )


def heartbeat(memory: SupervisorMemory, now_s: float) -> SupervisorMemory:
    """Proof of life from the supervised side; a non-finite time is no heartbeat."""
    return replace(memory, last_heartbeat_t_s=float(now_s)) if is_finite(now_s) else memory


def is_finite(x: object) -> bool:
    """A finite real number (bool is not a number here)."""
    if type(x) is float:  # the usual case, first
        return math.isfinite(x)
    return (
        isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool) and math.isfinite(x)
    )


def with_points(memory: SupervisorMemory, comp: CompiledSafety) -> SupervisorMemory:
    """initial_memory has no kinematics (no config): the first cycle adds the link points."""
    if memory.points_m is not None:
        return memory
    return replace(memory, points_m=np.array(forward_points(memory.last_q_rad.tolist(), comp)[0]))


def sequence_number(command: object) -> int:
    seq = getattr(command, "seq", 0)
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else 0


def advance(
    memory: SupervisorMemory,
    sent: Command,
    q_new: np.ndarray,
    pts: np.ndarray,
    comp: CompiledSafety,
    plan: tuple,
    approach: tuple[int, ...] | None = None,
    requests: tuple | None = None,
) -> SupervisorMemory:
    """The memory after sending q_new; `plan` is (q0, v0, a0, index, k): k = 0 starts a new plan here."""
    dt = comp.dt_s
    q_new = np.array(q_new, dtype=np.float64)  # a copy: the caller's array may change later
    v_new = (q_new - memory.last_q_rad) / dt
    a_new = (v_new - memory.last_qd_rad_s) / dt
    d = pts - memory.points_m  # (8, 3)
    speed = math.sqrt(float((d * d).sum(1).max())) / dt
    q0, v0, a0, gi, k = plan
    if k == 0:
        q0, v0, a0 = q_new, np.array(v0, dtype=np.float64), np.array(a0, dtype=np.float64)
    return SupervisorMemory(
        sent, q_new, v_new, a_new, pts, speed, q0, v0, a0, gi, k,
        memory.estop_latched, memory.estop_reason, memory.last_heartbeat_t_s, memory.reset_by, approach, requests,
    )  # fmt: skip
