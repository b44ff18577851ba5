"""Inverse kinematics for the arm of `arm.py`: damped least squares (Levenberg–Marquardt) on the
tool's position and orientation, seeded from the current joint positions.

    q = solve_ik(tool_down_pose([0.4, -0.3, 0.1], yaw_rad=0.0), q_seed)   # tool z axis = −z of the base

Why not the closed-form UR solution: damped least squares works for any DH arm `arm.py` describes,
stays on the branch of the seed (no jumps of the elbow or wrist between waypoints), and respects
joint limits by projection; at ~20 µs per forward pass it converges in well under a millisecond
from a nearby seed. Deterministic: no random restarts.

Reference: Buss, "Introduction to inverse kinematics with Jacobian transpose, pseudoinverse and
damped least squares methods" (2004), §5; Nakamura & Hanafusa (1986) for the damping.
"""

from __future__ import annotations

import numpy as np

from kiban.errors import KibanError
from kiban.robot import arm

# UR5e joints move ±360° (arm.UR5E_JOINT_RANGE_RAD); a cell's config may narrow this.
DEFAULT_Q_MIN_RAD = np.full(arm.N_JOINTS, -arm.UR5E_JOINT_RANGE_RAD)
DEFAULT_Q_MAX_RAD = np.full(arm.N_JOINTS, arm.UR5E_JOINT_RANGE_RAD)


class IKError(KibanError):
    """No joint configuration reaches the pose from this seed; carries the residual that remained."""

    def __init__(self, message: str, *, residual_pos_m: float, residual_rot_rad: float) -> None:
        super().__init__(f"{message} (residual {residual_pos_m * 1e3:.2f} mm, {residual_rot_rad:.4f} rad)")
        self.residual_pos_m = residual_pos_m
        self.residual_rot_rad = residual_rot_rad


def tool_down_pose(position_m: np.ndarray, yaw_rad: float = 0.0) -> np.ndarray:
    """A tool pose pointing straight down (tool z = −z of the base), turned by `yaw_rad` about z. # (4, 4)

    >>> np.round(tool_down_pose(np.array([0.4, 0.0, 0.1]))[:3, 2], 6).tolist()
    [0.0, 0.0, -1.0]
    """
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    T = np.eye(4)
    # Rz(yaw) · Rx(π): x = (c, s, 0), y = (s, −c, 0), z = (0, 0, −1)
    T[:3, :3] = np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])
    T[:3, 3] = position_m
    return T


def rotation_error(R: np.ndarray, R_target: np.ndarray) -> np.ndarray:
    """The rotation vector (axis × angle, base frame) that turns R into R_target. # (3,)"""
    R_err = R_target @ R.T
    cos_angle = np.clip((np.trace(R_err) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos_angle))
    axis_sin = 0.5 * np.array(
        [R_err[2, 1] - R_err[1, 2], R_err[0, 2] - R_err[2, 0], R_err[1, 0] - R_err[0, 1]]
    )
    if angle < 1e-9:
        return axis_sin  # sin(angle) ≈ angle
    if np.pi - angle > 1e-6:
        return axis_sin * (angle / np.sin(angle))
    # angle ≈ π: sin vanishes; take the axis from the symmetric part, R_err = 2 a aᵀ − I
    a = np.sqrt(np.maximum((np.diag(R_err) + 1.0) / 2.0, 0.0))
    k = int(np.argmax(a))
    a = (R_err[:, k] + R_err[k, :]) / (4.0 * a[k])
    return a / np.linalg.norm(a) * angle


def pose_error(T: np.ndarray, T_target: np.ndarray) -> np.ndarray:
    """Position then rotation error, base frame: [dx, dy, dz (m), rx, ry, rz (rad)]. # (6,)"""
    return np.concatenate([T_target[:3, 3] - T[:3, 3], rotation_error(T[:3, :3], T_target[:3, :3])])


def jacobian(frames: np.ndarray) -> np.ndarray:
    """Geometric Jacobian of the tool from `arm.forward(q)`'s frames: rows (v, ω), columns joints. # (6, 6)

    Joint i turns about the z axis of frame i−1 through its origin: v_i = z × (p_tool − p), ω_i = z.
    """
    z = frames[:-2, :3, 2]  # (6, 3)
    p = frames[:-2, :3, 3]  # (6, 3)
    J = np.empty((6, arm.N_JOINTS))
    J[:3] = np.cross(z, frames[-1, :3, 3] - p).T
    J[3:] = z.T
    return J


def solve_ik(
    T_target: np.ndarray,
    q_seed_rad: np.ndarray,
    *,
    q_min_rad: np.ndarray = DEFAULT_Q_MIN_RAD,
    q_max_rad: np.ndarray = DEFAULT_Q_MAX_RAD,
    tol_pos_m: float = 1e-5,
    tol_rot_rad: float = 1e-4,
    max_iters: int = 200,
    rot_weight_m: float = 0.3,
) -> np.ndarray:
    """Joint positions that put the tool at `T_target` (4, 4), nearest the seed's branch. # (6,)

    Levenberg–Marquardt: dq = Jᵀ(J Jᵀ + λ²I)⁻¹ e with λ shrunk after a step that lowers the error
    and grown after one that does not (the step is then not taken); q is clipped to the limits.
    `rot_weight_m` turns radians into metres so that position and orientation weigh alike
    (about the gripper's length). Raises IKError with the residual when it does not converge.
    """
    W = np.array([1.0, 1.0, 1.0, rot_weight_m, rot_weight_m, rot_weight_m])
    q = np.clip(np.asarray(q_seed_rad, dtype=np.float64), q_min_rad, q_max_rad)
    frames = arm.forward(q)
    e = pose_error(frames[-1], T_target)
    cost = float(np.sum((W * e) ** 2))
    lam = 1e-2
    for _ in range(max_iters):
        if np.linalg.norm(e[:3]) < tol_pos_m and np.linalg.norm(e[3:]) < tol_rot_rad:
            return q
        J = W[:, None] * jacobian(frames)
        dq = J.T @ np.linalg.solve(J @ J.T + lam**2 * np.eye(6), W * e)
        q_new = np.clip(q + dq, q_min_rad, q_max_rad)
        frames_new = arm.forward(q_new)
        e_new = pose_error(frames_new[-1], T_target)
        cost_new = float(np.sum((W * e_new) ** 2))
        if cost_new < cost:
            q, frames, e, cost = q_new, frames_new, e_new, cost_new
            lam = max(lam * 0.3, 1e-6)
        else:
            lam = lam * 4.0
            if lam > 1e3:
                break  # stuck at a limit or a local minimum: more damping will not help
    if np.linalg.norm(e[:3]) < tol_pos_m and np.linalg.norm(e[3:]) < tol_rot_rad:
        return q
    raise IKError(
        "no joint positions reach the pose from this seed",
        residual_pos_m=float(np.linalg.norm(e[:3])),
        residual_rot_rad=float(np.linalg.norm(e[3:])),
    )
