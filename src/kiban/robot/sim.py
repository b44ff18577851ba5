"""`MujocoRobot`: the `Robot` contract over the simulated cell of `kiban.robot.cell`, in lockstep time.

Each control cycle (`cycle_s`, 0.002 s = 500 Hz by default) is `cycle_s / timestep_s` MuJoCo steps;
nothing advances between `step()` calls, so the same seed and the same commands give bit-identical
trajectories. A POSITION target sent before `step()` is where the joints are at the end of that
cycle. The servo is a position actuator per joint (`cell.ARM_KP`, `cell.ARM_KV`) with gravity
compensation inside the joint's torque limit, plus velocity and inertia (M·q̈) feed-forward from
successive targets, as industrial servo drives do; its reference runs along the line from the
previous target to the new one across a cycle's physics steps. On a jerk-limited command the
simulated joints stay within 2 mrad of it, their peak speed within 1e-5 of the command's and their
peak acceleration within ~1 % (tests/unit/robot/test_sim.py).

`ground_truth()` is for tests and benchmarks, never for policies: what really happened in the
physics (joint speeds and accelerations at every physics step, torques, contacts, the person's
true distance), to check that no limit was exceeded.

    >>> import numpy as np
    >>> from kiban.robot.types import Command
    >>> robot = MujocoRobot(seed=0)
    >>> state = robot.observe()
    >>> robot.send(Command(t_s=state.t_s, q_rad=state.q_rad + 0.001))
    >>> robot.step(50)
    >>> round(robot.t_s, 3), bool(np.allclose(robot.observe().q_rad, state.q_rad + 0.001, atol=1e-5))
    (0.1, True)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import mujoco
import numpy as np

from kiban.errors import ConfigError
from kiban.robot import cell
from kiban.robot.types import Command, CommandKind, RobotState

_ROBOT_BODIES = ("base", "link1", "link2", "link3", "link4", "link5", "link6", "flange", "gripper")
_ROBOT_BODIES += ("finger_left", "finger_right")
_GL_BACKENDS = ("egl", "osmesa", "glfw")
# The inertia feed-forward trusts only plausible accelerations: a jump in the commands (say, a hold
# right after fast motion) is left to the servo's gains rather than turned into a torque spike.
_FF_MAX_ACC_RAD_S2 = 20.0


@dataclass(frozen=True)
class GroundTruth:
    """What the physics really did: for verifying limits, never for control."""

    t_s: float
    q_rad: np.ndarray
    """Joint positions. # (6,)"""
    qd_rad_s: np.ndarray
    """Joint velocities. # (6,)"""
    qdd_rad_s2: np.ndarray
    """Joint accelerations over the last physics step (finite difference of velocities). # (6,)"""
    qd_peak_rad_s: np.ndarray
    """Largest |joint velocity| at any physics step since the previous ground_truth() or reset. # (6,)"""
    qdd_peak_rad_s2: np.ndarray
    """Largest |joint acceleration| over any physics step since the previous ground_truth(). # (6,)"""
    torque_nm: np.ndarray
    """Actuator torques (servo + gravity compensation) of the last physics step; the joint's
    `actuatorfrcrange` holds them within cell.MAX_TORQUE_NM. # (6,)"""
    torque_peak_nm: np.ndarray
    """Largest |actuator torque| at any physics step since the previous ground_truth(). # (6,)"""
    tool_m: np.ndarray
    """Tool centre point. # (3,)"""
    tool_speed_m_s: float
    links_m: np.ndarray
    """DH frame origins base, joints 1..6, tool: compare `arm.link_points`. # (8, 3)"""
    contacts: tuple[tuple[str, str], ...]
    """(robot body, other body) for every contact of the robot with the world; a grasp shows as
    ("finger_left", "part0")."""
    person_distance_m: float
    """Smallest distance between the person's capsule and any robot geometry (negative: touching)."""
    parts_m: dict[str, np.ndarray]
    """Part centres. Each # (3,)"""


def _require_gl() -> None:
    backend = os.environ.get("MUJOCO_GL", "").strip().lower()
    if backend not in _GL_BACKENDS:
        raise ConfigError(
            f"camera images need MuJoCo's offscreen OpenGL: set MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa (CPU) "
            f"before Python starts (MUJOCO_GL is {backend or 'unset'!r})"
        )


class MujocoRobot:
    """The simulated UR5e cell behind the `Robot` contract (see kiban.robot.interface).

    cycle_s: control cycle, a whole multiple of timestep_s (the physics step).
    seed: places the parts (cell.part_positions; None: evenly spaced). parts: how many cubes.
    camera: check now that render() can work (MUJOCO_GL set), instead of at the first image.
    stop_decel_rad_s2: each joint's deceleration during stop().
    `model` and `data` are the MuJoCo objects, for tests and viewers; change them and determinism
    is yours to keep.
    """

    def __init__(
        self,
        cycle_s: float = 0.002,
        seed: int | None = 0,
        parts: int = 3,
        camera: bool = False,
        *,
        timestep_s: float = 0.002,
        stop_decel_rad_s2: float = 4.0,
    ) -> None:
        substeps = round(cycle_s / timestep_s)
        if substeps < 1 or abs(substeps * timestep_s - cycle_s) > 1e-12:
            raise ConfigError(f"cycle_s={cycle_s}: must be a whole multiple of timestep_s={timestep_s}")
        if camera:
            _require_gl()
        self.model = mujoco.MjModel.from_xml_string(
            cell.build_cell_mjcf(seed=seed, parts=parts, timestep_s=timestep_s)
        )
        self.data = mujoco.MjData(self.model)
        self._cycle_s, self._substeps, self._seed, self._parts = cycle_s, substeps, seed, parts
        self._stop_decel_rad_s2 = stop_decel_rad_s2
        m, d = self.model, self.data
        n = cell.N_JOINTS
        if [int(m.jnt_qposadr[m.joint(j).id]) for j in cell.JOINT_NAMES] != list(range(n)):
            raise AssertionError("the arm's joints must come first in qpos")
        self._finger_adr = int(m.jnt_qposadr[m.joint("finger_left").id])
        self._tool = m.site("tool").id
        self._person_geom = m.geom("person").id
        self.part_names = tuple(f"part{i}" for i in range(parts))
        p0 = int(m.jnt_qposadr[m.joint("part0").id]) if parts else 0
        # views into MjData: they stay valid (mj_resetData writes in place)
        self._q, self._qd = d.qpos[:n], d.qvel[:n]
        self._parts_xyz = d.qpos[p0 : p0 + 7 * parts].reshape(parts, 7)[:, :3]  # (parts, 3)
        self._ff_s = m.actuator_biasprm[:n, 2] / m.actuator_biasprm[:n, 1]  # kv / kp: velocity feed-forward
        # body link<i+1> sits at DH frame i: with the flange and the tool site, arm.link_points' 8 frames
        self._link_bodies = [m.body(f"link{i + 1}").id for i in range(n)] + [m.body("flange").id]
        robot_ids = {m.body(b).id for b in _ROBOT_BODIES}
        self._robot_geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] in robot_ids]
        self._is_robot_body = np.zeros(m.nbody, dtype=bool)
        self._is_robot_body[list(robot_ids)] = True
        self._renderer: mujoco.Renderer | None = None
        self._target = np.empty(n)  # position target of the current cycle
        self._prev = np.empty(n)  # position target of the previous cycle
        self._vff = np.empty(n)  # velocity feed-forward of the current cycle
        self._vff_last = np.empty(n)  # ... and of the previous one
        self._kp = m.actuator_gainprm[:n, 0].copy()
        self._acc, self._tau = np.zeros(m.nv), np.zeros(m.nv)  # acceleration feed-forward, its torque
        self._offset = np.empty(n)  # ctrl offset of the current cycle
        self._qd_last, self._tmp = np.empty(n), np.empty(n)
        self._qd_peak, self._dqd_peak, self._torque_peak = np.empty(n), np.empty(n), np.empty(n)
        self._tau_arm = d.qfrc_actuator[:n]
        self._truth = mujoco.MjData(self.model)  # scratch copy for ground_truth() and render()
        self.reset(seed)

    # --- the Robot contract -------------------------------------------------------------------

    @property
    def cycle_s(self) -> float:
        return self._cycle_s

    @property
    def n_joints(self) -> int:
        return cell.N_JOINTS

    @property
    def joint_names(self) -> tuple[str, ...]:
        return cell.JOINT_NAMES

    @property
    def t_s(self) -> float:
        return self.data.time

    def observe(self) -> RobotState:
        return RobotState(
            t_s=self.data.time,
            q_rad=self._q.copy(),
            qd_rad_s=self._qd.copy(),
            gripper=self._gripper,
            people_m=(self._person_nearest_m(),),
            holding=self._holding() if self._gripper >= 0.5 else None,
        )

    def send(self, command: Command) -> None:
        """Set the next cycle's targets. Raises ValueError on a malformed command (the supervisor
        refuses those first; reaching here is a bug, so nothing moves)."""
        if command.kind is CommandKind.VELOCITY:
            qd = command.qd_rad_s
            if qd is None or qd.shape != (cell.N_JOINTS,) or not math.isfinite(qd.sum()):
                raise ValueError(f"VELOCITY command needs a finite qd_rad_s of shape (6,), got {qd!r}")
            q = self._prev + qd * self._cycle_s
        else:
            q = command.q_rad
            if q is None or q.shape != (cell.N_JOINTS,) or not math.isfinite(q.sum()):
                raise ValueError(f"POSITION command needs a finite q_rad of shape (6,), got {q!r}")
        if command.gripper is not None:
            if not math.isfinite(command.gripper):
                raise ValueError(f"gripper must be finite, got {command.gripper!r}")
            self._gripper = min(max(float(command.gripper), 0.0), 1.0)
            self.data.ctrl[cell.N_JOINTS] = self._gripper * cell.FINGER_TRAVEL_M
        self._stopping = False
        self._target[:] = q  # a second send() in the same cycle replaces the first
        np.subtract(self._target, self._prev, out=self._vff)
        self._vff /= self._cycle_s

    def step(self, n_cycles: int = 1) -> None:
        m, d, k = self.model, self.data, self._substeps
        ctrl = d.ctrl[: cell.N_JOINTS]
        for _ in range(n_cycles):
            if self._stopping:
                self._advance_stop()
            if self._walk is not None:
                self._walk_person()
            self._feed_forward()
            for j in range(k):
                # the reference at the start of each physics step, on the line from the previous
                # target to this one: the joints arrive at the target at the end of the cycle
                if j == 0:
                    np.copyto(ctrl, self._prev)
                else:
                    np.subtract(self._target, self._prev, out=ctrl)
                    ctrl *= j / k
                    ctrl += self._prev
                ctrl += self._offset
                self._qd_last[:] = self._qd
                mujoco.mj_step(m, d)
                np.subtract(self._qd, self._qd_last, out=self._tmp)
                np.abs(self._tmp, out=self._tmp)
                np.maximum(self._dqd_peak, self._tmp, out=self._dqd_peak)
                np.abs(self._qd, out=self._tmp)
                np.maximum(self._qd_peak, self._tmp, out=self._qd_peak)
                np.abs(self._tau_arm, out=self._tmp)
                np.maximum(self._torque_peak, self._tmp, out=self._torque_peak)
            # a target is reached by the next cycle; with no new command the servo holds it
            self._prev[:] = self._target
            self._vff_last[:] = self._vff
            if not self._stopping:
                self._vff[:] = 0.0

    def _feed_forward(self) -> None:
        """This cycle's ctrl offset (kv/kp)·v_ff + M·a_ff/kp: the servo's torque becomes
        kp (target - q) + kv (v_ff - q̇) + M a_ff, plus gravity compensation, within the torque limit."""
        n = cell.N_JOINTS
        np.subtract(self._vff, self._vff_last, out=self._acc[:n])
        self._acc[:n] /= self._cycle_s
        np.clip(self._acc[:n], -_FF_MAX_ACC_RAD_S2, _FF_MAX_ACC_RAD_S2, out=self._acc[:n])
        mujoco.mj_mulM(self.model, self.data, self._tau, self._acc)
        np.divide(self._tau[:n], self._kp, out=self._offset)
        np.multiply(self._ff_s, self._vff, out=self._tmp)
        self._offset += self._tmp

    def stop(self) -> None:
        """Controlled stop: the servo's reference keeps its course and each joint's speed falls at
        `stop_decel_rad_s2` to zero, then the arm holds. Not latched: the next send() takes over
        (latching is the supervisor's ESTOP)."""
        self._stopping = True
        self._target[:] = self._prev  # drop a command sent for this cycle
        self._vff[:] = self._vff_last  # the last commanded velocity: the reference stays smooth

    def reset(self, seed: int | None = None) -> RobotState:
        """Back to HOME_Q with the gripper open, parts at their seeded places (seed None: the
        constructor's), the person parked at PERSON_PATH_M[0], time 0."""
        if seed is not None:
            self._seed = seed
        m, d = self.model, self.data
        mujoco.mj_resetDataKeyframe(m, d, m.key("home").id)
        d.qpos[: cell.N_JOINTS] = cell.HOME_Q  # exact (the keyframe's text is rounded)
        d.ctrl[: cell.N_JOINTS] = cell.HOME_Q
        self._parts_xyz[:] = cell.part_positions(self._seed, self._parts)
        mujoco.mj_forward(m, d)
        self._target[:] = cell.HOME_Q
        self._prev[:] = cell.HOME_Q
        self._vff[:] = 0.0
        self._vff_last[:] = 0.0
        self._qd_peak[:] = 0.0
        self._dqd_peak[:] = 0.0
        self._torque_peak[:] = 0.0
        self._qd_last[:] = 0.0
        self._gripper, self._stopping = 0.0, False
        self._walk: tuple[np.ndarray, np.ndarray, float, float] | None = None
        return self.observe()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> MujocoRobot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the cell: person, parts, camera, ground truth -----------------------------------------

    def place_arm(self, q_rad: np.ndarray, qd_rad_s: np.ndarray) -> RobotState:
        """Put the arm at q moving at qd, its servo tracking that motion (the fault campaign starts
        scenarios mid-motion this way). The next send() continues from here. Peaks restart."""
        q, qd = np.asarray(q_rad, dtype=np.float64), np.asarray(qd_rad_s, dtype=np.float64)
        if q.shape != (cell.N_JOINTS,) or qd.shape != (cell.N_JOINTS,) or not np.isfinite([q, qd]).all():
            raise ValueError(f"place_arm needs finite q_rad and qd_rad_s of shape (6,), got {q!r}, {qd!r}")
        self._q[:] = q
        self._qd[:] = qd
        self._prev[:] = q
        self._target[:] = q
        self._vff[:] = qd
        self._vff_last[:] = qd
        self._qd_last[:] = qd
        self._qd_peak[:] = 0.0
        self._dqd_peak[:] = 0.0
        self._torque_peak[:] = 0.0
        self._stopping = False
        mujoco.mj_forward(self.model, self.data)
        return self.observe()

    def set_person(self, xy_m: tuple[float, float]) -> None:
        """Place the person (capsule axis at x, y, base frame) and end any walk."""
        self._walk = None
        self.data.mocap_pos[0, :2] = xy_m

    def person_walk(self, path_m: list[tuple[float, float]] | None = None, speed_m_s: float = 1.6) -> None:
        """Walk the person from path_m[0] through each (x, y) waypoint at `speed_m_s`, starting now
        (simulated time) and stopping at the last one. Default: cell.PERSON_PATH_M, into the cell at
        ISO 13855's 1.6 m/s walking speed."""
        points = np.asarray(cell.PERSON_PATH_M if path_m is None else path_m, dtype=float)  # (K, 2)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 1 or not speed_m_s > 0:
            raise ValueError(
                f"path_m must be (x, y) waypoints and speed_m_s > 0, got {path_m!r}, {speed_m_s!r}"
            )
        points = points[np.r_[True, np.any(np.diff(points, axis=0) != 0, axis=1)]]  # no zero-length legs
        cum_m = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])  # (K,)
        self.set_person(tuple(points[0]))
        self._walk = (points, cum_m, float(speed_m_s), self.data.time)

    def _walk_person(self) -> None:
        points, cum_m, speed, t0 = self._walk
        s = speed * (self.data.time - t0)
        if s >= cum_m[-1]:
            self.data.mocap_pos[0, :2] = points[-1]
            self._walk = None
            return
        i = int(np.searchsorted(cum_m, s, side="right")) - 1
        frac = (s - cum_m[i]) / (cum_m[i + 1] - cum_m[i])
        self.data.mocap_pos[0, :2] = points[i] + frac * (points[i + 1] - points[i])

    def _person_nearest_m(self) -> np.ndarray:
        """The point of the person's capsule nearest the robot base (what a floor scanner sees). # (3,)"""
        px, py = float(self.data.mocap_pos[0, 0]), float(self.data.mocap_pos[0, 1])
        z0, z1 = cell.PERSON_AXIS_Z_M
        z = min(max(0.0, z0), z1)
        r = math.hypot(px, py)
        shrink = max(r - cell.PERSON_RADIUS_M, 0.0) / r if r > 0 else 0.0
        return np.array((px * shrink, py * shrink, z))

    def _holding(self) -> str | None:
        """The part between closed fingers that is off the table, if any."""
        if self.data.qpos[self._finger_adr] > cell.FINGER_TRAVEL_M - 0.004:
            return None  # closed on nothing
        d = self.data
        rel = (self._parts_xyz - d.site_xpos[self._tool]) @ d.site_xmat[self._tool].reshape(
            3, 3
        )  # (parts, 3)
        between = (np.abs(rel[:, 0]) < 0.03) & (np.abs(rel[:, 1]) < 0.02) & (np.abs(rel[:, 2]) < 0.03)
        lifted = self._parts_xyz[:, 2] > cell.PART_HALF_M + 0.005
        hits = np.flatnonzero(between & lifted)
        return self.part_names[hits[0]] if len(hits) else None

    def part_position(self, part: str) -> np.ndarray:
        """Centre of a part, base frame. # (3,)"""
        return self._parts_xyz[self.part_names.index(part)].copy()

    def part_in_bin(self, part: str, bin_name: str) -> bool:
        """Whether the part lies in the bin: centre inside its walls, not in the gripper, and no
        higher than the wall top plus a stack of all the cell's parts (a part resting on others counts)."""
        i = self.part_names.index(part)
        x, y, z = self._parts_xyz[i]
        bx, by = cell.BINS_M[bin_name]
        h = cell.BIN_INNER_HALF_M
        top_m = cell.BIN_HEIGHT_M + 2 * cell.PART_HALF_M * self._parts
        return bool(abs(x - bx) < h and abs(y - by) < h and z < top_m and self._holding() != part)

    def render(self, camera: str = "overview", *, width: int = 640, height: int = 480) -> np.ndarray:
        """An RGB image from a camera of the cell ("overview", "top"). # (height, width, 3) uint8
        Needs MUJOCO_GL=egl or osmesa set before Python starts."""
        _require_gl()
        if self._renderer is None or (self._renderer.height, self._renderer.width) != (height, width):
            self.close()
            self._renderer = mujoco.Renderer(self.model, height, width)
        self._renderer.update_scene(self._forward_copy(), camera=camera)
        return self._renderer.render()

    def _forward_copy(self) -> mujoco.MjData:
        """A copy of the state with everything derived from it computed (mj_forward), so that
        looking at the cell never changes what the physics does next."""
        d, t = self.data, self._truth
        t.time = d.time
        for field in ("qpos", "qvel", "act", "ctrl", "mocap_pos", "mocap_quat"):
            getattr(t, field)[:] = getattr(d, field)
        mujoco.mj_forward(self.model, t)
        return t

    def ground_truth(self) -> GroundTruth:
        """The true simulated state now, and peaks since the last call. Computed on a copy of the
        state, so reading the truth never changes the trajectory."""
        m, d, t = self.model, self.data, self._forward_copy()
        vel = np.zeros(6)  # (rot, lin)
        mujoco.mj_objectVelocity(m, t, mujoco.mjtObj.mjOBJ_SITE, self._tool, vel, 0)
        contacts = set()
        for g1, g2 in t.contact.geom[: t.ncon]:
            b1, b2 = m.geom_bodyid[g1], m.geom_bodyid[g2]
            if self._is_robot_body[b1] != self._is_robot_body[b2]:
                robot, other = (b1, b2) if self._is_robot_body[b1] else (b2, b1)
                contacts.add((m.body(robot).name, m.body(other).name))
        distance = min(
            mujoco.mj_geomDistance(m, t, self._person_geom, g, 10.0, None) for g in self._robot_geoms
        )
        truth = GroundTruth(
            t_s=d.time,
            q_rad=self._q.copy(),
            qd_rad_s=self._qd.copy(),
            qdd_rad_s2=(self._qd - self._qd_last) / m.opt.timestep,
            qd_peak_rad_s=self._qd_peak.copy(),
            qdd_peak_rad_s2=self._dqd_peak / m.opt.timestep,
            torque_nm=d.qfrc_actuator[: cell.N_JOINTS].copy(),  # what the last physics step applied
            torque_peak_nm=self._torque_peak.copy(),
            tool_m=t.site_xpos[self._tool].copy(),
            tool_speed_m_s=float(np.linalg.norm(vel[3:])),
            links_m=np.vstack([t.xpos[self._link_bodies], t.site_xpos[self._tool][None]]),
            contacts=tuple(sorted(contacts)),
            person_distance_m=float(distance),
            parts_m={name: self._parts_xyz[i].copy() for i, name in enumerate(self.part_names)},
        )
        self._qd_peak[:] = 0.0
        self._dqd_peak[:] = 0.0
        self._torque_peak[:] = 0.0
        return truth

    def _advance_stop(self) -> None:
        """One cycle of the controlled stop: each joint's speed falls by decel·cycle toward 0."""
        dv = self._stop_decel_rad_s2 * self._cycle_s
        v = self._vff
        np.copysign(np.maximum(np.abs(v) - dv, 0.0), v, out=v)
        self._target += v * self._cycle_s
        if not v.any():
            self._stopping = False
