"""The safety supervisor: one pure function decides, every control cycle, what reaches the robot.

    memory = initial_memory(robot.observe())
    loop:   memory = heartbeat(memory, now_s)                     # from whoever must prove liveness
            verdict, memory = supervise(command, state, config, memory, now_s=now_s)
            robot.send(verdict.command_sent)                       # only this, always a POSITION command

THIS IS A PROTECTIVE LAYER IN FRONT OF THE ROBOT'S OWN CERTIFIED SAFETY CONTROLLER AND ITS HARD-WIRED
EMERGENCY STOP, NOT A SUBSTITUTE FOR EITHER. The arm's safety functions (ISO 10218-1 / -2 safety-rated
monitored stops, speed and position limits, the ISO 13850 e-stop circuit) stay configured and in charge;
this code keeps a policy, a skill or a language model from ever asking them to intervene.

Flow of one cycle (first match decides the status; every intervention returns named reasons):

    e-stop latched ──────────────────────────────▶ ESTOP            "estop_latched:<why>"
    bad clock/state, heartbeat lost, stale state,
    tracking error, person within S_p ───────────▶ PROTECTIVE_STOP  "heartbeat_lost:0.120s", "separation:0.93m<1.21m"
    wrong type/kind/shape, NaN/Inf, gripper ∉ [0,1],
    stale or future command ─────────────────────▶ REFUSED          "non_finite:q_rad", "stale_command:0.012s"
    otherwise follow the request, limited ───────▶ OK | CLAMPED | SLOWED (person within S_p + margin)

What "limited" means. The supervisor owns the sequence of positions it sends; their finite differences
(over cycle_s) are the velocity, acceleration and jerk it guarantees. It keeps, with every command it
accepts, a BRAKING PLAN from that state to rest: a cubic-velocity (discrete Hermite) profile, the same
shape on every joint, v_k = φ_k·v + dt·ψ_k·a, that respects the acceleration and jerk limits. A request
is accepted (clipped to the one-cycle velocity/acceleration/jerk window) only if, from where it leads,
braking along its plan would keep every limit: joint positions, speeds, acceleration and jerk; the tool
speed cap; the workspace and the keep-out zones for every link segment, checked over the whole joint-space
box the plan sweeps with rigorous first- and second-order bounds on how far each link point moves. If
the request fails, it is blended toward the braking step (½, ⅕); if that fails too, or any stop or
refusal applies, the next step of the verified plan is sent. So every stop is an ISO 10218 / IEC 60204-1
stop category 2 (controlled braking, then holding position, drives powered); the latched e-stop brakes
the same way (category 1 behaviour: on hardware the robot's own e-stop circuit removes power). Holding
position at once would itself break the acceleration limit of a moving arm.

The guarantee, by induction over cycles from a robot at rest in a valid configuration: every command
sent has finite positions within the joint limits, finite-difference velocity, acceleration and jerk
within their limits, every link point inside the workspace and every link segment at least the margin
away from every keep-out zone, and tool speed within the cap in force when its braking plan was accepted.
When the cap drops (a person comes near) the arm brakes until it is under it; when a person is within
S_p the arm brakes to rest within its plan's length and stays there. tests/unit/robot/test_safety_properties.py
checks exactly this on generated commands.

Cost: ~45 µs per nominal cycle (p50, one CPU core; FK in plain floats, 6-vectors as lists): see
the lead's loop timing. `memory_in_motion` starts the supervisor on a moving arm (tests use it).

Standards: ISO 10218-1:2011 (§5.4 stops, §5.6 reduced speed ≤ 250 mm/s), ISO 10218-2:2011, ISO/TS
15066:2016 §5.5.4 (speed and separation monitoring), ISO 13850:2015 (e-stop: latched, reset only by a
deliberate act), ISO 13855:2010 (approach speed, intrusion distance), IEC 60204-1 §9.2.2 (stop categories).
Nothing here imports a simulator, a policy or a driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache

import numpy as np

from kiban.errors import KibanError
from kiban.robot.safety_config import (
    BRAKE_CYCLES_MAX,
    N_JOINTS,
    CompiledSafety,
    SafetyConfig,
    SeparationConfig,
)
from kiban.robot.types import Command, CommandKind, RobotState, Status, Verdict

STANDSTILL_RAD_S = 0.01  # a reset needs the measured joints slower than this
BLENDS = (0.5, 0.2)  # fractions of a failed request tried before braking
POINT_NAMES = ("base", "link1", "link2", "link3", "link4", "link5", "link6", "tool")
"""Link points are DH frame origins (base, 1..6) and the tool centre; a segment is named by its far end:
link2 is the upper arm, link3 the forearm, link4..link6 the wrist, tool the gripper."""
_STOPS = ("joint_position_limit", "workspace", "keep_out")


class ResetRefused(KibanError):
    """An e-stop reset while a fault persists; `reasons` names each fault."""

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__(f"e-stop reset refused: {', '.join(reasons)}")
        self.reasons = reasons


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
    plan_index: int  # its length is _plan_grid()[0][plan_index] cycles,
    plan_k: int  # and the current state is its step k
    estop_latched: bool = False
    estop_reason: str = ""
    last_heartbeat_t_s: float | None = None
    reset_by: str | None = None


def initial_memory(state: RobotState) -> SupervisorMemory:
    """Start at the measured position, at rest; starting counts as a heartbeat. Raises ValueError on a
    state that is not finite (the supervisor does not start on a robot it cannot see)."""
    q = np.array(state.q_rad, dtype=np.float64).reshape(-1)
    if q.shape != (N_JOINTS,) or not np.all(np.isfinite(q)) or not _finite(state.t_s):
        raise ValueError(
            f"cannot start the supervisor on a state with q_rad={state.q_rad!r}, t_s={state.t_s!r}"
        )
    _plan_grid()  # built here (~8 ms, once per process), not in the first control cycle
    zero = np.zeros(N_JOINTS)
    return SupervisorMemory(
        None, q, zero, zero, None, 0.0, q, zero, zero, 0, 0, last_heartbeat_t_s=float(state.t_s)
    )


def memory_in_motion(
    q_rad: np.ndarray, qd_rad_s: np.ndarray, qdd_rad_s2: np.ndarray, config: SafetyConfig, *, t_s: float
) -> SupervisorMemory | None:
    """A memory whose last sent command left the arm at q with finite-difference velocity qd and
    acceleration qdd, if the supervisor would have accepted that state (its braking plan keeps every
    limit); None if not. For tests that start mid-motion, and a bridge taking over a moving arm."""
    dt = config.cycle_s
    q, v, a = (np.array(x, dtype=np.float64) for x in (q_rad, qd_rad_s, qdd_rad_s2))
    before = initial_memory(RobotState(t_s, q - v * dt, np.zeros(N_JOINTS)))
    comp = config.compiled
    before = replace(before, last_qd_rad_s=v - a * dt, points_m=np.array(_fk((q - v * dt).tolist(), comp)[0]))
    gi, _, pts = _check(q, v, a, before, comp, config.tool_speed_max_m_s)
    if gi < 0:
        return None
    return _advance(before, None, q, np.array(pts), comp, (q, v, a, gi, 0))


def heartbeat(memory: SupervisorMemory, now_s: float) -> SupervisorMemory:
    """Proof of life from the supervised side; a non-finite time is no heartbeat."""
    return replace(memory, last_heartbeat_t_s=float(now_s)) if _finite(now_s) else memory


def estop(memory: SupervisorMemory, reason: str) -> SupervisorMemory:
    """Latch the emergency stop (ISO 13850): only reset() clears it. The first reason is kept."""
    return (
        memory
        if memory.estop_latched
        else replace(memory, estop_latched=True, estop_reason=str(reason) or "estop")
    )


def reset(
    memory: SupervisorMemory, state: RobotState, config: SafetyConfig, *, operator: str, now_s: float
) -> SupervisorMemory:
    """Clear a latched e-stop: a deliberate act by a named operator, refused (ResetRefused) while the arm or
    its command is still moving, the heartbeat or the state is lost, or a person is within S_p."""
    if not memory.estop_latched:
        return memory
    faults = [] if isinstance(operator, str) and operator.strip() else ["no_operator"]
    if np.any(memory.last_qd_rad_s) or np.any(memory.last_qdd_rad_s2):
        faults.append("command_moving")
    qd = getattr(state, "qd_rad_s", None)
    if (
        not isinstance(qd, np.ndarray)
        or qd.shape != (N_JOINTS,)
        or not np.all(np.abs(qd) <= STANDSTILL_RAD_S)
    ):
        faults.append("robot_moving")
    faults += _state_faults(state, memory, config, now_s)
    faults += [
        r
        for r in _separation(state, _with_points(memory, config.compiled), config.compiled)[0]
        if r.startswith("separation")
    ]
    if faults:
        raise ResetRefused(tuple(faults))
    return replace(memory, estop_latched=False, estop_reason="", reset_by=operator.strip())


def protective_separation_m(robot_speed_m_s: float, sep: SeparationConfig) -> float:
    """ISO/TS 15066 §5.5.4: S_p = v_h (T_r + T_s) + v_r T_r + S_s + C + Z_d + Z_r.

    >>> s = SeparationConfig(1.6, 0.1, 0.3, 0.1, 0.2, 0.1, 0.05, 0.5)
    >>> round(protective_separation_m(1.0, s), 6)   # 0.64 + 0.1 + 0.1 + 0.2 + 0.1 + 0.05
    1.19
    """
    return sep.constant_part_m() + robot_speed_m_s * sep.reaction_time_s


def supervise(
    command: Command | object,
    state: RobotState,
    config: SafetyConfig,
    memory: SupervisorMemory,
    *,
    now_s: float,
) -> tuple[Verdict, SupervisorMemory]:
    """Decide one cycle: the command to send, its status and reasons, and the memory for the next cycle.
    Pure and total: any input (a wrong type, NaN, a stale time) gives a verdict, never an exception."""
    comp = config.compiled
    memory = _with_points(memory, comp)
    reasons: list[str] = []
    if memory.estop_latched:
        return _brake(memory, comp, Status.ESTOP, [f"estop_latched:{memory.estop_reason}"], now_s, command)
    stops = _state_faults(state, memory, config, now_s)
    sep_reasons, cap = _separation(state, memory, comp, config) if not stops else ([], 0.0)
    stops += [r for r in sep_reasons if not r.startswith("collaborative")]
    if stops:
        return _brake(memory, comp, Status.PROTECTIVE_STOP, stops, now_s, command)
    reasons += sep_reasons
    target, v_des, refusal = _validate(command, memory, config, now_s)
    if refusal:
        return _brake(memory, comp, Status.REFUSED, [*reasons, refusal], now_s, command)
    return _follow(command, target, v_des, memory, comp, cap, reasons, now_s)


# ---------------------------------------------------------------------------------------------
# intervention log


@dataclass
class InterventionLog:
    """Every cycle that was not OK, with its reasons, plus counts per reason (one JSON-able dict each)."""

    entries: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def record(self, verdict: Verdict, *, t_s: float) -> None:
        if verdict.status is Status.OK:
            return
        self.entries.append({"t_s": t_s, "status": str(verdict.status), "reasons": list(verdict.reasons)})
        for r in verdict.reasons:
            key = r.split(":", 1)[0]
            self.counts[key] = self.counts.get(key, 0) + 1


# ---------------------------------------------------------------------------------------------
# checks on the inputs


def _with_points(memory: SupervisorMemory, comp: CompiledSafety) -> SupervisorMemory:
    """initial_memory has no kinematics (no config): the first cycle adds the link points."""
    if memory.points_m is not None:
        return memory
    return replace(memory, points_m=np.array(_fk(memory.last_q_rad.tolist(), comp)[0]))


def _finite(x: object) -> bool:
    if type(x) is float:  # the usual case, first
        return math.isfinite(x)
    return (
        isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool) and math.isfinite(x)
    )


def _state_faults(
    state: RobotState, memory: SupervisorMemory, config: SafetyConfig, now_s: float
) -> list[str]:
    """Reasons for a protective stop that do not depend on the command."""
    if not _finite(now_s):
        return ["clock_invalid"]
    if not isinstance(state, RobotState) or not _finite(state.t_s):
        return ["state_invalid"]
    q = state.q_rad
    if not isinstance(q, np.ndarray) or q.shape != (N_JOINTS,) or not np.isfinite(q).all():
        return ["state_invalid:q_rad"]
    faults = []
    hb = memory.last_heartbeat_t_s
    if hb is None or now_s - hb > config.heartbeat_timeout_s:
        faults.append("heartbeat_lost" if hb is None else f"heartbeat_lost:{now_s - hb:.3f}s")
    if now_s - state.t_s > config.heartbeat_timeout_s:
        faults.append(f"stale_state:{now_s - state.t_s:.3f}s")
    err = np.abs(q - memory.last_q_rad)
    if err.max() > config.tracking_error_max_rad:
        j = int(np.argmax(err))
        faults.append(f"tracking_error:j{j + 1}:{err[j]:.3f}rad")
    return faults


def _separation(
    state: RobotState, memory: SupervisorMemory, comp: CompiledSafety, config: SafetyConfig | None = None
) -> tuple[list[str], float]:
    """Speed and separation monitoring: (reasons, tool speed cap). The distance is to the nearest link
    segment of the last sent configuration; v_r is its fastest link point's speed."""
    cap = config.tool_speed_max_m_s if config else 0.0
    people = getattr(state, "people_m", ())
    if not people:
        return [], cap
    pts = memory.points_m.tolist()  # (8, 3) as floats: 7 segments, base column to tool
    nearest = math.inf
    for person in people:
        p = np.asarray(person, dtype=np.float64) if isinstance(person, np.ndarray | list | tuple) else None
        if p is None or p.shape != (3,) or not np.isfinite(p).all():
            return ["separation:sensor_fault"], cap
        nearest = min(nearest, _distance_to_polyline(p.tolist(), pts))
    s_p = comp.sp_constant_m + memory.point_speed_m_s * comp.reaction_time_s
    if nearest < s_p:
        return [f"separation:{nearest:.2f}m<{s_p:.2f}m"], cap
    if nearest < s_p + comp.warning_margin_m and config:
        return [
            f"collaborative_speed:{nearest:.2f}m<{s_p + comp.warning_margin_m:.2f}m"
        ], config.collaborative_speed_m_s
    return [], cap


def _distance_to_polyline(p: list[float], pts: list[list[float]]) -> float:
    """Distance from point p to the nearest of the segments pts[i] → pts[i+1]."""
    px, py, pz = p
    best = math.inf
    for (ax, ay, az), (bx, by, bz) in zip(pts[:-1], pts[1:], strict=True):
        dx, dy, dz = bx - ax, by - ay, bz - az
        dd = dx * dx + dy * dy + dz * dz
        t = 0.0 if dd < 1e-18 else min(1.0, max(0.0, ((px - ax) * dx + (py - ay) * dy + (pz - az) * dz) / dd))
        ex, ey, ez = ax + t * dx - px, ay + t * dy - py, az + t * dz - pz
        best = min(best, ex * ex + ey * ey + ez * ez)
    return math.sqrt(best)


def _validate(
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
    if not _finite(command.t_s):
        return None, None, "malformed:t_s"
    g = command.gripper
    if g is not None and not (_finite(g) and 0.0 <= g <= 1.0):
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


# ---------------------------------------------------------------------------------------------
# following a request, or braking


def _follow(
    command: Command,
    target: np.ndarray,
    v_des: np.ndarray,
    memory: SupervisorMemory,
    comp: CompiledSafety,
    cap: float,
    reasons: list[str],
    now_s: float,
) -> tuple[Verdict, SupervisorMemory]:
    """Clip the request to the one-cycle window, check its braking plan; blend toward braking if needed."""
    dt = comp.dt_s
    slowed = bool(reasons)  # the only reasons so far are collaborative-speed ones
    q, v, a = memory.last_q_rad, memory.last_qd_rad_s, memory.last_qdd_rad_s2
    a_des = (v_des - v) / dt  # (6,) what the request needs
    J, A, V = comp.jerk_step_py, comp.acc_py, comp.vel_py
    vl, al = v.tolist(), a.tolist()
    inside = True
    for j, x in enumerate(a_des.tolist()):  # the one-cycle window: jerk, acceleration, velocity
        vj, aj = vl[j], al[j]
        if not max(aj - J[j], -A[j], (-V[j] - vj) / dt) <= x <= min(aj + J[j], A[j], (V[j] - vj) / dt):
            inside = False
            break
    if not inside:
        jdt, amax, vmax = np.array(J), np.array(A), np.array(V)
        bounds = ((a - jdt, a + jdt), (-amax, amax), ((-vmax - v) / dt, (vmax - v) / dt))  # jerk, acc, vel
        lo = np.maximum(
            np.maximum(bounds[0][0], bounds[1][0]), bounds[2][0]
        )  # (6,) feasible next accelerations
        hi = np.minimum(np.minimum(bounds[0][1], bounds[1][1]), bounds[2][1])
        reasons = [*reasons, *_window_reasons(a_des, lo, hi, bounds)]
        if command.kind == CommandKind.POSITION:  # approach a far target on a braking curve, not at full tilt
            delta = target - q
            v_des = np.sign(delta) * np.minimum(np.abs(delta) / dt, np.sqrt(amax * np.abs(delta)))
        err = v_des - v  # reach the velocity with the acceleration ramping to zero: |a| = sqrt(2 J |err|)
        a_goal = np.sign(err) * np.minimum(np.sqrt(2 * (jdt / dt) * np.abs(err)), amax)
        a_new = np.minimum(np.maximum(np.where(np.abs(err) < np.abs(a_goal) * dt, err / dt, a_goal), lo), hi)
        v_new = v + a_new * dt
        q_new = q + v_new * dt
    else:
        a_new, v_new, q_new = a_des, v_des, target
    gi, why, pts = _check(q_new, v_new, a_new, memory, comp, cap)
    if gi < 0:
        reasons = [*reasons, *why]
        _, _, a_b = _plan_step(memory, dt)
        for lam in BLENDS:
            a_l = a_b + lam * (a_new - a_b)
            v_l = v + a_l * dt
            q_l = q + v_l * dt
            gi, _, pts = _check(q_l, v_l, a_l, memory, comp, cap)
            if gi >= 0:
                q_new, v_new, a_new = q_l, v_l, a_l
                break
        else:
            stop = any(r.startswith(_STOPS) for r in why)
            status = Status.PROTECTIVE_STOP if stop else Status.SLOWED if slowed else Status.CLAMPED
            return _brake(memory, comp, status, reasons, now_s, command)
    status = Status.SLOWED if slowed else Status.CLAMPED if reasons else Status.OK
    if status is Status.OK and q_new is command.q_rad:
        sent = command  # unchanged, the very object
    else:
        g = command.gripper
        sent = Command(
            now_s, CommandKind.POSITION, q_new, None, None if g is None else float(g), _seq(command)
        )
    verdict = Verdict(sent, status, tuple(dict.fromkeys(reasons)))  # each reason once, in order
    return verdict, _advance(memory, sent, q_new, np.array(pts), comp, (q_new, v_new, a_new, gi, 0))


def _seq(command: object) -> int:
    seq = getattr(command, "seq", 0)
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else 0


def _window_reasons(a_des: np.ndarray, lo: np.ndarray, hi: np.ndarray, bounds: tuple) -> list[str]:
    """Name the limit that clipped each joint: the tightest bound on the side the request crossed."""
    out = []
    names = ("jerk", "acceleration", "velocity")
    for j in range(N_JOINTS):
        x = a_des[j]
        if x > hi[j]:
            out.append(f"joint_{names[int(np.argmin([b[1][j] for b in bounds]))]}_limit:j{j + 1}")
        elif x < lo[j]:
            out.append(f"joint_{names[int(np.argmax([b[0][j] for b in bounds]))]}_limit:j{j + 1}")
    return out


def _brake(
    memory: SupervisorMemory,
    comp: CompiledSafety,
    status: Status,
    reasons: list[str],
    now_s: float,
    command: object,
) -> tuple[Verdict, SupervisorMemory]:
    """Send the next step of the verified braking plan (at rest: the same position again), gripper as is."""
    q_new, _, _ = _plan_step(memory, comp.dt_s)
    sent = Command(now_s, CommandKind.POSITION, q_new, None, None, _seq(command))
    pts = np.array(_fk(q_new.tolist(), comp)[0])
    plan = (
        memory.plan_q0_rad,
        memory.plan_v0_rad_s,
        memory.plan_a0_rad_s2,
        memory.plan_index,
        memory.plan_k + 1,
    )
    return Verdict(sent, status, tuple(dict.fromkeys(reasons))), _advance(
        memory, sent, q_new, pts, comp, plan
    )


def _advance(
    memory: SupervisorMemory,
    sent: Command,
    q_new: np.ndarray,
    pts: np.ndarray,
    comp: CompiledSafety,
    plan: tuple,
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
        memory.estop_latched, memory.estop_reason, memory.last_heartbeat_t_s, memory.reset_by,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the braking plan: a_k = a + c1 k + c2 k² (k = 0..N) with a_N = 0 and Σ a_k dt = −v, so v_N = 0


@dataclass(frozen=True)
class _Plan:
    n: int
    gamma: float
    beta2: float
    alpha2: float
    psi_max: float  # max_k ψ_k
    phi_sum: float  # Φ_N = Σ φ_k: displacement per unit of initial velocity, in cycles
    psi_sum: float  # Ψ_N = Σ ψ_k
    k1: float  # max_k φ_k Φ_k   (tool-speed bound terms, see _check)
    k2: float  # max_k φ_k Ψ_k
    k3: float  # max_k ψ_k Φ_k
    k4: float  # max_k ψ_k Ψ_k


@cache
def _plan_grid() -> tuple[tuple[int, ...], tuple[_Plan, ...]]:
    """Plan lengths 2 .. BRAKE_CYCLES_MAX, 5 % apart, with their shape constants (computed once)."""
    ns = sorted({max(2, round(2 * 1.05**i)) for i in range(400) if 2 * 1.05**i <= BRAKE_CYCLES_MAX})
    plans = []
    for n in ns:
        k = np.arange(n + 1, dtype=np.float64)
        gamma, beta2, alpha2 = 1 / n + 3 / (n + 1), 3 / (n * (n + 1)), 6 / (n**3 - n)
        phi = 1 + k * (k + 1) * (2 * k + 1 - 3 * n) / (n**3 - n)  # velocity response to v, 1 → 0
        psi = k - gamma * k * (k + 1) / 2 + beta2 * k * (k + 1) * (2 * k + 1) / 6  # response to a·dt, ≥ 0
        Phi, Psi = np.cumsum(phi) - 1, np.cumsum(psi)  # Σ_{i=1..k}
        plans.append(
            _Plan(n, gamma, beta2, alpha2, float(psi.max()), float(Phi[-1]), float(Psi[-1]),
                  float(np.max(phi * Phi)), float(np.max(phi * Psi)), float(np.max(psi * Phi)), float(np.max(psi * Psi)))
        )  # fmt: skip
    return tuple(ns), tuple(plans)


def _offsets(p: _Plan, k: int) -> tuple[float, float]:
    """(Φ_k, Ψ_k) in closed form: q_k = q_0 + dt·Φ_k·v + dt²·Ψ_k·a."""
    n = p.n
    k = min(k, n)
    s1, s2 = k * (k + 1) / 2, k * (k + 1) * (2 * k + 1) / 6
    phi_c = k + (2 * s1 * s1 + 3 * s2 + s1 - 3 * n * (s2 + s1)) / (n**3 - n)
    psi_c = s1 - p.gamma * k * (k + 1) * (k + 2) / 6 + p.beta2 * k * (k + 1) ** 2 * (k + 2) / 12
    return phi_c, psi_c


def _plan_step(memory: SupervisorMemory, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The next position of the current braking plan, with its finite-difference velocity and acceleration."""
    p = _plan_grid()[1][memory.plan_index]
    phi_c, psi_c = _offsets(p, memory.plan_k + 1)
    q = memory.plan_q0_rad + (dt * phi_c) * memory.plan_v0_rad_s + (dt * dt * psi_c) * memory.plan_a0_rad_s2
    v = (q - memory.last_q_rad) / dt
    return q, v, (v - memory.last_qd_rad_s) / dt


def _fits(p: _Plan, vd: list[float], a: list[float], comp: CompiledSafety) -> bool:
    """Does the plan of length p.n from (v = vd·dt, a) keep jerk and acceleration within limits on every
    joint? Jerk is linear in k (extremes: first and last step); acceleration is quadratic (check its top)."""
    n, b2, al2, g = p.n, p.beta2, p.alpha2, p.gamma
    nal2, m = n * al2, 2 * n - 1
    for j in range(N_JOINTS):
        aj, vj, lim = a[j], vd[j], comp.jerk_step_py[j]
        if abs(aj) > comp.acc_py[j]:
            return False  # the start itself (the supervisor's own candidates never get here)
        c2 = b2 * aj + al2 * vj
        c1 = -g * aj - nal2 * vj
        if abs(c1 + c2) > lim or abs(c1 + m * c2) > lim:
            return False
        if c2 != 0.0 and 0.0 < -c1 / (2 * c2) < n and abs(aj - c1 * c1 / (4 * c2)) > comp.acc_py[j]:
            return False
    return True


def _plan_index(v: list[float], a: list[float], comp: CompiledSafety, start: int) -> int:
    """The shortest plan near `start` (the last plan's index) that fits; -1 if none does."""
    if not (any(v) or any(a)):
        return 0
    plans = _plan_grid()[1]
    dt = comp.dt_s
    vd = [x / dt for x in v]
    gi = start
    if _fits(plans[gi], vd, a, comp):
        while gi > 0 and _fits(plans[gi - 1], vd, a, comp):
            gi -= 1
        return gi
    lo, step = gi, 1  # lo fails; search upward, doubling, then bisect back
    while True:
        gi = min(lo + step, len(plans) - 1)
        if _fits(plans[gi], vd, a, comp):
            break
        if gi == len(plans) - 1:
            return -1
        lo, step = gi, step * 2
    while gi - lo > 1:
        mid = (lo + gi) // 2
        if _fits(plans[mid], vd, a, comp):
            gi = mid
        else:
            lo = mid
    return gi


# ---------------------------------------------------------------------------------------------
# the check of a candidate state (q, v, a): can the arm brake from it keeping every limit?


def _fk(
    q: list[float], comp: CompiledSafety
) -> tuple[list[tuple[float, float, float]], list[tuple[float, ...]]]:
    """Link points (8: base, frames 1..6, tool) and joint axes z_0..z_5 of standard DH, in plain floats
    (5x faster than 4x4 matrices for 6 joints; equal to arm.forward to 1e-15, tested)."""
    x0, x1, x2, y0, y1, y2, z0, z1, z2 = 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0
    p0 = p1 = p2 = 0.0
    pts, axes = [(0.0, 0.0, 0.0)], []
    for i in range(N_JOINTS):
        axes.append((z0, z1, z2))
        c, s = math.cos(q[i]), math.sin(q[i])
        a0, a1, a2 = c * x0 + s * y0, c * x1 + s * y1, c * x2 + s * y2  # Rz(θ): new x
        b0, b1, b2 = c * y0 - s * x0, c * y1 - s * x1, c * y2 - s * x2  # new y
        d, a = comp.dh_d_m[i], comp.dh_a_m[i]
        p0, p1, p2 = p0 + d * z0 + a * a0, p1 + d * z1 + a * a1, p2 + d * z2 + a * a2  # Tz(d) Tx(a)
        ca, sa = comp.dh_cos_alpha[i], comp.dh_sin_alpha[i]  # Rx(α)
        x0, x1, x2 = a0, a1, a2
        y0, y1, y2, z0, z1, z2 = (
            ca * b0 + sa * z0, ca * b1 + sa * z1, ca * b2 + sa * z2, ca * z0 - sa * b0, ca * z1 - sa * b1, ca * z2 - sa * b2
        )  # fmt: skip
        pts.append((p0, p1, p2))
    t = comp.tool_offset_m
    pts.append((p0 + t * z0, p1 + t * z1, p2 + t * z2))
    return pts, axes


def _check(
    q: np.ndarray, v: np.ndarray, a: np.ndarray, memory: SupervisorMemory, comp: CompiledSafety, cap: float
) -> tuple[int, list[str], list | None]:
    """(plan index or -1, reasons, link points at q). Every bound is an upper bound (see module doc)."""
    vl, al, ql = v.tolist(), a.tolist(), q.tolist()
    gi = _plan_index(vl, al, comp, memory.plan_index)
    if gi < 0:
        return -1, ["brake_infeasible"], None
    p = _plan_grid()[1][gi]
    dt = comp.dt_s
    fa, fv, fd = dt * p.psi_max, dt * p.phi_sum, dt * dt * p.psi_sum
    h, speed_bad, pos_bad = [], [], []
    for j in range(N_JOINTS):
        vj, aj = vl[j], al[j]
        av, aa = abs(vj), abs(aj) * fa  # |v_k| ≤ φ_k|v| + dt ψ_k|a| with φ ∈ [0, 1], ψ ≥ 0
        if (av + aa if vj * aj > 0 else max(av, aa)) > comp.vel_py[j]:
            speed_bad.append(f"joint_velocity_limit:j{j + 1}")
        dv, da = vj * fv, aj * fd  # braking displacement: both parts are monotone in k
        lo = min(dv, 0.0) + min(da, 0.0)
        hi = max(dv, 0.0) + max(da, 0.0)
        if ql[j] + lo < comp.pos_min_py[j] or ql[j] + hi > comp.pos_max_py[j]:
            pos_bad.append(f"joint_position_limit:j{j + 1}")
        h.append(max(-lo, hi))
    if speed_bad or pos_bad:
        return -1, speed_bad + pos_bad, None
    pts, axes = _fk(ql, comp)
    t0, t1, t2 = pts[7]
    o0, o1, o2 = memory.points_m[7].tolist()
    chord = math.sqrt((t0 - o0) ** 2 + (t1 - o1) ** 2 + (t2 - o2) ** 2) / dt
    if chord > cap:
        return -1, [f"tool_speed:{chord:.3f}m/s>{cap:.3f}m/s"], None
    if any(h):
        # Tool velocity at q for joint velocity w: J w, with column j = z_j × (p_tool − o_j). Along the plan
        # |J(q_k) w| ≤ |J(q) w| + |w|ᵀ M D_k (M: curvature bound, D_k: path length so far), so with
        # v_k = φ_k v + dt ψ_k a:  speed_k ≤ |Jv| + dt·k1·vMv + dt|Ja|ψ_max + dt²(k2+k3)·vMa + dt³·k4·aMa.
        u0 = u1 = u2 = w0 = w1 = w2 = 0.0
        for j in range(N_JOINTS):
            (c0, c1, c2), (r0, r1, r2) = axes[j], pts[j]
            r0, r1, r2 = t0 - r0, t1 - r1, t2 - r2
            x, y, z = c1 * r2 - c2 * r1, c2 * r0 - c0 * r2, c0 * r1 - c1 * r0
            u0, u1, u2 = u0 + x * vl[j], u1 + y * vl[j], u2 + z * vl[j]
            w0, w1, w2 = w0 + x * al[j], w1 + y * al[j], w2 + z * al[j]
        X = np.abs(np.stack((v, a)))  # (2, 6)
        (s_vv, s_va), (_, s_aa) = (X @ comp.curvature_m[7] @ X.T).tolist()  # |v|ᵀM|v|, |v|ᵀM|a|, |a|ᵀM|a|
        bound = (
            math.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
            + dt * (p.k1 * s_vv + p.psi_max * math.sqrt(w0 * w0 + w1 * w1 + w2 * w2))
            + dt * dt * (p.k2 + p.k3) * s_va
            + dt**3 * p.k4 * s_aa
        )
        if bound > cap:
            return -1, [f"tool_speed:{bound:.3f}m/s>{cap:.3f}m/s"], None
    hv = np.array(h)
    why = _zones(pts, (comp.reach_m @ hv).tolist(), comp)  # ρ_i = Σ_j R̂_ij h_j: cheap, loose
    if why and any(h):  # near a wall or a zone: the bound with the actual levers is tighter
        P = np.array(pts)  # (8, 3)
        D = P[:, None, :] - P[None, :N_JOINTS, :]  # (8, 6, 3) from each joint's origin
        along = D @ np.array(axes).T  # (8, 6, 6); the diagonal pairs D[i, j] with axis j
        along = along[:, np.arange(N_JOINTS), np.arange(N_JOINTS)]  # (8, 6)
        R = np.sqrt(np.maximum((D * D).sum(-1) - along * along, 0.0)) * comp.moves  # distance to each axis
        rho = np.minimum(R @ hv + 0.5 * ((comp.curvature_m @ hv) @ hv), comp.reach_m @ hv)
        why = _zones(pts, rho.tolist(), comp)
    return (-1, why, None) if why else (gi, [], pts)


def _zones(pts: list[tuple[float, float, float]], rho: list[float], comp: CompiledSafety) -> list[str]:
    """Workspace and keep-out reasons for any configuration whose link points are within ρ_i of `pts` (8).

    While braking within ±h of q, point i moves at most ρ_i = Σ_j R̂_ij h_j, R̂_ij bounding its distance
    from joint j's axis over every q (so it holds all along the path, no remainder), and at most
    Σ_j R_ij h_j + ½ hᵀ M_i h with R_ij that distance at q and M_i bounding the curvature (Taylor).
    Segments shoulder→…→tool grow by the larger ρ of their ends; keep-out zones are already grown by
    the margin; a slab test then decides."""
    (wx0, wy0, wz0), (wx1, wy1, wz1) = comp.workspace_py
    out = []
    for i in range(1, len(pts)):  # the base mount (point 0) is fixed
        (x, y, z), r = pts[i], rho[i]
        if x - r < wx0 or y - r < wy0 or z - r < wz0 or x + r > wx1 or y + r > wy1 or z + r > wz1:
            out.append(f"workspace:{POINT_NAMES[i]}")
    if out:
        return out
    for name, (x0, y0, z0), (x1, y1, z1) in comp.zones_py:
        for s in range(1, len(pts) - 1):
            (ax, ay, az), (bx, by, bz), r = pts[s], pts[s + 1], max(rho[s], rho[s + 1])
            if (  # bounding boxes overlap: then the exact test
                min(ax, bx) - r <= x1
                and max(ax, bx) + r >= x0
                and min(ay, by) - r <= y1
                and max(ay, by) + r >= y0
                and min(az, bz) - r <= z1
                and max(az, bz) + r >= z0
            ) and _segment_hits_box(pts[s], pts[s + 1], (x0 - r, y0 - r, z0 - r), (x1 + r, y1 + r, z1 + r)):
                out.append(f"keep_out:{name}:{POINT_NAMES[s + 1]}")
    return out


def _segment_hits_box(
    a: tuple[float, ...], b: tuple[float, ...], lo: tuple[float, ...], hi: tuple[float, ...]
) -> bool:
    """Slab test: does the segment a→b meet the closed box [lo, hi]?"""
    t0, t1 = 0.0, 1.0
    for k in range(3):
        d = b[k] - a[k]
        if abs(d) < 1e-15:
            if a[k] < lo[k] or a[k] > hi[k]:
                return False
            continue
        ta, tb = (lo[k] - a[k]) / d, (hi[k] - a[k]) / d
        t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        if t0 > t1:
            return False
    return True
