"""Scripted tasks in the simulated cell: a skill program, how long it may take, and how success is judged.

    spec = pick_place_task(robot, config)        # every part into its nearer bin
    run_episode(robot, spec.policy, config, max_cycles=spec.max_cycles, seed=1000, success=spec.success)

`CellWorld` is the `skills.World` of the simulation: it reads part positions from the physics. On
hardware the same interface is perception's (a camera and a pose estimator, or surveyed fixtures).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kiban.robot import cell
from kiban.robot.safety_config import SafetyConfig
from kiban.robot.skills import Skill, SkillConfig, SkillPolicy, Skills
from kiban.robot.types import RobotState

ON_TABLE_TOLERANCE_M = 0.005


class CellWorld:
    """Where the simulated cell's parts and bins are (`skills.World`), from a `MujocoRobot`."""

    def __init__(self, robot: object) -> None:
        self.robot = robot  # a MujocoRobot: part_position, part_names

    def part_position(self, part: str) -> np.ndarray:
        if part not in self.robot.part_names:
            raise KeyError(f"no part {part!r} in the cell (parts: {', '.join(self.robot.part_names)})")
        return self.robot.part_position(part)

    def part_on_table(self, part: str) -> bool:
        x, y, z = self.part_position(part)
        (x0, x1), (y0, y1), (_, top) = cell.TABLE_M
        on_top = abs(z - (top + cell.PART_HALF_M)) < ON_TABLE_TOLERANCE_M
        in_bin = any(
            abs(x - bx) < cell.BIN_INNER_HALF_M + cell.BIN_WALL_M
            and abs(y - by) < cell.BIN_INNER_HALF_M + cell.BIN_WALL_M
            for bx, by in cell.BINS_M.values()
        )
        return bool(on_top and x0 < x < x1 and y0 < y < y1 and not in_bin)

    def bin_position(self, bin_name: str) -> np.ndarray:
        if bin_name not in cell.BINS_M:
            raise KeyError(f"no bin {bin_name!r} in the cell (bins: {', '.join(cell.BINS_M)})")
        bx, by = cell.BINS_M[bin_name]
        return np.array([bx, by, 0.005])  # the bin floor's top (cell._bin: a 5 mm plate)

    def nearest_bin(self, part: str) -> str:
        x, y, _ = self.part_position(part)
        return min(cell.BINS_M, key=lambda b: (cell.BINS_M[b][0] - x) ** 2 + (cell.BINS_M[b][1] - y) ** 2)


@dataclass
class TaskSpec:
    description: str
    """The natural-language task, as LeRobot datasets store it."""
    policy: SkillPolicy
    success: Callable[[], bool]
    max_cycles: int


def pick_place_task(robot: object, config: SafetyConfig, *, parts: int | None = None) -> TaskSpec:
    """Home, then pick each part (the first `parts`; default all) and place it in its nearer bin, then
    home. Success: every one of those parts lies in its bin at the end. Part positions are read when
    each pick starts, so the seed of `run_episode`'s reset decides them. One TaskSpec per episode: its
    policy carries the program's progress."""
    world = CellWorld(robot)
    names = tuple(robot.part_names[: len(robot.part_names) if parts is None else parts])
    targets: dict[str, str] = {}

    def program(skills: Skills, state: RobotState) -> Skill:
        state = yield from skills.home(state)
        for part in names:
            targets[part] = world.nearest_bin(part)
            state = yield from skills.pick(state, part)
            state = yield from skills.place(state, targets[part])
        return (yield from skills.home(state))

    def success() -> bool:
        return len(targets) == len(names) and all(robot.part_in_bin(p, b) for p, b in targets.items())

    skills = Skills(world, SkillConfig.from_safety(config, home_q_rad=np.array(cell.HOME_Q)))
    per_part_s = 20.0  # measured 14-15 s per pick and place (seeds 1000..1049); the rest is headroom
    max_cycles = round((6.0 + per_part_s * len(names)) / config.cycle_s)
    return TaskSpec("Put each part in the nearer bin.", SkillPolicy(skills, program), success, max_cycles)


TASKS: dict[str, Callable[..., TaskSpec]] = {"pick-place": pick_place_task}
"""The tasks `kiban robot sim --task` knows."""
