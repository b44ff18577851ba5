"""The latched emergency stop (ISO 13850:2015): only a deliberate reset by a named operator clears it,
and the reset is refused while the arm or its command still moves, the heartbeat or the state is lost,
or a person is within S_p."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from kiban.errors import KibanError
from kiban.robot.safety.memory import SupervisorMemory, with_points
from kiban.robot.safety.separation import separation_reasons
from kiban.robot.safety.watchdog import state_faults
from kiban.robot.safety_config import N_JOINTS, SafetyConfig
from kiban.robot.types import RobotState

STANDSTILL_RAD_S = 0.01  # a reset needs the measured joints slower than this


class ResetRefused(KibanError):
    """An e-stop reset while a fault persists; `reasons` names each fault."""

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__(f"e-stop reset refused: {', '.join(reasons)}")
        self.reasons = reasons


def estop(memory: SupervisorMemory, reason: str) -> SupervisorMemory:
    """Latch the emergency stop (ISO 13850): only reset() clears it. The first reason is kept."""
    return (
        memory
        if memory.estop_latched
        else replace(memory, estop_latched=True, estop_reason=str(reason) or "estop")
    )


def reset(
    memory: SupervisorMemory, state: RobotState, config: SafetyConfig, *, operator: str, now_s: float
) -> SupervisorMemory:
    """Clear a latched e-stop: a deliberate act by a named operator, refused (ResetRefused) while the arm or
    its command is still moving, the heartbeat or the state is lost, or a person is within S_p."""
    if not memory.estop_latched:
        return memory
    faults = [] if isinstance(operator, str) and operator.strip() else ["no_operator"]
    if np.any(memory.last_qd_rad_s) or np.any(memory.last_qdd_rad_s2):
        faults.append("command_moving")
    qd = getattr(state, "qd_rad_s", None)
    if (
        not isinstance(qd, np.ndarray)
        or qd.shape != (N_JOINTS,)
        or not np.all(np.abs(qd) <= STANDSTILL_RAD_S)
    ):
        faults.append("robot_moving")
    faults += state_faults(state, memory, config, now_s)
    faults += [
        r
        for r in separation_reasons(state, with_points(memory, config.compiled), config.compiled)[0]
        if r.startswith("separation")
    ]
    if faults:
        raise ResetRefused(tuple(faults))
    return replace(memory, estop_latched=False, estop_reason="", reset_by=operator.strip())
