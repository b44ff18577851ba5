"""Skills: small generators that turn the latest `RobotState` into one `Command` per control cycle.

    skills = Skills(world, SkillConfig.from_safety(config))
    skills.start(state)                      # plans begin at the measured position
    skill = skills.pick(state, "part0")      # preconditions checked now: SkillError if unmet
    command = next(skill)                    # the first cycle's command
    command = skill.send(state)              # every later cycle: the new state in, a command out
    ...                                      # StopIteration(value=final state) when done

Skills compose with `yield from`: `state = yield from skills.place(state, "bin_a")`. Every command
goes through the supervisor (loop.py). Skills plan inside its limits, slowly enough that it never has
to intervene in nominal motion: its checks bound where the arm could go while braking from the
current speed, so speed near the table, the workspace floor and the keep-out zones is kept low.
Plans start from the last position the skills commanded (the supervisor takes finite differences of
sent positions, not of measured ones).

Where parts and bins are comes from a `World`. In simulation the sim knows (tasks.CellWorld); on
hardware this is perception's job (a camera and a pose estimator, or fixtures at surveyed places).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from kiban.errors import KibanError
from kiban.robot import arm
from kiban.robot.kinematics import IKError, solve_ik, tool_down_pose
from kiban.robot.motion import (
    Clearance,
    JointLimits,
    PlanningError,
    Trajectory,
    braking_ratio,
    clearance_rounds,
    line_limits,
    line_waypoints,
    peak_tool_speed_m_s,
    plan_joint_trajectory,
)
from kiban.robot.types import Command, RobotState

Skill = Generator[Command, RobotState, RobotState]
"""Yields the next command, is sent the next state, returns the state it finished on."""

HOME_Q_RAD = np.array([0.0, -math.pi / 2, math.pi / 2, -math.pi / 2, -math.pi / 2, 0.0])  # tool down
MAX_LINE_SEGMENT_M = 0.12  # straight enough: ~4 mm off the line per 10 cm leg (motion.line_waypoints)


class SkillError(KibanError):
    """A skill's precondition or postcondition failed; `skill` and `condition` name which."""

    def __init__(self, skill: str, condition: str, detail: str = "") -> None:
        super().__init__(f"{skill}: {condition}" + (f" ({detail})" if detail else ""))
        self.skill = skill
        self.condition = condition


class World(Protocol):
    """Where things are, in the robot's base frame (metres)."""

    def part_position(self, part: str) -> np.ndarray:
        """Centre of a part. # (3,)"""
        ...

    def part_on_table(self, part: str) -> bool:
        """Whether the part rests on the table (not in a bin, not in the gripper, not fallen off)."""
        ...

    def bin_position(self, bin_name: str) -> np.ndarray:
        """Centre of a bin's floor (its inside surface). # (3,)"""
        ...


@dataclass(frozen=True)
class SkillConfig:
    """How the skills move. Build it from the supervisor's config with `from_safety`."""

    limits: JointLimits
    """Joint limits of free (joint-space) moves: a fraction of the supervisor's, never its own."""
    cycle_s: float = 0.002
    """The control period the trajectories are sampled at."""
    q_min_rad: np.ndarray = field(default_factory=lambda: np.full(arm.N_JOINTS, -2 * math.pi))
    """Joint range IK may use (the supervisor's position limits). # (6,)"""
    q_max_rad: np.ndarray = field(default_factory=lambda: np.full(arm.N_JOINTS, 2 * math.pi))
    """# (6,)"""
    home_q_rad: np.ndarray = field(default_factory=lambda: HOME_Q_RAD.copy())
    """Where `home()` goes. # (6,)"""
    clearance: Clearance | None = None
    """The supervisor's workspace and keep-out zones: plans are slowed where braking would come near
    them, and refused where the path itself would cross them (None: no such check)."""
    tool_speed_m_s: float = 0.4
    """Free moves are slowed (replanned once) so the tool's estimated peak speed stays below this."""
    line_speed_m_s: float = 0.2
    """Tool speed on the straight approach and retreat lines."""
    line_slow_speed_m_s: float = 0.06
    """... and on their last `line_slow_zone_m` next to the grasp or release point."""
    line_slow_zone_m: float = 0.04
    line_acc_m_s2: float = 1.0
    line_jerk_m_s3: float = 10.0
    approach_height_m: float = 0.15
    """Approach and retreat lines start/end this far above the grasp or release point."""
    grasp_above_centre_m: float = 0.01
    """The tool point sits this far above a part's centre when the fingers close (fingertips reach
    1.5 cm past the tool point: they stop above the table)."""
    release_above_floor_m: float = 0.04
    """In a bin, the tool point opens this far above the bin's floor (the part's bottom ~1 cm above it)."""
    gripper_settle_s: float = 0.4
    """Time to hold still after an open or close command: the fingers travel 45 mm."""

    @classmethod
    def from_safety(
        cls,
        config: object,
        *,
        vel_fraction: float = 0.4,
        acc_fraction: float = 0.4,
        home_q_rad: np.ndarray | None = None,
        **overrides: object,
    ) -> SkillConfig:
        """Plan free moves at these fractions of a `SafetyConfig`'s joint limits, within its joint range
        and clear of its workspace bounds and keep-out zones (`clearance`).

        Why so far inside: the supervisor accepts a command only if braking from it along its own plan
        keeps every link inside the workspace and away from the zones, with bounds that grow with speed.
        Measured on the cell's 50 evaluation layouts (seeds 1000..1049): 0.4 with the clearance
        slow-down passes every command unchanged; without it even 0.3 was clamped on some layouts
        (the elbow swinging near the fixture zone, the tool fast near the table top).
        """
        j = config.joints  # SafetyConfig.joints; duck-typed so that skills import nothing of safety
        limits = JointLimits(
            np.array(j.vel_max_rad_s) * vel_fraction,
            np.array(j.acc_max_rad_s2) * acc_fraction,
            np.array(j.jerk_max_rad_s3) * acc_fraction,
        )
        if home_q_rad is not None:
            overrides["home_q_rad"] = np.asarray(home_q_rad, dtype=np.float64)
        return cls(
            limits=limits,
            clearance=Clearance.from_safety(config),
            cycle_s=float(config.cycle_s),
            q_min_rad=np.array(j.pos_min_rad),
            q_max_rad=np.array(j.pos_max_rad),
            **overrides,
        )


class Skills:
    """The skill library of one arm: remembers the last commanded position, gripper and sequence number."""

    def __init__(self, world: World, config: SkillConfig) -> None:
        self.world = world
        self.config = config
        self.q_cmd_rad = config.home_q_rad.copy()  # (6,) the last position commanded
        self.gripper_cmd = 0.0
        self.seq = 0

    def start(self, state: RobotState) -> None:
        """Begin at the measured state (at rest): the next plan starts from here."""
        self.q_cmd_rad = np.array(state.q_rad, dtype=np.float64)
        self.gripper_cmd = float(state.gripper)

    # --- primitives ---------------------------------------------------------------------------

    def _command(self, state: RobotState, q_rad: np.ndarray) -> Command:
        self.seq += 1
        self.q_cmd_rad = q_rad
        return Command(t_s=state.t_s, q_rad=q_rad, gripper=self.gripper_cmd, seq=self.seq)

    def _follow(self, state: RobotState, traj: Trajectory) -> Skill:
        """One command per sample of the trajectory."""
        for k in range(traj.n_samples):
            q, _, _ = traj.sample(k)
            state = yield self._command(state, q)
        return state

    def _hold(self, state: RobotState, duration_s: float) -> Skill:
        for _ in range(max(1, round(duration_s / self.config.cycle_s))):
            state = yield self._command(state, self.q_cmd_rad)
        return state

    def _move_joints(self, state: RobotState, q_goal_rad: np.ndarray) -> Skill:
        """A jerk-limited joint move from rest to rest, slowed where the tool would pass its speed or
        braking would come near the workspace's bounds or a keep-out zone."""
        if np.array_equal(q_goal_rad, self.q_cmd_rad):
            return state  # already there
        c, zeros = self.config, np.zeros(arm.N_JOINTS)
        limits = c.limits
        peak = peak_tool_speed_m_s(
            plan_joint_trajectory(self.q_cmd_rad, zeros, zeros, q_goal_rad, limits, c.cycle_s)
        )
        if peak > c.tool_speed_m_s:
            limits = limits.scaled(c.tool_speed_m_s / peak)
        state = yield self._command(state, self.q_cmd_rad)  # planning takes ~1 ms: one step a cycle
        return (yield from self._plan_and_follow(state, q_goal_rad, limits, straight=False))

    def _line(self, state: RobotState, legs: list[tuple[np.ndarray, float]]) -> Skill:
        """Along (waypoint, tool speed) legs of a straight tool line: each leg phase-synchronized
        (straight in joint space) at its Cartesian speed, from rest to rest."""
        c = self.config
        for q, speed_m_s in legs:
            p0, p1 = arm.forward(self.q_cmd_rad)[-1, :3, 3], arm.forward(q)[-1, :3, 3]
            lim = line_limits(
                self.q_cmd_rad,
                q,
                float(np.linalg.norm(p1 - p0)),
                speed_m_s,
                c.line_acc_m_s2,
                c.line_jerk_m_s3,
            )
            lim = JointLimits(
                np.minimum(lim.vel_rad_s, c.limits.vel_rad_s),
                np.minimum(lim.acc_rad_s2, c.limits.acc_rad_s2),
                np.minimum(lim.jerk_rad_s3, c.limits.jerk_rad_s3),
            )
            state = yield from self._plan_and_follow(state, q, lim, straight=True)
        return state

    def _plan_and_follow(
        self, state: RobotState, q_goal_rad: np.ndarray, limits: JointLimits, *, straight: bool
    ) -> Skill:
        """Plan in rounds, one per control cycle, holding still meanwhile (the arm is at rest), then follow.
        Planning inside one cycle could take several ms: rounds keep every cycle's compute short."""
        c = self.config
        rounds = clearance_rounds(
            self.q_cmd_rad, q_goal_rad, limits, c.cycle_s, c.clearance, straight=straight
        )
        traj, accepted = next(rounds)
        while not accepted:
            state = yield self._command(state, self.q_cmd_rad)
            traj, accepted = next(rounds)
        return (yield from self._follow(state, traj))

    def _ik(self, skill: str, what: str, T: np.ndarray, seed_rad: np.ndarray) -> np.ndarray:
        try:
            return solve_ik(T, seed_rad, q_min_rad=self.config.q_min_rad, q_max_rad=self.config.q_max_rad)
        except IKError as e:
            raise SkillError(skill, f"{what}_unreachable", str(e)) from e

    def _approach(
        self, skill: str, what: str, point_m: np.ndarray, yaw_rad: float
    ) -> tuple[np.ndarray, list[tuple[np.ndarray, float]], list[tuple[np.ndarray, float]]]:
        """IK for the point above `point_m` and the vertical line down to it: (q_above, down legs, up legs).
        Down: MAX_LINE_SEGMENT_M legs at line speed, the last `line_slow_zone_m` slow; up: the reverse."""
        c = self.config
        T_end = tool_down_pose(point_m, yaw_rad)
        T_above = tool_down_pose(point_m + [0.0, 0.0, c.approach_height_m], yaw_rad)
        q_above = self._ik(skill, "approach", T_above, self._branch_seed(point_m))
        fast_m = max(c.approach_height_m - c.line_slow_zone_m, 0.0)
        n_fast = math.ceil(fast_m / MAX_LINE_SEGMENT_M - 1e-9)
        fractions = [fast_m * i / n_fast / c.approach_height_m for i in range(1, n_fast + 1)] + [1.0]
        try:
            qs = line_waypoints(q_above, T_end, fractions, q_min_rad=c.q_min_rad, q_max_rad=c.q_max_rad)
        except IKError as e:
            raise SkillError(skill, f"{what}_unreachable", str(e)) from e
        if c.clearance is not None:
            for q in (q_above, qs[-1]):
                if math.isinf(braking_ratio(q, np.zeros(arm.N_JOINTS), np.zeros(arm.N_JOINTS), c.clearance)):
                    raise SkillError(
                        skill, f"{what}_unreachable", "the arm would leave the workspace or enter a zone"
                    )
        speeds = [c.line_speed_m_s] * n_fast + [c.line_slow_speed_m_s]
        down = list(zip(qs, speeds, strict=True))
        up = list(zip([*qs[-2::-1], q_above], speeds[::-1], strict=True))
        return q_above, down, up

    def _branch_seed(self, point_m: np.ndarray) -> np.ndarray:
        """An IK seed on home's branch (elbow up, wrist over the tool), turned to face `point_m`: seeding
        from wherever the arm is could land on the elbow-down branch, under the table. # (6,)"""
        seed = self.config.home_q_rad.copy()
        home_tool_m = arm.forward(seed)[-1, :3, 3]
        seed[0] += _wrap(math.atan2(point_m[1], point_m[0]) - math.atan2(home_tool_m[1], home_tool_m[0]))
        seed[5] = self.q_cmd_rad[5]  # wrist 3 stays (see _following_yaw)
        return seed

    def _following_yaw(self, point_m: np.ndarray) -> float:
        """The tool yaw that keeps wrist 3 where it is while the base turns toward `point_m`: the tool
        turns with the arm (less joint travel, and the supervisor's braking bounds stay small)."""
        T = arm.forward(self.q_cmd_rad)[-1]
        yaw = math.atan2(T[1, 0], T[0, 0])
        return yaw + math.atan2(point_m[1], point_m[0]) - math.atan2(T[1, 3], T[0, 3])

    # --- skills -------------------------------------------------------------------------------

    def home(self, state: RobotState) -> Skill:
        """Joint move to the home configuration (tool down above the table)."""
        return self._move_joints(state, self.config.home_q_rad)

    def move_to(self, state: RobotState, pose: np.ndarray) -> Skill:
        """Joint move to the configuration that puts the tool at `pose` (4, 4). SkillError if unreachable."""
        return self._move_joints(state, self._ik("move_to", "pose", pose, self.q_cmd_rad))

    def open_gripper(self, state: RobotState) -> Skill:
        return self._set_gripper(state, 0.0)

    def close_gripper(self, state: RobotState) -> Skill:
        return self._set_gripper(state, 1.0)

    def _set_gripper(self, state: RobotState, value: float) -> Skill:
        self.gripper_cmd = value
        return self._hold(state, self.config.gripper_settle_s)

    def pick(self, state: RobotState, part: str) -> Skill:
        """Approach above the part, descend on a vertical line, close, lift. SkillError names the failed
        condition: "gripper_not_empty", "part_not_on_table", "approach_unreachable", "grasp_unreachable",
        or "not_holding" (the postcondition, checked after the lift)."""
        if state.holding is not None:
            raise SkillError("pick", "gripper_not_empty", f"holding {state.holding}")
        if not self.world.part_on_table(part):
            raise SkillError("pick", "part_not_on_table", part)
        grasp_m = self.world.part_position(part) + [0.0, 0.0, self.config.grasp_above_centre_m]
        quarter = math.pi / 2  # parts are axis-aligned cubes: any multiple of 90° grips them
        yaw = round(self._following_yaw(grasp_m) / quarter) * quarter
        q_above, down, up = self._approach("pick", "grasp", grasp_m, yaw)
        return self._pick(state, part, q_above, down, up)

    def _pick(self, state: RobotState, part: str, q_above: np.ndarray, down: list, up: list) -> Skill:
        state = yield self._command(state, self.q_cmd_rad)  # the precondition checks took this cycle
        if self.gripper_cmd != 0.0:
            state = yield from self.open_gripper(state)
        state = yield from self._move_joints(state, q_above)
        state = yield from self._line(state, down)
        state = yield from self.close_gripper(state)
        state = yield from self._line(state, up)
        if state.holding != part:
            raise SkillError("pick", "not_holding", f"{part} expected, holding {state.holding}")
        return state

    def place(self, state: RobotState, bin_name: str) -> Skill:
        """Move above the bin, descend into it, open, retreat. SkillError: "not_holding" (precondition),
        "approach_unreachable", "release_unreachable", or "still_holding" (postcondition)."""
        if state.holding is None:
            raise SkillError("place", "not_holding")
        release_m = self.world.bin_position(bin_name) + [0.0, 0.0, self.config.release_above_floor_m]
        q_above, down, up = self._approach("place", "release", release_m, self._following_yaw(release_m))
        return self._place(state, q_above, down, up)

    def _place(self, state: RobotState, q_above: np.ndarray, down: list, up: list) -> Skill:
        state = yield self._command(state, self.q_cmd_rad)  # the precondition checks took this cycle
        state = yield from self._move_joints(state, q_above)
        state = yield from self._line(state, down)
        state = yield from self.open_gripper(state)
        state = yield from self._line(state, up)
        if state.holding is not None:
            raise SkillError("place", "still_holding", state.holding)
        return state


def _wrap(angle_rad: float) -> float:
    """The same angle in [-π, π)."""
    return (angle_rad + math.pi) % (2 * math.pi) - math.pi


class SkillPolicy:
    """A policy from a skill program: `program(skills, state)` is a generator (a Skill) that composes
    skills. Each call takes the cycle's state and returns its command, or None when the program has
    ended; a SkillError ends it too and is kept in `error` (the loop reports it: nothing raises
    mid-cycle)."""

    def __init__(self, skills: Skills, program: Callable[[Skills, RobotState], Skill]) -> None:
        self.skills = skills
        self.program = program
        self.error: SkillError | PlanningError | None = None
        self.done = False
        self._gen: Skill | None = None

    def __call__(self, state: RobotState) -> Command | None:
        if self.done:
            return None
        try:
            if self._gen is None:
                self.skills.start(state)
                self._gen = self.program(self.skills, state)
                return next(self._gen)
            return self._gen.send(state)
        except StopIteration:
            self.done = True
        except (SkillError, PlanningError) as e:
            self.error, self.done = e, True
        return None
