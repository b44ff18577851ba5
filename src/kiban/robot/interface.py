"""The `Robot` contract: the one seam between kiban's control loop and an arm, simulated or real.

    loop:  state = robot.observe()
           verdict = supervise(policy(state), state, limits)     # safety.py, pure
           robot.send(verdict.command_sent)                       # never anything else
           robot.step()                                           # one control cycle

Ten members, after LeRobot's `Robot` and ruckig's update-per-cycle style: a driver reports state,
takes the supervisor's command, and keeps the cycle. kiban's implementation is the MuJoCo cell in
`kiban.robot.sim.MujocoRobot`; a test's fake needs only these members.

Hardware bridge seam
--------------------
A driver for a real arm (ur_rtde's `RTDEControlInterface` / `RTDEReceiveInterface`, a
ros2_control hardware interface, a vendor SDK) implements the same ten members:

- `observe()` reads the controller's measured joint positions and velocities (ur_rtde
  `getActualQ` / `getActualQd`), the gripper's state, the people the cell's sensors report
  (laser scanner, light curtain or camera: nearest point to the robot, base frame) and the
  grasp sensor; `t_s` is a monotonic clock (`time.monotonic()`), never wall-clock time.
- `send(command)` passes a POSITION target to the controller's streaming servo interface
  (ur_rtde `servoJ(q, 0, 0, cycle_s, lookahead, gain)`, a ros2_control position command
  interface) and the gripper command to the gripper. It is only ever called with a supervisor's
  `Verdict.command_sent`.
- `step(n_cycles)` keeps the rate: on hardware it waits until the next cycle boundary
  (ur_rtde `initPeriod` / `waitPeriod`) instead of advancing a simulation. Time is then the
  controller's, and a late cycle is the loop's to report, not the driver's to hide.
- `stop()` asks the controller for its own controlled stop (ur_rtde `servoStop` / `stopJ`),
  `reset(seed)` re-reads the state after a stop (seed is ignored: the world is not ours to
  place), `close()` releases the connection with the arm at rest.

What a driver must NOT do:

- never bypass the supervisor: no path from a policy, skill, planner or model to `send()` that
  does not go through `supervise()`, and no "direct" or "jog" method beside these ten;
- never weaken or replace the arm's own safety controller: the robot's certified safety
  functions (UR safety limits, protective and emergency stops, safeguard inputs, ISO 10218 /
  ISO/TS 15066 settings) stay configured and in charge. kiban's supervisor is an additional
  layer in front of them, not a substitute; the driver does not clear the controller's
  protective or emergency stops by itself;
- never retry or reorder commands after a timeout or a refused command: hold, report, let the
  supervisor decide.

    >>> from kiban.robot.sim import MujocoRobot
    >>> robot = MujocoRobot()
    >>> isinstance(robot, Robot)
    True
    >>> robot.observe().q_rad.shape
    (6,)
    >>> robot.close()
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from kiban.robot.types import Command, RobotState


@runtime_checkable
class Robot(Protocol):
    """An arm with a gripper, driven one control cycle at a time."""

    @property
    def cycle_s(self) -> float:
        """Length of one control cycle (0.002 s at the default 500 Hz)."""
        ...

    @property
    def n_joints(self) -> int:
        """Number of arm joints (6 for the UR5e)."""
        ...

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Names of the arm joints, base to flange."""
        ...

    @property
    def t_s(self) -> float:
        """The robot's clock: simulated seconds in simulation, monotonic seconds on hardware."""
        ...

    def observe(self) -> RobotState:
        """The current measured state. Cheap: called once per cycle."""
        ...

    def send(self, command: Command) -> None:
        """Apply a supervisor's `Verdict.command_sent` for the next cycle (POSITION targets)."""
        ...

    def step(self, n_cycles: int = 1) -> None:
        """Let `n_cycles` control cycles pass: the simulation advances in lockstep; hardware waits."""
        ...

    def stop(self) -> None:
        """Controlled stop: decelerate and hold position, power on (IEC 60204-1 stop category 2)."""
        ...

    def reset(self, seed: int | None = None) -> RobotState:
        """Start an episode again (simulation: the seeded cell; hardware: re-read the state)."""
        ...

    def close(self) -> None:
        """Release the robot; safe to call twice."""
        ...
