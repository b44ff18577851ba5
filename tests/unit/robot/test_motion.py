"""Ruckig trajectories: reach the goal, keep vel/acc/jerk limits (by finite differences of the samples)."""

from __future__ import annotations

import numpy as np
import pytest

from kiban.robot import arm
from kiban.robot.kinematics import tool_down_pose
from kiban.robot.motion import (
    JointLimits,
    PlanningError,
    line_limits,
    line_waypoints,
    peak_tool_speed_m_s,
    plan_joint_trajectory,
)

HOME_RAD = np.array([0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0])
LIMITS = JointLimits(np.full(6, 2.0), np.full(6, 4.0), np.full(6, 40.0))
CYCLE_S = 0.002


def finite_differences(q0: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Velocity, acceleration and jerk of commands held at rest before q0, as a supervisor sees them."""
    qq = np.vstack([q0, q0, q0, q])  # (n + 3, 6)
    v = np.diff(qq, axis=0) / CYCLE_S
    a = np.diff(v, axis=0) / CYCLE_S
    j = np.diff(a, axis=0) / CYCLE_S
    return v, a, j


@pytest.mark.parametrize("seed", range(5))
def test_samples_stay_within_limits_and_reach_the_goal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    q_goal = HOME_RAD + rng.uniform(-1.0, 1.0, 6)
    traj = plan_joint_trajectory(HOME_RAD, np.zeros(6), np.zeros(6), q_goal, LIMITS, CYCLE_S)
    q, qd, qdd = traj.arrays()
    assert q.shape == (traj.n_samples, 6)
    assert traj.n_samples * CYCLE_S == pytest.approx(traj.duration_s)  # whole number of cycles
    np.testing.assert_array_equal(q[-1], q_goal)
    np.testing.assert_array_equal(qd[-1], 0.0)
    v, a, j = finite_differences(HOME_RAD, q)
    tol = 1 + 1e-6
    assert np.all(np.abs(v) <= LIMITS.vel_rad_s * tol)
    assert np.all(np.abs(a) <= LIMITS.acc_rad_s2 * tol)
    assert np.all(np.abs(j) <= LIMITS.jerk_rad_s3 * tol)
    assert np.all(np.abs(qd) <= LIMITS.vel_rad_s * tol)


def test_plans_from_a_moving_state() -> None:
    qd0 = np.full(6, 0.5)
    traj = plan_joint_trajectory(HOME_RAD, qd0, np.zeros(6), HOME_RAD, LIMITS, CYCLE_S)
    q, qd, _ = traj.arrays()
    assert np.all(q[0] > HOME_RAD)  # still moving forward at first
    np.testing.assert_array_equal(q[-1], HOME_RAD)


def test_at_the_goal_at_rest_is_empty() -> None:
    traj = plan_joint_trajectory(HOME_RAD, np.zeros(6), np.zeros(6), HOME_RAD, LIMITS, CYCLE_S)
    assert traj.n_samples == 0
    np.testing.assert_array_equal(traj.sample(0)[0], HOME_RAD)


def test_scaled_limits_and_bad_limits() -> None:
    assert LIMITS.scaled(0.8).jerk_rad_s3[0] == pytest.approx(32.0)
    with pytest.raises(PlanningError, match="acc_rad_s2"):
        JointLimits(np.full(6, 1.0), np.zeros(6), np.full(6, 1.0))


def test_vertical_line_stays_straight() -> None:
    start = arm.forward(HOME_RAD)[-1]
    T_end = tool_down_pose(start[:3, 3] - np.array([0.0, 0.0, 0.10]), yaw_rad=np.pi / 2)  # home's yaw
    waypoints = line_waypoints(HOME_RAD, T_end, [0.5, 1.0])
    q_prev, worst_m = HOME_RAD, 0.0
    for q_goal in waypoints:
        q, _, _ = plan_joint_trajectory(
            q_prev, np.zeros(6), np.zeros(6), q_goal, LIMITS, CYCLE_S, straight=True
        ).arrays()
        xy = np.array([arm.forward(qk)[-1, :2, 3] for qk in q])
        worst_m = max(worst_m, float(np.max(np.linalg.norm(xy - start[:2, 3], axis=1))))
        q_prev = q_goal
    assert worst_m < 2e-3
    np.testing.assert_allclose(arm.forward(waypoints[-1])[-1][:3, 3], T_end[:3, 3], atol=1e-4)


def test_phase_synchronized_moves_are_straight_in_joint_space() -> None:
    q_goal = HOME_RAD + np.array([0.3, -0.1, 0.2, 0.02, 0.05, -0.3])
    q, _, _ = plan_joint_trajectory(
        HOME_RAD, np.zeros(6), np.zeros(6), q_goal, LIMITS, CYCLE_S, straight=True
    ).arrays()
    s = (q - HOME_RAD) / (q_goal - HOME_RAD)  # (n, 6): every joint at the same fraction of its way
    np.testing.assert_allclose(s, s[:, :1].repeat(6, axis=1), atol=1e-6)


def test_line_limits_keep_the_tool_near_the_line_speed() -> None:
    start = arm.forward(HOME_RAD)[-1]
    q_end = line_waypoints(HOME_RAD, tool_down_pose(start[:3, 3] - [0, 0, 0.1], np.pi / 2), [1.0])[0]
    lim = line_limits(HOME_RAD, q_end, 0.1, speed_m_s=0.05, acc_m_s2=0.5, jerk_m_s3=5.0)
    traj = plan_joint_trajectory(HOME_RAD, np.zeros(6), np.zeros(6), q_end, lim, CYCLE_S, straight=True)
    assert 0.04 < peak_tool_speed_m_s(traj, n_checks=64) < 0.06


def _clearance():  # noqa: ANN202
    from kiban.robot.motion import Clearance
    from kiban.robot.safety_config import load_safety_config

    return Clearance.from_safety(load_safety_config("examples/robot-safety.yaml"))


def test_braking_ratio_grows_with_speed_and_flags_a_pose_out_of_bounds() -> None:
    from kiban.robot.motion import braking_ratio

    c, zeros = _clearance(), np.zeros(6)
    assert braking_ratio(HOME_RAD, zeros, zeros, c) == 0.0
    slow = braking_ratio(HOME_RAD, np.full(6, 0.1), zeros, c)
    fast = braking_ratio(HOME_RAD, np.full(6, 0.4), zeros, c)
    assert 0.0 < slow < fast
    elbow_down = np.array([0.0, -0.3, 1.2, -0.9, -1.57, 0.0])  # forearm through the table top
    assert arm.link_points(elbow_down)[3, 2] < 0
    assert braking_ratio(elbow_down, zeros, zeros, c) == np.inf


def test_braking_reach_levers_are_measured_to_each_joints_axis() -> None:
    """Wrist 3 turns about the tool's own axis: spinning it moves neither the flange nor the tool centre,
    so braking from that spin reaches nowhere (a lever measured to the joint's ORIGIN said 0.25 m·h)."""
    from kiban.robot.motion import braking_reach_m

    acc, jerk = np.full(6, 4.0), np.full(6, 40.0)
    spin = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    reach = braking_reach_m(HOME_RAD, spin, np.zeros(6), acc, jerk)
    assert reach[6] == 0.0 and reach[7] == 0.0  # flange and tool on the axis
    wrist2 = braking_reach_m(HOME_RAD, np.array([0.0, 0, 0, 0, 3.0, 0]), np.zeros(6), acc, jerk)
    assert wrist2[7] > 0.0  # wrist 2 swings the tool on a 0.25 m lever


@pytest.mark.parametrize("seed", range(4))
def test_braking_reach_bounds_how_far_the_supervisors_own_braking_moves_each_link(seed: int) -> None:
    """Conservative: roll out the braking plan the supervisor carries for a moving state (speed and
    acceleration, including a state at zero speed still accelerating) and measure every link point."""
    from kiban.robot.motion import braking_reach_m
    from kiban.robot.safety import memory_in_motion
    from kiban.robot.safety.plan import plan_grid, plan_offsets
    from kiban.robot.safety_config import load_safety_config

    cfg = load_safety_config("examples/robot-safety.yaml")
    acc, jerk = np.array(cfg.joints.acc_max_rad_s2), np.array(cfg.joints.jerk_max_rad_s3)
    rng = np.random.default_rng(seed)
    home = np.array([0.0, -1.3, 1.4, -1.67, -1.57, 0.0])
    checked = 0
    while checked < 25:
        q = home + rng.uniform(-0.5, 0.5, 6)
        v = rng.uniform(-1.2, 1.2, 6) * (rng.random(6) < 0.7) * (checked % 5 != 0)  # every 5th: v = 0
        a = rng.uniform(-3.0, 3.0, 6) * (rng.random(6) < 0.7)
        memory = memory_in_motion(q, v, a, cfg, t_s=0.0)
        if memory is None:
            continue
        p = plan_grid()[1][memory.plan_index]
        start = arm.link_points(q)
        moved = np.zeros(8)
        for k in range(1, p.n + 1):
            phi, psi = plan_offsets(p, k)
            qk = q + cfg.cycle_s * phi * v + cfg.cycle_s**2 * psi * a
            moved = np.maximum(moved, np.linalg.norm(arm.link_points(qk) - start, axis=1))
        reach = braking_reach_m(q, v, a, acc, jerk)
        assert np.all(moved <= reach + 1e-9), (q, v, a, moved, reach)
        checked += 1


def test_plans_slow_down_near_the_table_and_refuse_paths_into_a_zone() -> None:
    from kiban.robot.kinematics import solve_ik
    from kiban.robot.motion import clearance_rounds, plan_within_clearance

    c = _clearance()
    low = solve_ik(tool_down_pose(np.array([-0.45, -0.1, 0.03]), np.pi / 2), HOME_RAD)  # tool 3 cm up
    free = plan_joint_trajectory(HOME_RAD, np.zeros(6), np.zeros(6), low, LIMITS, CYCLE_S)
    rounds = list(clearance_rounds(HOME_RAD, low, LIMITS, CYCLE_S, c))
    assert [accepted for _, accepted in rounds][-1] and len(rounds) > 1
    assert rounds[-1][0].duration_s > 1.5 * free.duration_s
    assert plan_within_clearance(HOME_RAD, low, LIMITS, CYCLE_S, c).duration_s == rounds[-1][0].duration_s
    behind = HOME_RAD + np.array([np.pi, 0.0, 0.0, 0.0, 0.0, 0.0])  # the tool over the fixture
    with pytest.raises(PlanningError, match="keep-out"):
        plan_within_clearance(HOME_RAD, behind, LIMITS, CYCLE_S, c)
