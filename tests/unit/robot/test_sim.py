"""MujocoRobot in real MuJoCo: it follows smooth position commands, grasps and carries a part, moves
its person, reports ground truth, and replays bit-identically from a seed. Runs headless on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ruckig import InputParameter, OutputParameter, Result, Ruckig

from kiban.errors import ConfigError
from kiban.robot import arm, cell
from kiban.robot.interface import Robot
from kiban.robot.sim import MujocoRobot
from kiban.robot.types import Command, CommandKind

HOME = np.array(cell.HOME_Q)


def ik_tool_down(p_m: np.ndarray, q_seed: np.ndarray) -> np.ndarray:
    """Newton steps (damped least squares, numerical Jacobian): tool at p_m pointing down, fingers
    closing along the base's y axis, on the seed's branch."""
    R_target = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    q = np.array(q_seed, dtype=float)

    def error(T: np.ndarray) -> np.ndarray:
        rot = 0.5 * sum(np.cross(T[:3, i], R_target[:, i]) for i in range(3))
        return np.concatenate([p_m - T[:3, 3], rot])

    for _ in range(100):
        e = error(arm.forward(q)[-1])
        if np.linalg.norm(e) < 1e-10:
            return q
        J = np.empty((6, 6))
        for j in range(6):
            dq = np.zeros(6)
            dq[j] = 1e-7
            J[:, j] = (e - error(arm.forward(q + dq)[-1])) / 1e-7
        q += np.linalg.solve(J.T @ J + 1e-9 * np.eye(6), J.T @ e)
    raise AssertionError(f"IK did not converge for {p_m}")


def move(robot: MujocoRobot, q_from: np.ndarray, q_to: np.ndarray, duration_s: float, gripper: float) -> None:
    """A cosine blend from q_from to q_to, one position command per cycle."""
    n = round(duration_s / robot.cycle_s)
    for k in range(1, n + 1):
        s = (1 - np.cos(np.pi * k / n)) / 2
        robot.send(Command(t_s=robot.t_s, q_rad=q_from + (q_to - q_from) * s, gripper=gripper, seq=k))
        robot.step()


@pytest.fixture
def robot():
    with MujocoRobot(seed=0) as r:
        yield r


def test_is_a_robot_and_starts_at_home(robot):
    assert isinstance(robot, Robot)
    assert (robot.n_joints, robot.cycle_s, robot.t_s) == (6, 0.002, 0.0)
    assert robot.joint_names == cell.JOINT_NAMES
    state = robot.observe()
    np.testing.assert_array_equal(state.q_rad, HOME)
    assert state.gripper == 0.0 and state.holding is None
    truth = robot.ground_truth()
    np.testing.assert_allclose(truth.links_m, arm.link_points(HOME), atol=1e-9)
    assert truth.contacts == ()
    assert not robot.part_in_bin("part0", "bin_a")


def test_holds_still_under_gravity(robot):
    robot.step(500)
    np.testing.assert_allclose(robot.observe().q_rad, HOME, atol=1e-9)
    assert robot.t_s == pytest.approx(1.0)


def test_follows_a_jerk_limited_trajectory_without_exceeding_its_limits_in_the_physics(robot):
    vmax, amax, jmax = np.pi, 5.0, 50.0
    otg, inp, out = Ruckig(6, robot.cycle_s), InputParameter(6), OutputParameter(6)
    inp.current_position, inp.current_velocity, inp.current_acceleration = list(HOME), [0.0] * 6, [0.0] * 6
    inp.target_position = list(HOME + [2.0, -1.0, 1.2, 2.0, -2.0, 2.5])
    inp.max_velocity, inp.max_acceleration, inp.max_jerk = [vmax] * 6, [amax] * 6, [jmax] * 6
    pos_err = vel_err = qd_peak = qdd_peak = 0.0
    result = Result.Working
    while result == Result.Working:
        result = otg.update(inp, out)
        out.pass_to_input(inp)
        robot.send(Command(t_s=robot.t_s, q_rad=np.array(out.new_position)))
        robot.step()
        state, truth = robot.observe(), robot.ground_truth()
        pos_err = max(pos_err, np.abs(state.q_rad - out.new_position).max())
        vel_err = max(vel_err, np.abs(state.qd_rad_s - out.new_velocity).max())
        qd_peak, qdd_peak = (
            max(qd_peak, truth.qd_peak_rad_s.max()),
            max(qdd_peak, truth.qdd_peak_rad_s2.max()),
        )
        assert np.all(np.abs(truth.torque_nm) <= np.array(cell.MAX_TORQUE_NM) + 1e-9)
    assert result == Result.Finished
    assert pos_err < 3e-3  # rad
    assert vel_err < 0.02  # rad/s, against up to π rad/s
    assert qd_peak <= vmax * (1 + 1e-5)
    assert qdd_peak <= amax * 1.02
    robot.step(100)
    np.testing.assert_allclose(robot.observe().q_rad, inp.target_position, atol=1e-6)


def test_grasps_a_part_lifts_it_and_drops_it_in_a_bin():
    robot = MujocoRobot(seed=1)
    p = robot.part_position("part0")
    above = ik_tool_down(p + [0, 0, 0.12], HOME)
    grasp = ik_tool_down(p, above)
    bin_yaw = np.arctan2(cell.BINS_M["bin_a"][1], cell.BINS_M["bin_a"][0]) - np.pi
    over_bin = ik_tool_down(np.array([*cell.BINS_M["bin_a"], 0.15]), HOME + [bin_yaw, 0, 0, 0, 0, bin_yaw])

    move(robot, HOME, above, 1.0, gripper=0.0)
    move(robot, above, grasp, 0.6, gripper=0.0)
    move(robot, grasp, grasp, 0.3, gripper=1.0)
    assert robot.observe().holding is None  # closed on it, not yet lifted
    assert 0.02 < robot.data.qpos[6] < cell.FINGER_TRAVEL_M - 0.01  # the fingers stopped on the part
    move(robot, grasp, above, 0.6, gripper=1.0)
    assert robot.observe().holding == "part0"
    np.testing.assert_allclose(robot.part_position("part0"), p + [0, 0, 0.12], atol=0.01)
    contacts = robot.ground_truth().contacts
    assert ("finger_left", "part0") in contacts and ("finger_right", "part0") in contacts
    move(robot, above, over_bin, 1.2, gripper=1.0)
    assert robot.observe().holding == "part0"  # held through the carry
    assert not robot.part_in_bin("part0", "bin_a")  # above the bin, still in the gripper
    move(robot, over_bin, over_bin, 0.4, gripper=0.0)
    robot.step(100)
    assert robot.observe().holding is None
    assert robot.part_in_bin("part0", "bin_a") and not robot.part_in_bin("part0", "bin_b")
    # the other parts did not move
    np.testing.assert_allclose(robot.part_position("part1"), cell.part_positions(1)[1], atol=1e-3)


def test_person_walks_into_the_cell(robot):
    start, stop = (np.array(p) for p in cell.PERSON_PATH_M)
    far = np.linalg.norm(robot.observe().people_m[0])
    robot.person_walk(speed_m_s=1.6)
    robot.step(round(0.5 / robot.cycle_s))
    half_way = robot.observe().people_m[0]
    walked_m = np.linalg.norm(robot.data.mocap_pos[0, :2] - start)
    assert walked_m == pytest.approx(0.8, abs=0.01)
    robot.step(round(2.0 / robot.cycle_s))
    np.testing.assert_allclose(robot.data.mocap_pos[0, :2], stop)
    near = robot.observe().people_m[0]
    # the point of the person nearest the robot base, at base height
    assert near[2] == 0.0
    assert np.linalg.norm(near) == pytest.approx(np.linalg.norm(stop) - cell.PERSON_RADIUS_M)
    assert far > np.linalg.norm(half_way) > np.linalg.norm(near)
    assert 0.0 < robot.ground_truth().person_distance_m < 1.0


def test_a_person_touching_the_arm_shows_in_ground_truth(robot):
    robot.set_person((-0.5, -0.3))  # the capsule overlaps the hanging wrist
    robot.step(1)
    truth = robot.ground_truth()
    assert truth.person_distance_m < 0
    assert any(other == "person" for _, other in truth.contacts)


def test_stop_decelerates_to_rest_within_the_stop_deceleration(robot):
    target = HOME + [1.0, 0, 0, 0, 0, 0]
    move(robot, HOME, target, 1.0, gripper=0.0)  # ends at rest; now move fast and stop half-way
    n = 250
    for k in range(1, n + 1):
        s = (1 - np.cos(np.pi * k / (2 * n))) / 2  # first half of a blend: at full speed at the end
        robot.send(Command(t_s=robot.t_s, q_rad=target - 2.0 * s * np.array([1.0, 0, 0, 0, 0, 0])))
        robot.step()
    speed = abs(robot.observe().qd_rad_s[0])
    assert speed > 1.5
    robot.ground_truth()  # reset the peaks
    robot.stop()
    robot.step(round(speed / 4.0 / robot.cycle_s) + 100)
    truth = robot.ground_truth()
    assert np.abs(truth.qd_rad_s).max() < 1e-4
    assert truth.qdd_peak_rad_s2[0] < 4.0 * 1.1


def test_velocity_commands_integrate_into_position_targets(robot):
    qd = np.array([0.1, 0.0, 0.0, 0.0, 0.0, -0.2])
    for _ in range(250):
        robot.send(Command(t_s=robot.t_s, kind=CommandKind.VELOCITY, qd_rad_s=qd))
        robot.step()
    np.testing.assert_allclose(robot.observe().qd_rad_s, qd, atol=1e-3)
    np.testing.assert_allclose(robot.observe().q_rad, HOME + qd * 0.5, atol=2e-4)


def test_the_last_command_of_a_cycle_counts():
    once, twice = MujocoRobot(), MujocoRobot()
    for k in range(1, 51):
        q = HOME + 0.002 * k
        once.send(Command(t_s=once.t_s, q_rad=q))
        twice.send(Command(t_s=twice.t_s, q_rad=HOME - 1.0))
        twice.send(Command(t_s=twice.t_s, q_rad=q))
        once.step()
        twice.step()
    assert np.array_equal(once.data.qpos, twice.data.qpos)


@pytest.mark.parametrize(
    "command",
    [
        Command(t_s=0.0, q_rad=np.full(6, np.nan)),
        Command(t_s=0.0, q_rad=np.zeros(5)),
        Command(t_s=0.0, q_rad=None),
        Command(t_s=0.0, q_rad=HOME, gripper=float("inf")),
        Command(t_s=0.0, kind=CommandKind.VELOCITY, qd_rad_s=None),
    ],
)
def test_malformed_commands_raise_and_move_nothing(robot, command):
    with pytest.raises(ValueError):
        robot.send(command)
    robot.step(50)
    np.testing.assert_allclose(robot.observe().q_rad, HOME, atol=1e-9)


def _episode(robot: MujocoRobot, with_ground_truth: bool) -> np.ndarray:
    """A fixed command sequence (random smooth moves, gripper, person); the qpos of every cycle."""
    rng = np.random.default_rng(7)
    robot.person_walk()
    qpos = []
    q = HOME.copy()
    for _ in range(4):
        q_next = q + rng.uniform(-0.3, 0.3, 6)
        n = 100
        for k in range(1, n + 1):
            s = (1 - np.cos(np.pi * k / n)) / 2
            robot.send(Command(t_s=robot.t_s, q_rad=q + (q_next - q) * s, gripper=float(rng.random() > 0.5)))
            robot.step()
            qpos.append(robot.data.qpos.copy())
            if with_ground_truth:
                robot.ground_truth()
                robot.observe()
        q = q_next
    return np.array(qpos)  # (400, nq)


def test_same_seed_and_commands_replay_bit_identically():
    a, b = MujocoRobot(seed=5), MujocoRobot(seed=5)
    first = _episode(a, with_ground_truth=False)
    assert np.array_equal(first, _episode(b, with_ground_truth=True))  # reading the truth changes nothing
    a.reset(seed=5)
    assert np.array_equal(first, _episode(a, with_ground_truth=False))  # reset replays a fresh start
    c = MujocoRobot(seed=6)
    assert not np.array_equal(first, _episode(c, with_ground_truth=False))  # the parts moved


def test_camera_images_need_mujoco_gl(monkeypatch, robot):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    with pytest.raises(ConfigError, match="MUJOCO_GL"):
        robot.render()
    with pytest.raises(ConfigError, match="MUJOCO_GL=egl"):
        MujocoRobot(camera=True)


_RENDER = textwrap.dedent(
    """
    import sys
    import mujoco
    import numpy as np
    try:
        mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8).close()
    except Exception as e:
        print(f"no OpenGL through MUJOCO_GL=egl here: {e}")
        sys.exit(3)
    from kiban.robot.sim import MujocoRobot
    robot, twin = MujocoRobot(camera=True), MujocoRobot()
    empty = robot.render("overview", width=160, height=120)
    robot.person_walk(); twin.person_walk()
    robot.step(600); twin.step(600)
    with_person = robot.render("overview", width=160, height=120)
    assert empty.shape == (120, 160, 3) and empty.dtype == np.uint8 and empty.std() > 10
    assert np.abs(with_person.astype(int) - empty).sum() > 1000  # the person came into view
    assert np.array_equal(robot.data.qpos, twin.data.qpos)  # looking changes nothing
    print("ok")
    """
)


def test_camera_images_with_egl():
    env = {**os.environ, "MUJOCO_GL": "egl"}
    proc = subprocess.run(
        [sys.executable, "-c", _RENDER], env=env, capture_output=True, text=True, timeout=300
    )
    if proc.returncode == 3:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr


def test_cycle_must_be_a_multiple_of_the_physics_step():
    with pytest.raises(ConfigError, match="cycle_s=0.003"):
        MujocoRobot(cycle_s=0.003)
    slow = MujocoRobot(cycle_s=0.004, timestep_s=0.001)  # 250 Hz control, 4 physics steps a cycle
    move(slow, HOME, HOME + 0.2, 0.5, gripper=0.0)
    np.testing.assert_allclose(slow.observe().q_rad, HOME + 0.2, atol=1e-3)
