"""Whatever it is given, the supervisor sends only commands that keep every limit (hypothesis).

What is checked, on the positions actually sent (finite differences over cycle_s, starting from the
two positions sent before, which the memory implies), with an independent forward kinematics
(arm.forward) and a sampled segment test, not the supervisor's own geometry code:

- every sent command is a finite POSITION command of shape (6,), gripper None or in [0, 1];
- joint positions within [pos_min, pos_max]; |velocity|, |acceleration|, |jerk| within their limits;
- every link point (shoulder .. tool) inside the workspace, every link segment outside every keep-out
  zone grown by the margin;
- tool speed ≤ tool_speed_max_m_s on every cycle, and ≤ the cap in force (collaborative speed when a
  person is in the warning band) on every cycle whose command was accepted rather than braked;
- a person within S_p, a latched e-stop, lost heartbeat or stale commands: the arm brakes along its
  plan, reaching rest within the plan's length, and stays there;
- every state the supervisor accepts can brake to rest keeping all of the above (the plan rolled out
  to its end).

10,000 generated cases in all (2500 + 3000 + 4000 + 500).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kiban.robot import arm, cell
from kiban.robot.safety import (
    SupervisorMemory,
    estop,
    heartbeat,
    memory_in_motion,
    protective_separation_m,
    supervise,
)
from kiban.robot.safety.plan import plan_grid as _plan_grid
from kiban.robot.safety.plan import plan_offsets as _offsets
from kiban.robot.safety_config import load_safety_config
from kiban.robot.types import Command, CommandKind, RobotState, Status

CFG = load_safety_config(Path(__file__).resolve().parents[3] / "examples" / "robot-safety.yaml")
DT = CFG.cycle_s
HOME = np.array(cell.HOME_Q)
LIM = CFG.joints
P_MIN, P_MAX = np.array(LIM.pos_min_rad), np.array(LIM.pos_max_rad)
V_MAX, A_MAX, J_MAX = np.array(LIM.vel_max_rad_s), np.array(LIM.acc_max_rad_s2), np.array(LIM.jerk_max_rad_s3)
SPREAD = np.array([3.1, 0.7, 0.9, 1.5, 1.5, 3.0])  # around HOME: the arm mostly over the table


def cases(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


unit = st.floats(-1.0, 1.0, allow_nan=False)
unit6 = st.lists(unit, min_size=6, max_size=6).map(np.array)


def at_rest_ok(q: np.ndarray) -> bool:
    return memory_in_motion(q, np.zeros(6), np.zeros(6), CFG, t_s=0.0) is not None


def toward_boundary(q: np.ndarray, d: np.ndarray, gap: float) -> np.ndarray:
    """q moved along d until `gap` (as a fraction) short of the first configuration the limits forbid."""
    lo, hi = 0.0, 0.05
    while hi < 8.0 and at_rest_ok(q + hi * d):
        lo, hi = hi, hi * 2
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if at_rest_ok(q + mid * d) else (lo, mid)
    return q + lo * (1 - gap) * d


@st.composite
def moving_memories(draw: st.DrawFn) -> SupervisorMemory | None:
    """A memory left by an accepted command: a random pose (half the time just short of a keep-out zone,
    the workspace or a joint limit, moving toward it), velocity and acceleration, scaled down by halves
    until the supervisor accepts it, half the time then scaled up again to the edge of what it accepts
    (None if even rest there is outside the limits)."""
    q = np.clip(HOME + draw(unit6) * SPREAD, P_MIN, P_MAX)
    v, a = draw(unit6) * V_MAX, draw(unit6) * A_MAX
    if draw(st.booleans()) and at_rest_ok(q):
        d = v / max(float(np.linalg.norm(v)), 1e-9)
        q = toward_boundary(q, d, draw(st.sampled_from([0.0, 1e-6, 1e-3, 0.02, 0.1])))
    edge = draw(st.booleans())  # refine the scale to the edge of what the supervisor accepts
    for i in range(draw(st.integers(0, 4)), 14):
        s = 0.5**i if i < 13 else 0.0
        memory = memory_in_motion(q, v * s, a * s, CFG, t_s=0.0)
        if memory is not None:
            lo, hi = s, 2 * s
            while edge and 0 < lo and hi - lo > 1e-3 * lo:
                mid = (lo + hi) / 2
                m = memory_in_motion(q, v * mid, a * mid, CFG, t_s=0.0)
                lo, hi, memory = (mid, hi, m) if m is not None else (lo, mid, memory)
            return memory
    return None


def history(memory: SupervisorMemory) -> list[np.ndarray]:
    """The three positions sent so far, as far as finite differences can tell."""
    q, v, a = memory.last_q_rad, memory.last_qd_rad_s, memory.last_qdd_rad_s2
    q_1 = q - DT * v
    return [q_1 - DT * (v - DT * a), q_1, q]


def link_points(qs: np.ndarray, dh: arm.DH = arm.UR5E) -> np.ndarray:
    """arm.link_points for many configurations at once (the same DH matrices, batched). # (K, 8, 3)"""
    qs = np.asarray(qs, dtype=np.float64)
    T = np.broadcast_to(np.eye(4), (len(qs), 4, 4))
    out = np.zeros((len(qs), 8, 3))
    for i in range(6):
        ct, st = np.cos(qs[:, i]), np.sin(qs[:, i])
        ca, sa, a, d = math.cos(dh.alpha_rad[i]), math.sin(dh.alpha_rad[i]), dh.a_m[i], dh.d_m[i]
        A = np.zeros((len(qs), 4, 4))
        A[:, 0] = np.stack([ct, -st * ca, st * sa, a * ct], axis=1)
        A[:, 1] = np.stack([st, ct * ca, -ct * sa, a * st], axis=1)
        A[:, 2, 1:] = sa, ca, d
        A[:, 3, 3] = 1.0
        T = T @ A
        out[:, i + 1] = T[:, :3, 3]
    out[:, 7] = T[:, :3, 3] + arm.TOOL_OFFSET_M * T[:, :3, 2]
    return out


def test_the_checkers_kinematics_are_arm_forwards() -> None:
    qs = np.random.default_rng(0).uniform(-6, 6, (20, 6))
    np.testing.assert_allclose(link_points(qs), np.array([arm.link_points(q) for q in qs]), atol=1e-12)


def assert_limits(qs: np.ndarray, *, tool_max: float = CFG.tool_speed_max_m_s) -> None:
    """Kinematic, workspace, keep-out and tool-speed limits on a sequence of sent positions (K, 6)."""
    assert np.all(np.isfinite(qs)) and np.all(qs[2:] >= P_MIN) and np.all(qs[2:] <= P_MAX)  # history: checked
    v = np.diff(qs, axis=0) / DT
    a = np.diff(v, axis=0) / DT
    jerk = np.diff(a, axis=0) / DT
    rounding = 64 * np.finfo(float).eps * 2 * math.pi / DT**3  # float error of a third difference
    assert np.all(np.abs(v) <= V_MAX * (1 + 1e-9)), np.abs(v).max(0)
    assert np.all(np.abs(a) <= A_MAX * (1 + 1e-9)), np.abs(a).max(0)
    assert np.all(np.abs(jerk) <= J_MAX * (1 + 1e-9) + rounding), np.abs(jerk).max(0)
    pts = link_points(qs[2:])  # (K, 8, 3); the history was checked when it was sent
    body = pts[:, 1:]  # the base mount is fixed
    ws = CFG.workspace
    assert np.all(body >= np.array(ws.min_m)) and np.all(body <= np.array(ws.max_m)), "workspace"
    s = np.linspace(0.0, 1.0, 33)[:, None]
    for zone in CFG.keep_out:
        lo = np.array(zone.min_m) - CFG.keep_out_margin_m
        hi = np.array(zone.max_m) + CFG.keep_out_margin_m
        for i in range(1, 7):  # segments shoulder → ... → tool
            samples = body[:, None, i - 1] + s[None] * (body[:, None, i] - body[:, None, i - 1])  # (K, 33, 3)
            assert not np.any(np.all((samples > lo) & (samples < hi), axis=-1)), f"keep_out:{zone.name}"
    tool = link_points(qs[1:])[:, 7]
    speeds = np.linalg.norm(np.diff(tool, axis=0), axis=1) / DT
    assert np.all(speeds <= tool_max * (1 + 1e-9)), speeds.max()


# ---------------------------------------------------------------------------------------------
# 1. every accepted state can brake to rest within every limit


@cases(2500)
@given(moving_memories())
def test_every_accepted_state_brakes_to_rest_within_every_limit(memory: SupervisorMemory | None) -> None:
    if memory is None:
        return
    p = _plan_grid()[1][memory.plan_index]
    q0, v0, a0 = memory.plan_q0_rad, memory.plan_v0_rad_s, memory.plan_a0_rad_s2
    plan = [
        q0 + DT * phi * v0 + DT * DT * psi * a0 for phi, psi in (_offsets(p, k) for k in range(1, p.n + 3))
    ]
    qs = np.array(history(memory) + plan)
    assert_limits(qs)
    np.testing.assert_allclose(np.diff(qs[-3:], axis=0), 0.0, atol=1e-12)  # at rest at the end


# ---------------------------------------------------------------------------------------------
# 2. sequences of arbitrary commands, people and clocks


KINDS = ["track", "track", "push", "push", "velocity", "far", "junk", "stale", "future", "estop", "gripper"]


def make_command(kind: str, memory: SupervisorMemory, t: float, rng: np.random.Generator) -> object:
    """One cycle's command of the given kind; vectors from rng (seeded by hypothesis)."""
    q, v = memory.last_q_rad, memory.last_qd_rad_s
    u = rng.uniform(-1, 1, 6)
    if kind == "track":  # the next point of some trajectory: steps of every size
        return Command(t, q_rad=q + v * DT + u * 10.0 ** rng.integers(-8, 1))
    if kind == "push":  # keep going the way it goes, faster
        return Command(t, CommandKind.VELOCITY, qd_rad_s=v * rng.uniform(1, 3) + u * 1e-3)
    if kind == "velocity":
        return Command(t, CommandKind.VELOCITY, qd_rad_s=u * 2 * V_MAX)
    if kind == "far":
        return Command(t, q_rad=u * 8.0)
    if kind == "stale":
        return Command(t - CFG.command_timeout_s * rng.uniform(1.01, 5), q_rad=q)
    if kind == "future":
        return Command(t + CFG.command_timeout_s * rng.uniform(1.01, 5), q_rad=q)
    if kind == "gripper":
        return Command(t, q_rad=q + v * DT, gripper=float(rng.choice([0.0, 1.0, 0.5, 1.5, -1.0, math.nan])))
    return [
        Command(t, q_rad=np.full(6, math.nan)),
        Command(t, CommandKind.VELOCITY, qd_rad_s=np.array([0, 0, 0, math.inf, 0, 0])),
        Command(t, q_rad=np.zeros(7)),
        Command(t, kind="torque", q_rad=q),
        "move to the left bin",
    ][int(rng.integers(0, 5))]


people = st.one_of(
    st.none(),
    st.tuples(unit, unit, st.floats(0.0, 1.0)).map(lambda p: np.array(p) * [2.5, 2.5, 1.5]),
)


@cases(3000)
@given(
    moving_memories(),
    st.lists(st.sampled_from(KINDS), min_size=1, max_size=10),
    st.integers(0, 2**32 - 1),
    people,
    st.sampled_from([0.0, 0.0, 0.0, CFG.heartbeat_timeout_s * 0.97]),
)
def test_whatever_is_asked_the_commands_sent_keep_every_limit(
    memory: SupervisorMemory | None, kinds: list[str], seed: int, person: np.ndarray | None, silence_s: float
) -> None:
    if memory is None:
        return
    rng = np.random.default_rng(seed)
    memory = heartbeat(memory, -silence_s)  # sometimes the heartbeat is about to be lost
    qs = history(memory)
    for k, kind in enumerate(kinds):
        t = k * DT
        if kind == "estop":
            memory = estop(memory, "test")
        state = RobotState(
            t,
            memory.last_q_rad.copy(),
            memory.last_qd_rad_s.copy(),
            people_m=(person,) if person is not None else (),
        )
        command = make_command(kind, memory, t, rng)
        verdict, memory = supervise(command, state, CFG, memory, now_s=t)
        sent = verdict.command_sent
        assert isinstance(sent, Command) and sent.kind is CommandKind.POSITION and sent.q_rad.shape == (6,)
        assert sent.gripper is None or 0.0 <= sent.gripper <= 1.0
        assert (verdict.status is Status.OK) == (verdict.reasons == ())
        if verdict.status is Status.OK:
            assert command is sent or command.kind == CommandKind.VELOCITY
        if memory.plan_k == 0 and any(r.startswith("collaborative") for r in verdict.reasons):
            tool = link_points(np.array([qs[-1], sent.q_rad]))[:, 7]
            assert np.linalg.norm(tool[1] - tool[0]) / DT <= CFG.collaborative_speed_m_s * (1 + 1e-9)
        qs.append(sent.q_rad)
        for r in verdict.reasons:
            event(
                r.split(":")[0] + (":" + r.split(":")[1] if r.startswith(("keep_out", "workspace")) else "")
            )
    assert_limits(np.array(qs))


# ---------------------------------------------------------------------------------------------
# 3. anything at all as a command: a verdict, never an exception; junk is refused and the arm brakes


anything = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=20),
    st.floats(),
    st.lists(st.floats(), max_size=8),
    st.builds(
        Command,
        t_s=st.one_of(st.floats(), st.just(0.0), st.text(max_size=3)),
        kind=st.one_of(st.sampled_from(list(CommandKind)), st.text(max_size=8), st.none(), st.integers()),
        q_rad=st.one_of(
            st.none(), st.lists(st.floats(), max_size=8).map(np.array), st.lists(st.floats(), max_size=8)
        ),
        qd_rad_s=st.one_of(st.none(), st.lists(st.floats(), min_size=6, max_size=6).map(np.array)),
        gripper=st.one_of(st.none(), st.floats()),
        seq=st.one_of(st.integers(), st.none(), st.text(max_size=3)),
    ),
)


@cases(4000)
@given(moving_memories(), anything)
def test_anything_gets_a_verdict_and_junk_is_refused(
    memory: SupervisorMemory | None, command: object
) -> None:
    if memory is None:
        return
    state = RobotState(0.0, memory.last_q_rad.copy(), memory.last_qd_rad_s.copy())
    verdict, after = supervise(command, state, CFG, memory, now_s=0.0)
    sent = verdict.command_sent
    assert sent.kind is CommandKind.POSITION and sent.q_rad.shape == (6,) and np.all(np.isfinite(sent.q_rad))
    valid = (
        isinstance(command, Command)
        and isinstance(command.t_s, float)
        and abs(command.t_s) <= CFG.command_timeout_s
        and (command.gripper is None or 0.0 <= command.gripper <= 1.0)
    )
    if valid:
        x = command.q_rad if command.kind == CommandKind.POSITION else command.qd_rad_s
        valid = (
            command.kind in list(CommandKind)
            and np.shape(x) == (6,)
            and np.all(np.isfinite(np.asarray(x, float)))
        )
    if not valid:
        assert verdict.status is Status.REFUSED and verdict.reasons and sent.gripper is None
        assert after.plan_k == memory.plan_k + 1  # the next step of the braking plan
    assert_limits(np.array([*history(memory), sent.q_rad]))


# ---------------------------------------------------------------------------------------------
# 4. stops: brake within the limits to rest, and stay there


@cases(500)
@given(moving_memories(), st.sampled_from(["person", "estop", "heartbeat", "stale"]), st.floats(0.0, 1.0))
def test_every_stop_brakes_to_rest_within_the_plan_and_stays(
    memory: SupervisorMemory | None, cause: str, where: float
) -> None:
    if memory is None:
        return
    n = _plan_grid()[0][memory.plan_index] + 3
    s_p = protective_separation_m(0.0, CFG.separation)  # half of it: inside S_p all along the braking travel
    people = (
        ((memory.points_m[1 + int(where * 6.99)] + [0.0, 0.0, s_p * where * 0.5]),)
        if cause == "person"
        else ()
    )
    if cause == "estop":
        memory = estop(memory, "button")
    expected = {"person": Status.PROTECTIVE_STOP, "estop": Status.ESTOP, "heartbeat": Status.PROTECTIVE_STOP}
    qs = history(memory)
    go = memory.last_qd_rad_s.copy()
    for k in range(n):
        t = 1.0 + k * DT
        if cause != "heartbeat":
            memory = heartbeat(memory, t)
        age = 1.0 if cause == "stale" else 0.0
        state = RobotState(t, memory.last_q_rad.copy(), memory.last_qd_rad_s.copy(), people_m=people)
        verdict, memory = supervise(
            Command(t - age, CommandKind.VELOCITY, qd_rad_s=go), state, CFG, memory, now_s=t
        )
        assert verdict.status is expected.get(cause, Status.REFUSED), verdict
        qs.append(verdict.command_sent.q_rad)
    assert_limits(np.array(qs))
    np.testing.assert_array_equal(qs[-1], qs[-2])  # at rest, held exactly
