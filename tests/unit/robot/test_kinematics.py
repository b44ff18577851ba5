"""Inverse kinematics: FK(IK(pose)) reproduces the pose; limits hold; failures carry the residual."""

from __future__ import annotations

import numpy as np
import pytest

from kiban.robot import arm
from kiban.robot.kinematics import IKError, jacobian, pose_error, solve_ik, tool_down_pose

HOME_RAD = np.array([0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0])


def test_fk_of_ik_reproduces_100_random_reachable_poses() -> None:
    rng = np.random.default_rng(7)
    for _ in range(100):
        q_true = HOME_RAD + rng.uniform(-0.6, 0.6, arm.N_JOINTS)
        T = arm.forward(q_true)[-1]
        q = solve_ik(T, HOME_RAD)
        e = pose_error(arm.forward(q)[-1], T)
        assert np.linalg.norm(e[:3]) < 1e-4
        assert np.linalg.norm(e[3:]) < 1e-3


def test_tool_down_pose_is_reached_with_the_tool_pointing_down() -> None:
    T = tool_down_pose(np.array([-0.45, -0.2, 0.15]), yaw_rad=0.3)
    q = solve_ik(T, HOME_RAD)
    tool = arm.forward(q)[-1]
    np.testing.assert_allclose(tool[:3, 2], [0.0, 0.0, -1.0], atol=1e-4)
    np.testing.assert_allclose(tool[:3, 3], [-0.45, -0.2, 0.15], atol=1e-4)


def test_analytic_jacobian_matches_finite_differences() -> None:
    q = HOME_RAD + np.array([0.2, -0.3, 0.4, 0.1, -0.2, 0.5])
    frames = arm.forward(q)
    J_num = np.empty((6, 6))
    for j in range(6):
        dq = np.zeros(6)
        dq[j] = 1e-7
        J_num[:, j] = pose_error(frames[-1], arm.forward(q + dq)[-1]) / 1e-7
    np.testing.assert_allclose(jacobian(frames), J_num, atol=1e-5)


def test_out_of_reach_raises_with_the_residual() -> None:
    with pytest.raises(IKError) as info:
        solve_ik(tool_down_pose(np.array([1.5, 0.0, 0.2])), HOME_RAD)
    assert info.value.residual_pos_m > 0.4  # reach is 0.85 m (+ the gripper)


def test_joint_limits_are_respected() -> None:
    q_min, q_max = HOME_RAD - 0.2, HOME_RAD + 0.2
    T = arm.forward(HOME_RAD + 0.1)[-1]
    q = solve_ik(T, HOME_RAD, q_min_rad=q_min, q_max_rad=q_max)
    assert np.all(q >= q_min) and np.all(q <= q_max)
    with pytest.raises(IKError):  # the only solutions near the seed lie outside these limits
        solve_ik(arm.forward(HOME_RAD + 0.5)[-1], HOME_RAD, q_min_rad=q_min, q_max_rad=q_max)


def test_deterministic() -> None:
    T = arm.forward(HOME_RAD + 0.3)[-1]
    assert solve_ik(T, HOME_RAD).tobytes() == solve_ik(T, HOME_RAD).tobytes()
