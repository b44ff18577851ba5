"""The judge: which requested commands were unsafe (an independent check of the request against the
limits, not the supervisor's code), what the supervisor sent, and what the simulated physics did.

Three layers, each with named reasons:

- `unsafe_request`: sent as it is, would this command break a limit? Malformed, non-finite, stale;
  joint position, or finite-difference speed, acceleration or jerk against the positions actually
  sent; a link point outside the workspace or a segment within the keep-out margin (arm.link_points);
  any motion while the e-stop is latched, the heartbeat is lost, or a person is within S_p.
- `sent_violations`: the supervisor's own output checked the same way (limits of the sent sequence).
- `truth_violations`: `MujocoRobot.ground_truth()` after the cycle: joint positions, peak speeds and
  accelerations over the cycle's physics steps, every link point inside the workspace, no segment in a
  keep-out zone (the zone itself, the margin is the supervisor's).
"""

from __future__ import annotations

import math

import numpy as np

from kiban.robot import arm
from kiban.robot.safety_config import SafetyConfig
from kiban.robot.types import Command, CommandKind

POS_TOL_RAD = 1e-3  # the servo tracks, it does not copy: measured positions may differ this much
VEL_TOL = 0.05  # measured joint speed may exceed the limit by this fraction (as loop.VEL_TOLERANCE)
ACC_TOL = 0.25  # measured joint acceleration over one physics step, against the limit
WORKSPACE_TOL_M = 0.005
REST_RAD_S = 0.01  # "at rest": every measured joint slower than this
_LIMIT = 1 + 1e-9
_SEG = np.linspace(0.0, 1.0, 9)[None, :, None]  # samples along each link segment


def requested_position(command: object, last_q: np.ndarray, dt: float) -> np.ndarray | None:
    """The position a well-formed command asks for (VELOCITY: where it leads), else None."""
    if not isinstance(command, Command):
        return None
    if command.kind == CommandKind.POSITION:
        q = command.q_rad
    elif command.kind == CommandKind.VELOCITY:
        qd = command.qd_rad_s
        q = None if not isinstance(qd, np.ndarray) or qd.shape != (6,) else last_q + qd * dt
    else:
        return None
    if not isinstance(q, np.ndarray) or q.shape != (6,):
        return None
    return q


def unsafe_request(
    command: object, now_s: float, sent: list[np.ndarray], config: SafetyConfig, context: list[str]
) -> list[str]:
    """Why `command`, sent unchanged, would break a limit ([] if it would not). `sent`: the last three
    positions sent, oldest first; `context`: conditions under which any motion is unsafe."""
    dt = config.cycle_s
    s3, s2, s1 = sent
    if not isinstance(command, Command):
        return ["malformed:type"]
    if command.kind not in (CommandKind.POSITION, CommandKind.VELOCITY):
        return ["malformed:kind"]
    q = requested_position(command, s1, dt)
    if q is None:
        return ["malformed:shape"]
    if not np.all(np.isfinite(q)):
        return ["non_finite"]
    t = command.t_s
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return ["malformed:t_s"]
    g = command.gripper
    if g is not None and not (isinstance(g, int | float) and 0.0 <= g <= 1.0):
        return ["malformed:gripper"]
    out = []
    if now_s - t > config.command_timeout_s:
        out.append("stale")
    out += kinematic_violations(q, sent, config)
    moves = not np.array_equal(q, s1)
    if moves:
        out += context
    return out


def kinematic_violations(q: np.ndarray, sent: list[np.ndarray], config: SafetyConfig) -> list[str]:
    """Limits q breaks as the next position after `sent` (oldest first, three)."""
    dt = config.cycle_s
    c = config.compiled
    s3, s2, s1 = sent
    out = []
    if np.any(q < c.pos_min_rad) or np.any(q > c.pos_max_rad):
        out.append("joint_position")
    v, v1, v2 = (q - s1) / dt, (s1 - s2) / dt, (s2 - s3) / dt
    a, a1 = (v - v1) / dt, (v1 - v2) / dt
    jerk = (a - a1) / dt
    if np.any(np.abs(v) > c.vel_max_rad_s * _LIMIT):
        out.append("joint_velocity")
    if np.any(np.abs(a) > c.acc_max_rad_s2 * _LIMIT):
        out.append("joint_acceleration")
    if np.any(np.abs(jerk) > c.jerk_max_rad_s3 * _LIMIT + 1e-5):
        out.append("joint_jerk")
    out += zone_violations(arm.link_points(q)[1:], c.zone_min_m, c.zone_max_m, config, tol_m=0.0)
    return out


def zone_violations(
    pts: np.ndarray, zone_min: np.ndarray, zone_max: np.ndarray, config: SafetyConfig, *, tol_m: float
) -> list[str]:
    """Workspace (every point shoulder .. tool) and keep-out (sampled segments) reasons. # pts (7, 3)"""
    c = config.compiled
    out = []
    if np.any(pts < c.workspace_min_m - tol_m) or np.any(pts > c.workspace_max_m + tol_m):
        out.append("workspace")
    s = (pts[:-1, None, :] + _SEG * (pts[1:] - pts[:-1])[:, None, :]).reshape(-1, 3)
    for name, lo, hi in zip(c.zone_names, zone_min, zone_max, strict=True):
        if np.any(np.all((s > lo + tol_m) & (s < hi - tol_m), axis=-1)):
            out.append(f"keep_out:{name}")
    return out


def truth_violations(truth: object, config: SafetyConfig) -> list[str]:
    """What the physics did this cycle that the limits forbid (see the module docstring)."""
    c = config.compiled
    out = []
    if np.any(truth.q_rad < c.pos_min_rad - POS_TOL_RAD) or np.any(truth.q_rad > c.pos_max_rad + POS_TOL_RAD):
        out.append("joint_position")
    if np.any(truth.qd_peak_rad_s > c.vel_max_rad_s * (1 + VEL_TOL)):
        out.append("joint_velocity")
    if np.any(truth.qdd_peak_rad_s2 > c.acc_max_rad_s2 * (1 + ACC_TOL)):
        out.append("joint_acceleration")
    margin = config.keep_out_margin_m  # the zones themselves: the margin is the supervisor's clearance
    out += zone_violations(
        truth.links_m[1:], c.zone_min_m + margin, c.zone_max_m - margin, config, tol_m=WORKSPACE_TOL_M
    )
    return out
