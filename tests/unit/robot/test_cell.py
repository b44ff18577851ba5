"""The generated cell: it compiles, its arm is the UR5e of arm.py (FK parity with MuJoCo to 1e-6), its
masses are the published ones, and every seeded part can be grasped from above."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from kiban.robot import arm, cell


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(cell.build_cell_mjcf(seed=0))


def ik_tool_down(p_m: np.ndarray, q_seed: np.ndarray) -> tuple[np.ndarray, float]:
    """Newton steps (damped least squares, numerical Jacobian) to put the tool at p_m pointing down,
    fingers closing along the base's y axis. Returns (q, residual)."""
    R_target = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    q = np.array(q_seed, dtype=float)

    def error(T: np.ndarray) -> np.ndarray:
        rot = 0.5 * sum(np.cross(T[:3, i], R_target[:, i]) for i in range(3))
        return np.concatenate([p_m - T[:3, 3], rot])

    for _ in range(100):
        e = error(arm.forward(q)[-1])
        if np.linalg.norm(e) < 1e-10:
            break
        J = np.empty((6, 6))
        for j in range(6):
            dq = np.zeros(6)
            dq[j] = 1e-7
            J[:, j] = (e - error(arm.forward(q + dq)[-1])) / 1e-7
        q += np.linalg.solve(J.T @ J + 1e-9 * np.eye(6), J.T @ e)
    return q, float(np.linalg.norm(e))


def test_compiles_with_named_parts_of_the_cell(model):
    assert model.opt.timestep == 0.002
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert model.nu == 7
    assert [model.actuator(i).name for i in range(7)] == [*cell.JOINT_NAMES, "gripper"]
    for site in ("tool", "flange", "base", "part0", "part1", "part2", "bin_a", "bin_b"):
        assert model.site(site).id >= 0
    assert model.body_mocapid[model.body("person").id] == 0
    assert model.nmesh == 0 and model.ntex == 0  # no external assets


def test_mujoco_forward_kinematics_equals_the_dh_model(model):
    data = mujoco.MjData(model)
    links = [model.body(f"link{i + 1}").id for i in range(6)]  # body link<i+1> sits at DH frame i
    flange, tool = model.body("flange").id, model.site("tool").id
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.uniform(-2 * np.pi, 2 * np.pi, 6)
        data.qpos[:6] = q
        mujoco.mj_kinematics(model, data)
        frames = arm.forward(q)  # (8, 4, 4)
        np.testing.assert_allclose(data.xpos[links], frames[:6, :3, 3], atol=1e-6)
        np.testing.assert_allclose(data.xpos[flange], frames[6, :3, 3], atol=1e-6)
        np.testing.assert_allclose(data.xmat[flange].reshape(3, 3), frames[6, :3, :3], atol=1e-6)
        np.testing.assert_allclose(data.site_xpos[tool], arm.tool_position(q), atol=1e-6)
        # each link's hinge is the z axis of the previous DH frame
        for i, body in enumerate(links):
            np.testing.assert_allclose(data.xmat[body].reshape(3, 3)[:, 2], frames[i, :3, 2], atol=1e-6)


def test_masses_and_centres_of_mass_are_the_published_ones(model):
    data = mujoco.MjData(model)
    masses = [model.body_mass[model.body(f"link{i + 1}").id] for i in range(6)]
    assert masses == pytest.approx([3.761, 8.058, 2.846, 1.37, 1.3, 0.365])
    gripper = sum(model.body_mass[model.body(b).id] for b in ("gripper", "finger_left", "finger_right"))
    assert gripper == pytest.approx(cell.GRIPPER_MASS_KG)
    # Universal Robots gives each centre of mass in its link's DH frame
    q = np.random.default_rng(1).uniform(-np.pi, np.pi, 6)
    data.qpos[:6] = q
    mujoco.mj_kinematics(model, data)
    frames = arm.forward(q)
    for i in range(6):
        expected = frames[i + 1, :3, :3] @ cell.LINK_COM_M[i] + frames[i + 1, :3, 3]
        np.testing.assert_allclose(data.xipos[model.body(f"link{i + 1}").id], expected, atol=1e-9)


def test_gravity_compensation_stays_inside_the_published_torque_limits(model):
    assert np.all(model.jnt_actgravcomp[:6])
    np.testing.assert_allclose(model.jnt_actfrcrange[:6, 1], cell.MAX_TORQUE_NM)


def test_home_pose_hangs_the_tool_above_the_parts():
    tool = arm.tool_position(np.array(cell.HOME_Q))
    (x0, x1), (y0, y1) = cell.PART_REGION_M
    assert x0 < tool[0] < x1 and y0 < tool[1] < y1 and tool[2] > 0.3


@pytest.mark.parametrize("seed", [None, *range(10)])
def test_parts_on_the_table_apart_and_reachable_from_above(seed):
    xyz = cell.part_positions(seed, 3)  # (3, 3)
    (x0, x1), (y0, y1) = cell.PART_REGION_M
    assert np.all((xyz[:, 0] >= x0) & (xyz[:, 0] <= x1) & (xyz[:, 1] >= y0) & (xyz[:, 1] <= y1))
    assert np.all(xyz[:, 2] == cell.PART_HALF_M)
    gaps = [np.linalg.norm(xyz[i, :2] - xyz[j, :2]) for i in range(3) for j in range(i)]
    assert min(gaps) >= cell.PART_MIN_GAP_M
    for p in xyz:
        for height_m in (0.0, 0.12):  # grasp and approach
            q, residual = ik_tool_down(p + [0, 0, height_m], np.array(cell.HOME_Q))
            assert residual < 1e-8
            assert np.all(np.abs(q) < arm.UR5E_JOINT_RANGE_RAD)
            # no link below the table top on the way down
            assert arm.link_points(q)[1:-1, 2].min() > 0.05


def test_same_seed_same_cell_and_different_seeds_differ():
    assert cell.build_cell_mjcf(seed=3) == cell.build_cell_mjcf(seed=3)
    assert not np.array_equal(cell.part_positions(3), cell.part_positions(4))


def test_too_many_parts_is_a_clear_error():
    with pytest.raises(ValueError, match="parts=40"):
        cell.part_positions(0, 40)
    with pytest.raises(ValueError, match="parts=6"):
        cell.part_positions(None, 6)


def test_fixture_and_bins_sit_where_the_docstring_says(model):
    (fx0, fx1), (fy0, fy1), (fz0, fz1) = cell.FIXTURE_M
    g = model.geom("fixture")
    np.testing.assert_allclose(g.pos, [(fx0 + fx1) / 2, (fy0 + fy1) / 2, (fz0 + fz1) / 2])
    np.testing.assert_allclose(g.size, [(fx1 - fx0) / 2, (fy1 - fy0) / 2, (fz1 - fz0) / 2])
    for name, (x, y) in cell.BINS_M.items():
        np.testing.assert_allclose(model.body(name).pos, [x, y, 0.0])
    person = model.geom("person")
    height_m = 2 * (person.size[1] + person.size[0])
    assert math.isclose(height_m, 1.7)
