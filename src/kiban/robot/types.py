"""The records that cross the robot stack's boundaries: what the robot reports, what is asked of it,
and what the supervisor lets through.

    observe() ─▶ RobotState ─▶ policy/skill ─▶ Command ─▶ supervise() ─▶ Verdict.command_sent ─▶ send()

Units in names: positions in rad (joints) or m (Cartesian), times in s. Arrays are float64 numpy
vectors of length N_JOINTS (6) unless said otherwise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RobotState:
    """One observation of the cell."""

    t_s: float
    """Time of the observation (simulated seconds in simulation; monotonic seconds on hardware)."""
    q_rad: np.ndarray
    """Joint positions. # (6,)"""
    qd_rad_s: np.ndarray
    """Joint velocities. # (6,)"""
    gripper: float = 0.0
    """Gripper opening command state: 0 open, 1 closed."""
    people_m: tuple[np.ndarray, ...] = ()
    """Positions of the people the cell's sensors see (base frame, each (3,)), nearest point to the robot."""
    holding: str | None = None
    """The part between the fingers, if the sensors say so."""


class CommandKind(enum.StrEnum):
    POSITION = "position"  # q_rad is the joint position to reach by the next cycle
    VELOCITY = "velocity"  # qd_rad_s is the joint velocity to hold for the next cycle


@dataclass(frozen=True)
class Command:
    """What a policy or skill asks the robot to do during the next control cycle."""

    t_s: float
    """When the command was issued (the supervisor refuses stale commands)."""
    kind: CommandKind = CommandKind.POSITION
    q_rad: np.ndarray | None = None
    """Position target, for POSITION. # (6,)"""
    qd_rad_s: np.ndarray | None = None
    """Velocity target, for VELOCITY. # (6,)"""
    gripper: float | None = None
    """0 open .. 1 closed; None leaves the gripper as it is."""
    seq: int = 0
    """Increasing sequence number of the sender."""


class Status(enum.StrEnum):
    OK = "ok"  # sent unchanged
    CLAMPED = "clamped"  # sent after limiting (velocity, acceleration, jerk, tool speed)
    SLOWED = "slowed"  # a person is inside the warning distance: reduced speed
    PROTECTIVE_STOP = "protective_stop"  # held in place; resumes when the cause is gone
    REFUSED = "refused"  # malformed, non-finite or stale command: hold position
    ESTOP = "estop"  # latched emergency stop: nothing moves until an explicit reset


@dataclass(frozen=True)
class Verdict:
    """What the supervisor decided for one cycle. Only `command_sent` ever reaches the robot."""

    command_sent: Command
    status: Status
    reasons: tuple[str, ...] = field(default_factory=tuple)
    """Named causes, e.g. ("joint_velocity_limit:3", "keep_out_zone:fixture")."""
