"""`supervise`: one pure function composes the rules, every control cycle (see the package docstring).

e-stop latched (estop.py) ───────────────────▶ ESTOP
watchdog.py, separation.py (within S_p) ──────▶ PROTECTIVE_STOP
commands.py (malformed, NaN/Inf, stale) ──────▶ REFUSED
joint_limits.py window, verify.py braking check ▶ OK | CLAMPED | SLOWED, else brake (plan.py)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from kiban.robot.safety.commands import validate_command
from kiban.robot.safety.joint_limits import limit_request
from kiban.robot.safety.memory import (
    SupervisorMemory,
    advance,
    initial_memory,
    sequence_number,
    with_points,
)
from kiban.robot.safety.plan import plan_step
from kiban.robot.safety.separation import separation_reasons
from kiban.robot.safety.verify import check_candidate
from kiban.robot.safety.watchdog import state_faults
from kiban.robot.safety.zones import forward_points
from kiban.robot.safety_config import N_JOINTS, CompiledSafety, SafetyConfig
from kiban.robot.types import Command, CommandKind, RobotState, Status, Verdict

BLENDS = (0.5, 0.2)  # fractions of a failed request tried before braking
_STOPS = ("joint_position_limit", "workspace", "keep_out")


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
    memory = with_points(memory, comp)
    reasons: list[str] = []
    if memory.estop_latched:
        return brake(memory, comp, Status.ESTOP, [f"estop_latched:{memory.estop_reason}"], now_s, command)
    stops = state_faults(state, memory, config, now_s)
    sep_reasons, cap = separation_reasons(state, memory, comp, config) if not stops else ([], 0.0)
    stops += [r for r in sep_reasons if not r.startswith("collaborative")]
    if stops:
        return brake(memory, comp, Status.PROTECTIVE_STOP, stops, now_s, command)
    reasons += sep_reasons
    target, v_des, refusal = validate_command(command, memory, config, now_s)
    if refusal:
        return brake(memory, comp, Status.REFUSED, [*reasons, refusal], now_s, command)
    return follow(command, target, v_des, memory, comp, cap, reasons, now_s)


def memory_in_motion(
    q_rad: np.ndarray, qd_rad_s: np.ndarray, qdd_rad_s2: np.ndarray, config: SafetyConfig, *, t_s: float
) -> SupervisorMemory | None:
    """A memory whose last sent command left the arm at q with finite-difference velocity qd and
    acceleration qdd, if the supervisor would have accepted that state (its braking plan keeps every
    limit); None if not. For tests and the fault campaign that start mid-motion, and a bridge taking
    over a moving arm."""
    dt = config.cycle_s
    q, v, a = (np.array(x, dtype=np.float64) for x in (q_rad, qd_rad_s, qdd_rad_s2))
    before = initial_memory(RobotState(t_s, q - v * dt, np.zeros(N_JOINTS)))
    comp = config.compiled
    before = replace(
        before, last_qd_rad_s=v - a * dt, points_m=np.array(forward_points((q - v * dt).tolist(), comp)[0])
    )
    gi, _, pts = check_candidate(q, v, a, before, comp, config.tool_speed_max_m_s)
    if gi < 0:
        return None
    return advance(before, None, q, np.array(pts), comp, (q, v, a, gi, 0))


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


def follow(
    command: Command,
    target: np.ndarray,
    v_des: np.ndarray,
    memory: SupervisorMemory,
    comp: CompiledSafety,
    cap: float,
    reasons: list[str],
    now_s: float,
) -> tuple[Verdict, SupervisorMemory]:
    """Limit the request to the one-cycle window, check its braking plan; blend toward braking if needed."""
    dt = comp.dt_s
    slowed = bool(reasons)  # the only reasons so far are collaborative-speed ones
    q, v = memory.last_q_rad, memory.last_qd_rad_s
    position = command.kind == CommandKind.POSITION
    q_new, v_new, a_new, clipped, approach = limit_request(position, target, v_des, memory, comp)
    reasons = [*reasons, *clipped]
    gi, why, pts = check_candidate(q_new, v_new, a_new, memory, comp, cap)
    if gi < 0:
        reasons = [*reasons, *why]
        approach = None
        _, _, a_b = plan_step(memory, dt)
        for lam in BLENDS:
            a_l = a_b + lam * (a_new - a_b)
            v_l = v + a_l * dt
            q_l = q + v_l * dt
            gi, _, pts = check_candidate(q_l, v_l, a_l, memory, comp, cap)
            if gi >= 0:
                q_new, v_new, a_new = q_l, v_l, a_l
                break
        else:
            stop = any(r.startswith(_STOPS) for r in why)
            status = Status.PROTECTIVE_STOP if stop else Status.SLOWED if slowed else Status.CLAMPED
            return brake(memory, comp, status, reasons, now_s, command)
    status = Status.SLOWED if slowed else Status.CLAMPED if reasons else Status.OK
    if status is Status.OK and q_new is command.q_rad:
        sent = command  # unchanged, the very object
    else:
        g = command.gripper
        sent = Command(
            now_s,
            CommandKind.POSITION,
            q_new,
            None,
            None if g is None else float(g),
            sequence_number(command),
        )
    verdict = Verdict(sent, status, tuple(dict.fromkeys(reasons)))  # each reason once, in order
    plan = (q_new, v_new, a_new, gi, 0)
    now = target.tolist()
    r1, r2, _ = memory.requests if memory.requests is not None else (now, now, now)
    requests = (now, r1, r2)
    return verdict, advance(memory, sent, q_new, np.array(pts), comp, plan, approach, requests)


def brake(
    memory: SupervisorMemory,
    comp: CompiledSafety,
    status: Status,
    reasons: list[str],
    now_s: float,
    command: object,
) -> tuple[Verdict, SupervisorMemory]:
    """Send the next step of the verified braking plan (at rest: the same position again), gripper as is."""
    q_new, _, _ = plan_step(memory, comp.dt_s)
    sent = Command(now_s, CommandKind.POSITION, q_new, None, None, sequence_number(command))
    pts = np.array(forward_points(q_new.tolist(), comp)[0])
    plan = (
        memory.plan_q0_rad,
        memory.plan_v0_rad_s,
        memory.plan_a0_rad_s2,
        memory.plan_index,
        memory.plan_k + 1,
    )
    return Verdict(sent, status, tuple(dict.fromkeys(reasons))), advance(memory, sent, q_new, pts, comp, plan)
