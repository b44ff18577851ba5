"""Skills: preconditions fail by name; a pick and place through the real supervisor needs no intervention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kiban.robot import arm, cell
from kiban.robot.safety import heartbeat, initial_memory, supervise
from kiban.robot.safety_config import load_safety_config
from kiban.robot.skills import Skill, SkillConfig, SkillError, SkillPolicy, Skills
from kiban.robot.types import RobotState, Status

CONFIG = load_safety_config("examples/robot-safety.yaml")
HOME = np.array(cell.HOME_Q)


class FakeWorld:
    """Parts where the test puts them; bins where the cell has them."""

    def __init__(self, parts: dict[str, tuple[float, float]]) -> None:
        self.parts = parts

    def part_position(self, part: str) -> np.ndarray:
        return np.array([*self.parts[part], cell.PART_HALF_M])

    def part_on_table(self, part: str) -> bool:
        return part in self.parts

    def bin_position(self, bin_name: str) -> np.ndarray:
        return np.array([*cell.BINS_M[bin_name], 0.005])


def at_rest(holding: str | None = None, gripper: float = 0.0) -> RobotState:
    return RobotState(t_s=0.0, q_rad=HOME.copy(), qd_rad_s=np.zeros(6), gripper=gripper, holding=holding)


def skills_for(parts: dict[str, tuple[float, float]]) -> Skills:
    skills = Skills(FakeWorld(parts), SkillConfig.from_safety(CONFIG, home_q_rad=HOME))
    skills.start(at_rest())
    return skills


def test_place_without_holding_fails_its_precondition() -> None:
    with pytest.raises(SkillError) as info:
        skills_for({}).place(at_rest(), "bin_a")
    assert (info.value.skill, info.value.condition) == ("place", "not_holding")


def test_pick_of_an_unreachable_part_fails_its_precondition() -> None:
    with pytest.raises(SkillError) as info:
        skills_for({"far": (1.4, 0.0)}).pick(at_rest(), "far")  # reach is 0.85 m
    assert (info.value.skill, info.value.condition) == ("pick", "approach_unreachable")
    assert "residual" in str(info.value)


def test_pick_preconditions_gripper_empty_and_part_on_table() -> None:
    skills = skills_for({"p": (-0.45, 0.0)})
    with pytest.raises(SkillError, match="gripper_not_empty"):
        skills.pick(at_rest(holding="q", gripper=1.0), "p")
    with pytest.raises(SkillError, match="part_not_on_table"):
        skills.pick(at_rest(), "gone")


def test_pick_postcondition_not_holding_ends_the_policy_with_the_error() -> None:
    """A grasp that closes on nothing: the policy stops (returns None) and keeps the SkillError."""

    def program(skills: Skills, state: RobotState) -> Skill:
        return (yield from skills.pick(state, "p"))

    policy = SkillPolicy(skills_for({"p": (-0.45, 0.0)}), program)
    state, cycles = at_rest(), 0
    while policy(state) is not None:  # the sensors never report holding
        cycles += 1
        state = RobotState(t_s=cycles * 0.002, q_rad=HOME.copy(), qd_rad_s=np.zeros(6))
    assert isinstance(policy.error, SkillError)
    assert (policy.error.skill, policy.error.condition) == ("pick", "not_holding")
    assert cycles > 1000  # it did approach, descend, close and lift first


@pytest.mark.parametrize(
    "parts",
    [
        {"p": (-0.35, 0.25)},  # corners of the part region: nearest the fixture ...
        {"p": (-0.60, -0.25)},  # ... and farthest out
        # seed 1032's layout: from bin_b to a part near the base, IK seeded from the arm's pose landed on
        # the elbow-down branch (forearm under the table top); seeds now start on home's branch
        {"p": (-0.381, -0.133), "q": (-0.351, 0.107)},
    ],
)
def test_pick_and_place_needs_no_supervisor_intervention(parts: dict[str, tuple[float, float]]) -> None:
    """Skills plan inside the supervisor's limits with margin: every command passes unchanged.
    Perfect tracking stands in for the robot; the sim runs are in test_loop.py."""
    skills = skills_for(parts)
    holding: list[str | None] = [None]
    current: list[str] = []

    def program(sk: Skills, state: RobotState) -> Skill:
        for name, (_, y) in parts.items():
            current[:] = [name]
            state = yield from sk.pick(state, name)
            state = yield from sk.place(state, "bin_a" if y >= 0 else "bin_b")
        return (yield from sk.home(state))

    policy = SkillPolicy(skills, program)
    memory = initial_memory(at_rest())
    t_s, statuses, grasp_z = 0.0, [], math.inf
    while True:
        state = RobotState(
            t_s=t_s,
            q_rad=memory.last_q_rad.copy(),
            qd_rad_s=memory.last_qd_rad_s.copy(),
            gripper=skills.gripper_cmd,
            holding=holding[0],
        )
        command = policy(state)
        if command is None:
            break
        holding[0] = current[0] if skills.gripper_cmd == 1.0 else None
        grasp_z = min(grasp_z, float(arm.tool_position(command.q_rad)[2]))
        memory = heartbeat(memory, t_s)
        verdict, memory = supervise(command, state, CONFIG, memory, now_s=t_s)
        statuses.append(verdict.status)
        t_s += 0.002
    assert policy.error is None
    assert statuses.count(Status.OK) == len(statuses)
    assert grasp_z == pytest.approx(cell.PART_HALF_M + 0.01, abs=1e-4)  # descended to the grasp point
    np.testing.assert_allclose(skills.q_cmd_rad, HOME, atol=1e-12)
