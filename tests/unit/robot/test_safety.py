"""Each rule of the supervisor: which status and which reason fire, within the cycle they should."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kiban.robot import arm, cell
from kiban.robot.motion import JointLimits as PlanLimits
from kiban.robot.motion import plan_joint_trajectory
from kiban.robot.safety import (
    InterventionLog,
    ResetRefused,
    estop,
    heartbeat,
    initial_memory,
    memory_in_motion,
    protective_separation_m,
    reset,
    supervise,
)
from kiban.robot.safety.plan import plan_grid as _plan_grid
from kiban.robot.safety.plan import plan_offsets as _offsets
from kiban.robot.safety.zones import forward_points as _fk
from kiban.robot.safety.zones import zone_reasons as _zones
from kiban.robot.safety_config import INNER, SeparationConfig, load_safety_config
from kiban.robot.types import Command, CommandKind, RobotState, Status

CFG = load_safety_config(Path(__file__).resolve().parents[3] / "examples" / "robot-safety.yaml")
DT = CFG.cycle_s
HOME = np.array(cell.HOME_Q)
J_MAX = np.array(CFG.joints.jerk_max_rad_s3)
A_MAX = np.array(CFG.joints.acc_max_rad_s2)
V_MAX = np.array(CFG.joints.vel_max_rad_s)


def at_rest(q: np.ndarray = HOME, t_s: float = 0.0):  # noqa: ANN201
    return initial_memory(RobotState(t_s, np.array(q, dtype=float), np.zeros(6)))


def state_of(memory, t_s: float, people: tuple = ()) -> RobotState:  # noqa: ANN001
    """The robot where the supervisor last sent it (perfect tracking)."""
    return RobotState(t_s, memory.last_q_rad.copy(), memory.last_qd_rad_s.copy(), people_m=people)


def step(command, memory, t_s: float, *, config=CFG, people: tuple = ()):  # noqa: ANN001, ANN201
    memory = heartbeat(memory, t_s)
    return supervise(command, state_of(memory, t_s, people), config, memory, now_s=t_s)


def velocity(qd: list[float], t_s: float) -> Command:
    return Command(t_s, CommandKind.VELOCITY, qd_rad_s=np.array(qd, dtype=float))


def drive(make, memory, n: int, *, t0: float = 0.0, config=CFG, people: tuple = ()):  # noqa: ANN001, ANN201
    """Run n cycles of make(t, memory) -> command; returns (verdicts, positions sent incl. the history)."""
    q_1 = memory.last_q_rad - DT * memory.last_qd_rad_s  # the two positions sent before: same FD v and a
    qs = [q_1 - DT * (memory.last_qd_rad_s - DT * memory.last_qdd_rad_s2), q_1, memory.last_q_rad]
    verdicts = []
    for k in range(n):
        t = t0 + k * DT
        v, memory = step(make(t, memory), memory, t, config=config, people=people)
        verdicts.append(v)
        qs.append(v.command_sent.q_rad)
    return verdicts, np.array(qs), memory


def finite_differences(qs: np.ndarray, dt: float = DT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.diff(qs, axis=0) / dt
    a = np.diff(v, axis=0) / dt
    return v, a, np.diff(a, axis=0) / dt


def assert_kinematic_limits(qs: np.ndarray, config=CFG) -> None:  # noqa: ANN001
    j = config.joints
    v, a, jerk = finite_differences(qs, config.cycle_s)
    assert np.all(qs >= np.array(j.pos_min_rad)) and np.all(qs <= np.array(j.pos_max_rad))
    assert np.all(np.abs(v) <= np.array(j.vel_max_rad_s) * (1 + 1e-9))
    assert np.all(np.abs(a) <= np.array(j.acc_max_rad_s2) * (1 + 1e-9))
    assert np.all(np.abs(jerk) <= np.array(j.jerk_max_rad_s3) * (1 + 1e-9) + 1e-5)


def tool_speeds(qs: np.ndarray, dt: float = DT) -> np.ndarray:
    tools = np.array([arm.tool_position(q) for q in qs])
    return np.linalg.norm(np.diff(tools, axis=0), axis=1) / dt


# ---------------------------------------------------------------------------------------------
# the building blocks


def test_fast_forward_kinematics_equals_arm_forward() -> None:
    rng = np.random.default_rng(0)
    for q in rng.uniform(-6.2, 6.2, (50, 6)):
        pts, axes = _fk(q.tolist(), CFG.compiled)
        frames = arm.forward(q)
        np.testing.assert_allclose(np.array(pts), frames[:, :3, 3], atol=1e-12)
        np.testing.assert_allclose(np.array(axes), frames[:6, :3, 2], atol=1e-12)


@pytest.mark.parametrize("index", [0, 1, 10, 40, 90, -1])
def test_braking_plan_closed_forms_match_the_recursion(index: int) -> None:
    """a_k = a + c1 k + c2 k² ends at rest: v_N = 0, a_N = 0; positions follow (Φ_k, Ψ_k)."""
    p = _plan_grid()[1][index]
    n = p.n
    rng = np.random.default_rng(n)
    v0, a0 = rng.normal(size=2)
    k = np.arange(n + 1)
    c2 = p.beta2 * a0 + p.alpha2 * v0 / DT
    c1 = -p.gamma * a0 - n * p.alpha2 * v0 / DT
    acc = a0 + c1 * k + c2 * k * k
    vel = v0 + DT * np.concatenate([[0.0], np.cumsum(acc[1:])])
    pos = DT * np.concatenate([[0.0], np.cumsum(vel[1:])])
    assert abs(acc[-1]) < 1e-9 * max(1, abs(a0)) and abs(vel[-1]) < 1e-9 * (abs(v0) + abs(a0) * n * DT)
    for kk in (1, n // 3, n // 2, n, n + 5):
        phi_c, psi_c = _offsets(p, kk)
        assert math.isclose(
            DT * phi_c * v0 + DT * DT * psi_c * a0, pos[min(kk, n)], rel_tol=1e-9, abs_tol=1e-12
        )


def test_protective_separation_distance_is_iso_ts_15066_exactly() -> None:
    s = SeparationConfig(1.6, 0.1, 0.3, 0.12, 0.2, 0.1, 0.05, 0.5)
    # S_p = v_h (T_r + T_s) + v_r T_r + S_s + C + Z_d + Z_r
    assert protective_separation_m(0.0, s) == pytest.approx(1.6 * 0.4 + 0.12 + 0.2 + 0.1 + 0.05, abs=1e-15)
    assert protective_separation_m(2.0, s) == pytest.approx(
        1.6 * 0.4 + 2.0 * 0.1 + 0.12 + 0.2 + 0.1 + 0.05, abs=1e-15
    )


# ---------------------------------------------------------------------------------------------
# nominal commands pass unchanged


def test_a_jerk_limited_trajectory_inside_the_limits_passes_unchanged() -> None:
    goal = HOME + np.array([0.6, -0.3, 0.4, -0.2, 0.3, 1.0])
    limits = PlanLimits(V_MAX * 0.5, A_MAX * 0.5, J_MAX * 0.5)
    traj = plan_joint_trajectory(HOME, np.zeros(6), np.zeros(6), goal, limits, DT)
    memory, gripper = at_rest(), 0.0
    for k in range(traj.n_samples + 10):
        t = k * DT
        q, _, _ = traj.sample(k)
        command = Command(t, q_rad=q, gripper=gripper, seq=k)
        verdict, memory = step(command, memory, t)
        assert verdict.status is Status.OK, (k, verdict.reasons)
        assert verdict.command_sent is command and verdict.reasons == ()
    np.testing.assert_allclose(memory.last_q_rad, goal)


def test_a_velocity_command_is_sent_as_the_position_it_reaches() -> None:
    memory = memory_in_motion(HOME, np.array([0.1, 0, 0, 0, 0, 0.2]), np.zeros(6), CFG, t_s=0.0)
    verdict, after = step(velocity([0.1, 0, 0, 0, 0, 0.2], 0.0), memory, 0.0)
    assert verdict.status is Status.OK and verdict.command_sent.kind is CommandKind.POSITION
    np.testing.assert_allclose(verdict.command_sent.q_rad, HOME + np.array([0.1, 0, 0, 0, 0, 0.2]) * DT)


# ---------------------------------------------------------------------------------------------
# joint limits: jerk, acceleration, velocity, position


def test_a_jump_from_rest_is_jerk_limited() -> None:
    verdicts, qs, _ = drive(lambda t, m: velocity([0, 1.0, 0, 0, 0, 0], t), at_rest(), 40)
    assert verdicts[0].status is Status.CLAMPED and verdicts[0].reasons == ("joint_jerk_limit:j2",)
    _, _, jerk = finite_differences(qs)
    assert jerk[0, 1] == pytest.approx(J_MAX[1] * INNER)  # the first cycle uses all the jerk it may
    assert_kinematic_limits(qs)


@pytest.mark.parametrize("offset_rad", [1e-6, 1e-3, 0.01, 0.1])
def test_a_held_target_nearby_is_reached_and_the_clamp_ends(offset_rad: float) -> None:
    """A position target held still a little away from rest: the jerk limit clamps the jump, then the
    approach ARRIVES exactly, at rest, and the request passes unchanged again (the old speed law
    overshot and oscillated around it: clamped for ever)."""
    target = HOME + offset_rad * np.array([1.0, -0.5, 0.0, 0.3, 0.0, -1.0])
    verdicts, qs, memory = drive(lambda t, m: Command(t, q_rad=target), at_rest(), 600)
    statuses = [v.status for v in verdicts]
    assert statuses[0] is Status.CLAMPED and "joint_jerk_limit:j1" in verdicts[0].reasons
    last_clamp = max(i for i, s in enumerate(statuses) if s is not Status.OK)
    assert last_clamp < 300 and all(s is Status.OK for s in statuses[last_clamp + 1 :])
    np.testing.assert_array_equal(memory.last_q_rad, target)
    assert not memory.last_qd_rad_s.any() and memory.approach is None
    assert_kinematic_limits(qs)
    v, _, _ = finite_differences(qs)
    assert np.all(np.sign(v[:, 0]) >= 0)  # joint 1 never turns back: no overshoot


def test_after_a_clamp_a_moving_request_is_followed_unchanged_again() -> None:
    """The approach plan is only for a target held still: a request that keeps moving smoothly is
    taken as it is again once it fits the window (no lasting clamp after one spike)."""
    v_joint = 0.3  # rad/s on joint 1, a smooth ramp the window allows

    def make(t: float, m: object) -> Command:
        q = HOME + np.array([v_joint * (t + DT) + (0.05 if 0.1 <= t < 0.104 else 0.0), 0, 0, 0, 0, 0])
        return Command(t, q_rad=q)

    memory = memory_in_motion(HOME, np.array([v_joint, 0, 0, 0, 0, 0]), np.zeros(6), CFG, t_s=0.0)
    verdicts, qs, _ = drive(make, memory, 600)
    statuses = [v.status for v in verdicts]
    assert Status.CLAMPED in statuses[50:53]  # the spike at t = 0.1 s
    assert all(s is Status.OK for s in statuses[-100:])
    assert_kinematic_limits(qs)


def test_acceleration_is_capped() -> None:
    a = np.array([A_MAX[0] * INNER, 0, 0, 0, 0, 0])
    memory = memory_in_motion(HOME, np.array([0.2, 0, 0, 0, 0, 0]), a, CFG, t_s=0.0)
    verdict, after = step(velocity([2.0, 0, 0, 0, 0, 0], 0.0), memory, 0.0)
    assert verdict.status is Status.CLAMPED and "joint_acceleration_limit:j1" in verdict.reasons
    assert abs(after.last_qdd_rad_s2[0]) <= A_MAX[0]


def test_velocity_is_capped() -> None:
    """Wrist 3 turns about the tool's axis: at full speed the tool point does not move."""
    memory = memory_in_motion(
        HOME, np.array([0, 0, 0, 0, 0, V_MAX[5] * (1 - 1e-5)]), np.zeros(6), CFG, t_s=0.0
    )
    verdict, after = step(velocity([0, 0, 0, 0, 0, 5.0], 0.0), memory, 0.0)
    assert verdict.status is Status.CLAMPED and verdict.reasons == ("joint_velocity_limit:j6",)
    assert abs(after.last_qd_rad_s[5]) <= V_MAX[5]


def test_a_joint_brakes_before_its_position_limit() -> None:
    q = HOME.copy()
    q[5] = CFG.joints.pos_max_rad[5] - 0.3
    verdicts, qs, memory = drive(lambda t, m: velocity([0, 0, 0, 0, 0, 2.0], t), at_rest(q), 800)
    reasons = {r for v in verdicts for r in v.reasons}
    assert "joint_position_limit:j6" in reasons
    assert_kinematic_limits(qs)
    assert qs[-1, 5] <= CFG.joints.pos_max_rad[5] and np.all(memory.last_qd_rad_s == 0)


def test_a_position_target_beyond_the_limit_is_never_reached() -> None:
    q = HOME.copy()
    q[0] = CFG.joints.pos_max_rad[0] - 0.05
    target = q.copy()
    target[0] += 0.1
    verdicts, qs, _ = drive(lambda t, m: Command(t, q_rad=target), at_rest(q), 600)
    assert_kinematic_limits(qs)
    assert any("joint_position_limit:j1" in v.reasons for v in verdicts)


# ---------------------------------------------------------------------------------------------
# workspace and keep-out zones, for every link segment


def zone_free(q: np.ndarray) -> list[str]:
    """Workspace and keep-out reasons for the configuration itself (no braking allowance)."""
    return _zones(_fk(q.tolist(), CFG.compiled)[0], [0.0] * 8, CFG.compiled)


def test_turning_toward_the_fixture_stops_outside_it() -> None:
    verdicts, qs, memory = drive(lambda t, m: velocity([1.0, 0, 0, 0, 0, 0], t), at_rest(), 1500)
    reasons = {r for v in verdicts for r in v.reasons}
    assert any(r.startswith("keep_out:fixture:") for r in reasons), reasons
    assert all(zone_free(q) == [] for q in qs)
    assert_kinematic_limits(qs)
    assert np.all(memory.last_qd_rad_s == 0)  # stopped, pressed against the zone's margin
    assert 1.0 < memory.last_q_rad[0] < math.pi


def test_a_step_into_the_fixture_is_stopped_in_that_cycle() -> None:
    lo, hi = 0.0, math.pi  # bisect joint 1 for the first contact with the (grown) fixture zone
    for _ in range(60):
        mid = (lo + hi) / 2
        q = HOME.copy()
        q[0] = mid
        lo, hi = (mid, hi) if not zone_free(q) else (lo, mid)
    q = HOME.copy()
    q[0] = lo - 1e-9
    assert zone_free(q) == []
    nudge = q.copy()
    nudge[0] += J_MAX[0] * DT**3 * 0.5  # a step the jerk limit allows from rest
    verdict, after = step(Command(0.0, q_rad=nudge), at_rest(q), 0.0)
    assert verdict.status is Status.PROTECTIVE_STOP
    assert any(r.startswith("keep_out:fixture:") for r in verdict.reasons)
    np.testing.assert_array_equal(verdict.command_sent.q_rad, q)  # held


def test_the_tool_stays_above_the_table() -> None:
    q = HOME.copy()  # tool 0.34 m above the table; lower it by lifting the elbow's angle
    verdicts, qs, _ = drive(lambda t, m: velocity([0, 0, 0.6, 0, 0, 0], t), at_rest(q), 1200)
    reasons = {r for v in verdicts for r in v.reasons}
    assert any(r.startswith("workspace:") for r in reasons), reasons
    assert all(zone_free(q) == [] for q in qs)
    assert min(arm.tool_position(q)[2] for q in qs) >= 0.0


# ---------------------------------------------------------------------------------------------
# tool speed, collaborative speed, separation


def test_tool_speed_is_capped() -> None:
    slow = replace(CFG, tool_speed_max_m_s=0.2, collaborative_speed_m_s=0.2)
    verdicts, qs, _ = drive(lambda t, m: velocity([1.0, 0, 0, 0, 0, 0], t), at_rest(), 400, config=slow)
    assert any(r.startswith("tool_speed:") for v in verdicts for r in v.reasons)
    assert np.all(tool_speeds(qs[2:]) <= 0.2)
    assert tool_speeds(qs[-3:]).min() > 0.15  # it keeps moving, just slower


def person_at_distance(d_m: float) -> tuple[np.ndarray, ...]:
    """A person d_m from the base column along +x, where nothing else of the arm (at HOME) is nearer."""
    return (np.array([d_m, 0.0, 0.08]),)


def test_separation_boundaries_at_rest() -> None:
    s_p = protective_separation_m(0.0, CFG.separation)
    warn = s_p + CFG.separation.warning_margin_m
    command = Command(0.0, q_rad=HOME.copy())
    v, _ = step(command, at_rest(), 0.0, people=person_at_distance(s_p - 1e-6))
    assert v.status is Status.PROTECTIVE_STOP and v.reasons == (f"separation:{s_p - 1e-6:.2f}m<{s_p:.2f}m",)
    v, _ = step(command, at_rest(), 0.0, people=person_at_distance(s_p + 1e-6))
    assert v.status is Status.SLOWED and v.reasons[0].startswith("collaborative_speed:")
    v, _ = step(command, at_rest(), 0.0, people=person_at_distance(warn + 1e-6))
    assert v.status is Status.OK


def test_separation_grows_with_the_robots_speed() -> None:
    memory = memory_in_motion(HOME, np.array([0.0, 0, 0, 0.5, 0, 0]), np.zeros(6), CFG, t_s=0.0)
    v_r = memory.point_speed_m_s  # the fastest link point over the last step
    assert v_r > 0.1
    s_p = protective_separation_m(v_r, CFG.separation)
    assert s_p == pytest.approx(CFG.compiled.sp_constant_m + v_r * CFG.separation.reaction_time_s)
    command = velocity([0.0, 0, 0, 0.5, 0, 0], 0.0)
    far = protective_separation_m(0.0, CFG.separation) + 0.01  # outside S_p at rest, inside it now
    v, _ = step(command, memory, 0.0, people=person_at_distance(far))
    assert v.status is Status.PROTECTIVE_STOP and v.reasons[0].startswith("separation:")


def test_a_person_inside_s_p_brings_the_arm_to_rest_and_keeps_it_there() -> None:
    memory = memory_in_motion(HOME, np.array([0.8, 0, 0, 0, 0, 0]), np.zeros(6), CFG, t_s=0.0)
    verdicts, qs, memory = drive(
        lambda t, m: velocity([0.8, 0, 0, 0, 0, 0], t), memory, 700, people=person_at_distance(0.5)
    )
    assert all(v.status is Status.PROTECTIVE_STOP for v in verdicts)
    assert all(v.command_sent.gripper is None for v in verdicts)
    assert_kinematic_limits(qs)  # a controlled stop: it brakes within the acceleration and jerk limits
    v, _, _ = finite_differences(qs)
    moving = np.flatnonzero(np.abs(v).max(1) > 0)
    assert moving[-1] < 400  # at rest within the plan (< 0.8 s), then held exactly
    assert np.all(np.abs(v).max(1)[1:] <= np.abs(v).max(1)[:-1] + 1e-9)  # never speeds up


def test_a_person_in_the_warning_band_slows_the_tool_to_collaborative_speed() -> None:
    memory = memory_in_motion(HOME, np.array([1.0, 0, 0, 0, 0, 0]), np.zeros(6), CFG, t_s=0.0)
    assert tool_speeds(np.array([memory.last_q_rad - DT * memory.last_qd_rad_s, memory.last_q_rad]))[0] > 0.45
    person = (np.array([0.0, 0.0, 0.59 + 1.45]),)  # above the shoulder: in the band for every pose
    verdicts, qs, _ = drive(lambda t, m: velocity([1.0, 0, 0, 0, 0, 0], t), memory, 500, people=person)
    assert all(v.status is Status.SLOWED for v in verdicts)
    assert verdicts[0].reasons[0].startswith("collaborative_speed:")
    speeds = tool_speeds(qs[2:])
    settle = int(np.argmax(speeds <= CFG.collaborative_speed_m_s))
    assert settle < 300 and np.all(speeds[settle:] <= CFG.collaborative_speed_m_s)
    assert speeds[-1] > 0.2  # still moving, at reduced speed
    assert_kinematic_limits(qs)


# ---------------------------------------------------------------------------------------------
# time: stale commands, heartbeat, stale state


TIMED = replace(CFG, command_timeout_s=0.03125, heartbeat_timeout_s=0.125)  # exact in binary


def test_a_command_older_than_the_timeout_is_refused_in_that_cycle() -> None:
    memory = heartbeat(at_rest(t_s=1.0), 1.0)
    state = state_of(memory, 1.0)
    ok, _ = supervise(Command(1.0 - 0.03125, q_rad=HOME.copy()), state, TIMED, memory, now_s=1.0)
    assert ok.status is Status.OK
    stale, _ = supervise(Command(1.0 - 0.03125 - 2**-20, q_rad=HOME.copy()), state, TIMED, memory, now_s=1.0)
    assert stale.status is Status.REFUSED and stale.reasons == ("stale_command:0.031s",)
    future, _ = supervise(Command(1.5, q_rad=HOME.copy()), state, TIMED, memory, now_s=1.0)
    assert future.status is Status.REFUSED and future.reasons == ("future_command:0.500s",)


def test_heartbeat_timeout_boundary() -> None:
    memory = heartbeat(at_rest(t_s=1.0), 1.0)
    for now, expected in ((1.125, Status.OK), (1.125 + 2**-20, Status.PROTECTIVE_STOP)):
        state = state_of(memory, now)
        verdict, _ = supervise(Command(now, q_rad=HOME.copy()), state, TIMED, memory, now_s=now)
        assert verdict.status is expected
    assert verdict.reasons == ("heartbeat_lost:0.125s",)


def test_starting_counts_as_a_heartbeat_and_a_stale_observation_stops() -> None:
    memory = at_rest(t_s=1.0)
    assert memory.last_heartbeat_t_s == 1.0
    old_state = RobotState(1.0, HOME.copy(), np.zeros(6))
    verdict, _ = supervise(
        Command(1.2, q_rad=HOME.copy()), old_state, TIMED, heartbeat(memory, 1.2), now_s=1.2
    )
    assert verdict.status is Status.PROTECTIVE_STOP and verdict.reasons == ("stale_state:0.200s",)


# ---------------------------------------------------------------------------------------------
# malformed commands and states


MALFORMED = [
    (object(), "malformed:type:object"),
    (None, "malformed:type:NoneType"),
    (Command(0.0, kind="jog", q_rad=HOME), "malformed:kind"),
    (Command(0.0, kind=None, q_rad=HOME), "malformed:kind"),  # type: ignore[arg-type]
    (Command(0.0, q_rad=None), "malformed:q_rad:shape"),
    (Command(0.0, q_rad=np.zeros(5)), "malformed:q_rad:shape"),
    (Command(0.0, q_rad=np.zeros((6, 1))), "malformed:q_rad:shape"),
    (Command(0.0, q_rad=np.array(["a"] * 6)), "malformed:q_rad"),
    (Command(0.0, q_rad=[[1, 2], [3]]), "malformed:q_rad"),  # type: ignore[arg-type]
    (Command(0.0, q_rad=np.array([0, 0, math.nan, 0, 0, 0])), "non_finite:q_rad"),
    (Command(0.0, q_rad=np.array([0, 0, 0, 0, 0, math.inf])), "non_finite:q_rad"),
    (
        Command(0.0, CommandKind.VELOCITY, qd_rad_s=np.array([-math.inf, 0, 0, 0, 0, 0])),
        "non_finite:qd_rad_s",
    ),
    (Command(0.0, CommandKind.VELOCITY, q_rad=HOME), "malformed:qd_rad_s:shape"),
    (Command(math.nan, q_rad=HOME), "malformed:t_s"),
    (Command("now", q_rad=HOME), "malformed:t_s"),  # type: ignore[arg-type]
    (Command(0.0, q_rad=HOME, gripper=1.5), "gripper_out_of_range"),
    (Command(0.0, q_rad=HOME, gripper=-0.01), "gripper_out_of_range"),
    (Command(0.0, q_rad=HOME, gripper=math.nan), "gripper_out_of_range"),
    (Command(0.0, q_rad=HOME, gripper="open"), "gripper_out_of_range"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("command", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_commands_are_refused_and_the_arm_holds(command: object, reason: str) -> None:
    verdict, memory = step(command, at_rest(), 0.0)
    assert verdict.status is Status.REFUSED and verdict.reasons == (reason,)
    sent = verdict.command_sent
    assert sent.kind is CommandKind.POSITION and sent.gripper is None
    np.testing.assert_array_equal(sent.q_rad, HOME)


def test_a_list_of_six_numbers_is_accepted_as_a_position() -> None:
    verdict, _ = step(Command(0.0, q_rad=HOME.tolist()), at_rest(), 0.0)  # type: ignore[arg-type]
    assert verdict.status is Status.OK and isinstance(verdict.command_sent.q_rad, np.ndarray)


@pytest.mark.parametrize(
    ("state", "now", "reason"),
    [
        (RobotState(0.0, np.array([0, math.nan, 0, 0, 0, 0]), np.zeros(6)), 0.0, "state_invalid:q_rad"),
        (RobotState(math.nan, HOME, np.zeros(6)), 0.0, "state_invalid"),
        ("not a state", 0.0, "state_invalid"),
        (RobotState(0.0, HOME, np.zeros(6)), math.nan, "clock_invalid"),
        (RobotState(0.0, HOME + [0, 0.2, 0, 0, 0, 0], np.zeros(6)), 0.0, "tracking_error:j2:0.200rad"),
        (
            RobotState(0.0, HOME, np.zeros(6), people_m=(np.array([1.0, math.nan, 0]),)),
            0.0,
            "separation:sensor_fault",
        ),
    ],
)
def test_a_state_the_supervisor_cannot_trust_is_a_protective_stop(
    state: object, now: float, reason: str
) -> None:
    memory = at_rest()
    verdict, _ = supervise(Command(0.0, q_rad=HOME.copy()), state, CFG, memory, now_s=now)  # type: ignore[arg-type]
    assert verdict.status is Status.PROTECTIVE_STOP and verdict.reasons == (reason,)


def test_initial_memory_refuses_a_state_it_cannot_see() -> None:
    with pytest.raises(ValueError, match="cannot start"):
        initial_memory(RobotState(0.0, np.full(6, math.nan), np.zeros(6)))


# ---------------------------------------------------------------------------------------------
# the emergency stop


def test_estop_latches_brakes_and_only_a_reset_clears_it() -> None:
    memory = memory_in_motion(HOME, np.array([0.8, 0.3, 0, 0, 0, 0]), np.zeros(6), CFG, t_s=0.0)
    memory = estop(memory, "button")
    assert estop(memory, "other").estop_reason == "button"  # the first reason is kept
    go = velocity([0.8, 0.3, 0, 0, 0, 0], 0.0)
    verdict, moving = step(go, memory, 0.0)
    assert verdict.status is Status.ESTOP and verdict.reasons == ("estop_latched:button",)
    with pytest.raises(ResetRefused) as refused:
        reset(moving, state_of(moving, 0.0), CFG, operator="tanaka", now_s=0.0)
    assert "command_moving" in refused.value.reasons and "robot_moving" in refused.value.reasons
    verdicts, qs, stopped = drive(lambda t, m: velocity([0.8, 0.3, 0, 0, 0, 0], t), moving, 600, t0=DT)
    assert all(v.status is Status.ESTOP for v in verdicts)
    assert_kinematic_limits(qs)
    state = RobotState(1.3, stopped.last_q_rad.copy(), np.zeros(6))
    with pytest.raises(ResetRefused, match="no_operator"):
        reset(stopped, state, CFG, operator=" ", now_s=1.3)
    with pytest.raises(ResetRefused, match="heartbeat_lost"):
        reset(stopped, state, CFG, operator="tanaka", now_s=5.0)
    cleared = reset(heartbeat(stopped, 1.3), state, CFG, operator="tanaka", now_s=1.3)
    assert not cleared.estop_latched and cleared.reset_by == "tanaka"
    verdict, _ = step(Command(1.3, q_rad=stopped.last_q_rad.copy()), cleared, 1.3)
    assert verdict.status is Status.OK
    assert reset(cleared, state, CFG, operator="tanaka", now_s=1.3) is cleared  # nothing to clear


def test_a_reset_is_refused_while_a_person_is_inside_s_p() -> None:
    memory = estop(at_rest(), "button")
    state = RobotState(0.0, HOME.copy(), np.zeros(6), people_m=person_at_distance(0.3))
    with pytest.raises(ResetRefused, match="separation"):
        reset(memory, state, CFG, operator="tanaka", now_s=0.0)


# ---------------------------------------------------------------------------------------------
# gripper and the intervention log


def test_the_gripper_passes_with_motion_and_freezes_in_a_stop() -> None:
    v, _ = step(Command(0.0, q_rad=HOME.copy(), gripper=1.0), at_rest(), 0.0)
    assert v.command_sent.gripper == 1.0
    v, _ = step(Command(0.0, q_rad=HOME.copy(), gripper=1.0), at_rest(), 0.0, people=person_at_distance(0.2))
    assert v.status is Status.PROTECTIVE_STOP and v.command_sent.gripper is None


def test_interventions_are_logged_with_their_reasons() -> None:
    log = InterventionLog()
    v, _ = step(Command(0.0, q_rad=HOME.copy()), at_rest(), 0.0)
    log.record(v, t_s=0.0)
    v, _ = step(Command(0.0, q_rad=np.full(6, math.nan)), at_rest(), 0.0)
    log.record(v, t_s=0.002)
    assert log.entries == [{"t_s": 0.002, "status": "refused", "reasons": ["non_finite:q_rad"]}]
    assert log.counts == {"non_finite": 1}
