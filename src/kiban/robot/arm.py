"""The default arm: kinematics of the Universal Robots UR5e from its published DH parameters.

Source: Universal Robots, "DH parameters for calculations of kinematics and dynamics" (UR5e row):

    joint   a [m]     d [m]     alpha [rad]
    1       0         0.1625    π/2
    2      -0.425     0         0
    3      -0.3922    0         0
    4       0         0.1333    π/2
    5       0         0.0997   -π/2
    6       0         0.0996    0

Limits from the UR5e technical specifications: every joint ±360°; joint speed 180°/s (π rad/s);
reach 850 mm; payload 5 kg. Acceleration and jerk are not published as joint limits; kiban's
defaults (examples/robot-safety.yaml) are conservative values a user sets for their cell.

Standard (distal) DH: T_i = Rz(θ_i) · Tz(d_i) · Tx(a_i) · Rx(α_i); the tool frame is the flange
(frame 6) moved `tool_offset_m` along its z axis (the gripper's fingertip centre).

    >>> import numpy as np
    >>> frames = forward(np.zeros(6))
    >>> frames.shape
    (8, 4, 4)
    >>> np.round(frames[-2][:3, 3], 4).tolist()   # the flange at q = 0
    [-0.8172, -0.2329, 0.0628]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

N_JOINTS = 6


@dataclass(frozen=True)
class DH:
    a_m: tuple[float, ...]
    d_m: tuple[float, ...]
    alpha_rad: tuple[float, ...]


UR5E = DH(
    a_m=(0.0, -0.425, -0.3922, 0.0, 0.0, 0.0),
    d_m=(0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996),
    alpha_rad=(np.pi / 2, 0.0, 0.0, np.pi / 2, -np.pi / 2, 0.0),
)
UR5E_MAX_JOINT_VEL_RAD_S = np.pi  # 180 °/s, every joint
UR5E_JOINT_RANGE_RAD = 2 * np.pi  # ±360 °
TOOL_OFFSET_M = 0.15  # flange to fingertip centre of kiban's parallel gripper


def dh_transform(theta: float, d: float, a: float, alpha: float) -> np.ndarray:
    """Rz(theta) Tz(d) Tx(a) Rx(alpha) as a 4x4 homogeneous matrix."""
    ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
    return np.array(
        [
            [ct, -st * ca, st * sa, a * ct],
            [st, ct * ca, -ct * sa, a * st],
            [0.0, sa, ca, d],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def forward(q: np.ndarray, dh: DH = UR5E, tool_offset_m: float = TOOL_OFFSET_M) -> np.ndarray:
    """Frames of the base (0), joints 1..6 and the tool, in the base frame. # (8, 4, 4)"""
    frames = np.empty((N_JOINTS + 2, 4, 4))
    T = np.eye(4)
    frames[0] = T
    for i in range(N_JOINTS):
        T = T @ dh_transform(float(q[i]), dh.d_m[i], dh.a_m[i], dh.alpha_rad[i])
        frames[i + 1] = T
    tool = np.eye(4)
    tool[2, 3] = tool_offset_m
    frames[-1] = T @ tool
    return frames


def link_points(q: np.ndarray, dh: DH = UR5E, tool_offset_m: float = TOOL_OFFSET_M) -> np.ndarray:
    """Origins of every frame, base to tool: the polyline the supervisor keeps out of zones. # (8, 3)"""
    return forward(q, dh, tool_offset_m)[:, :3, 3]


def tool_position(q: np.ndarray, dh: DH = UR5E, tool_offset_m: float = TOOL_OFFSET_M) -> np.ndarray:
    """The tool centre point in the base frame. # (3,)"""
    return forward(q, dh, tool_offset_m)[-1, :3, 3]


def axis_reach_m(dh: DH = UR5E, tool_offset_m: float = TOOL_OFFSET_M) -> np.ndarray:
    """R̂[i, j]: an upper bound, over every q, on the distance of link point i (0 base .. 7 tool) from the
    axis of joint j + 1; 0 where the joint does not move the point. A point turning by h about that axis
    moves at most R̂·h: the lever of every braking-distance bound (the supervisor's, the planner's). # (8, 6)

    >>> axis_reach_m()[7, 5]   # wrist 3 turns about the tool's own axis
    0.0
    """
    return np.array(
        [[_axis_reach(dh, tool_offset_m, i, jj) for jj in range(N_JOINTS)] for i in range(N_JOINTS + 2)]
    )


def _axis_reach(dh: DH, tool_offset_m: float, i: int, jj: int) -> float:
    """An upper bound, over every q, on the distance of link point i (0 base .. 7 tool) from the axis of
    joint jj + 1 (z_jj through o_jj). o_i − o_jj = Σ_l (d_l z_(l−1) + a_l x_l) over DH rows l = jj+1..i:
    each a_l counts in full; d_l only once some α between makes z_(l−1) leave the axis's direction
    (so wrist 3 does not move the tool centre, and the UR's parallel shoulder/elbow axes lose d4)."""
    reach, parallel = 0.0, True
    for row in range(jj, min(i, N_JOINTS)):  # 0-based DH rows jj .. i-1
        reach += abs(dh.a_m[row]) + (0.0 if parallel else abs(dh.d_m[row]))
        parallel = parallel and abs(math.sin(dh.alpha_rad[row])) < 1e-12
    if i == N_JOINTS + 1 and not parallel:
        reach += tool_offset_m
    return reach if i > jj else 0.0
