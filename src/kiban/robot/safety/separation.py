"""Speed and separation monitoring, ISO/TS 15066:2016 §5.5.4:

    S_p = S_h + S_r + S_s + C + Z_d + Z_r,   S_h = v_h (T_r + T_s),   S_r = v_r T_r

A person nearer than S_p (to the nearest link segment of the last sent configuration): protective stop;
nearer than S_p + warning margin: the tool is capped at the collaborative speed (ISO 10218-1 §5.6).
v_r is the fastest link point's speed over the last cycle (speed toward the person is at most that).
"""

from __future__ import annotations

import math

import numpy as np

from kiban.robot.safety.memory import SupervisorMemory
from kiban.robot.safety_config import CompiledSafety, SafetyConfig, SeparationConfig
from kiban.robot.types import RobotState


def protective_separation_m(robot_speed_m_s: float, sep: SeparationConfig) -> float:
    """ISO/TS 15066 §5.5.4: S_p = v_h (T_r + T_s) + v_r T_r + S_s + C + Z_d + Z_r.

    >>> s = SeparationConfig(1.6, 0.1, 0.3, 0.1, 0.2, 0.1, 0.05, 0.5)
    >>> round(protective_separation_m(1.0, s), 6)   # 0.64 + 0.1 + 0.1 + 0.2 + 0.1 + 0.05
    1.19
    """
    return sep.constant_part_m() + robot_speed_m_s * sep.reaction_time_s


def separation_reasons(
    state: RobotState, memory: SupervisorMemory, comp: CompiledSafety, config: SafetyConfig | None = None
) -> tuple[list[str], float]:
    """Speed and separation monitoring: (reasons, tool speed cap). The distance is to the nearest link
    segment of the last sent configuration; v_r is its fastest link point's speed."""
    cap = config.tool_speed_max_m_s if config else 0.0
    people = getattr(state, "people_m", ())
    if not people:
        return [], cap
    pts = memory.points_m.tolist()  # (8, 3) as floats: 7 segments, base column to tool
    nearest = math.inf
    for person in people:
        p = np.asarray(person, dtype=np.float64) if isinstance(person, np.ndarray | list | tuple) else None
        if p is None or p.shape != (3,) or not np.isfinite(p).all():
            return ["separation:sensor_fault"], cap
        nearest = min(nearest, distance_to_polyline(p.tolist(), pts))
    s_p = comp.sp_constant_m + memory.point_speed_m_s * comp.reaction_time_s
    if nearest < s_p:
        return [f"separation:{nearest:.2f}m<{s_p:.2f}m"], cap
    if nearest < s_p + comp.warning_margin_m and config:
        return [
            f"collaborative_speed:{nearest:.2f}m<{s_p + comp.warning_margin_m:.2f}m"
        ], config.collaborative_speed_m_s
    return [], cap


def distance_to_polyline(p: list[float], pts: list[list[float]]) -> float:
    """Distance from point p to the nearest of the segments pts[i] → pts[i+1]."""
    px, py, pz = p
    best = math.inf
    for (ax, ay, az), (bx, by, bz) in zip(pts[:-1], pts[1:], strict=True):
        dx, dy, dz = bx - ax, by - ay, bz - az
        dd = dx * dx + dy * dy + dz * dz
        t = 0.0 if dd < 1e-18 else min(1.0, max(0.0, ((px - ax) * dx + (py - ay) * dy + (pz - az) * dz) / dd))
        ex, ey, ez = ax + t * dx - px, ay + t * dy - py, az + t * dz - pz
        best = min(best, ex * ex + ey * ey + ez * ez)
    return math.sqrt(best)
