"""The watchdog: reasons for a protective stop that do not depend on the command — an invalid clock or
state, a lost heartbeat (nothing proved liveness within heartbeat_timeout_s), a stale observation, and
measured joints lagging the command by more than tracking_error_max_rad."""

from __future__ import annotations

import numpy as np

from kiban.robot.safety.memory import SupervisorMemory, is_finite
from kiban.robot.safety_config import N_JOINTS, SafetyConfig
from kiban.robot.types import RobotState


def state_faults(
    state: RobotState, memory: SupervisorMemory, config: SafetyConfig, now_s: float
) -> list[str]:
    """Reasons for a protective stop that do not depend on the command."""
    if not is_finite(now_s):
        return ["clock_invalid"]
    if not isinstance(state, RobotState) or not is_finite(state.t_s):
        return ["state_invalid"]
    q = state.q_rad
    if not isinstance(q, np.ndarray) or q.shape != (N_JOINTS,) or not np.isfinite(q).all():
        return ["state_invalid:q_rad"]
    faults = []
    hb = memory.last_heartbeat_t_s
    if hb is None or now_s - hb > config.heartbeat_timeout_s:
        faults.append("heartbeat_lost" if hb is None else f"heartbeat_lost:{now_s - hb:.3f}s")
    if now_s - state.t_s > config.heartbeat_timeout_s:
        faults.append(f"stale_state:{now_s - state.t_s:.3f}s")
    err = np.abs(q - memory.last_q_rad)
    if err.max() > config.tracking_error_max_rad:
        j = int(np.argmax(err))
        faults.append(f"tracking_error:j{j + 1}:{err[j]:.3f}rad")
    return faults
