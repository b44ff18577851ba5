"""Jerk-limited joint trajectories (ruckig), straight tool lines built from them, and the slow-down that
keeps them clear of what the supervisor guards.

    traj = plan_joint_trajectory(q0, qd0, qdd0, q_goal, limits, cycle_s=0.002)
    for k in range(traj.n_samples):
        q_rad, qd_rad_s, qdd_rad_s2 = traj.sample(k)   # the position to command for cycle k+1

    qs = line_waypoints(q0, T_end, [0.5, 1.0])          # IK points on the straight tool line to T_end
    traj = plan_within_clearance(q0, qs[0], line_limits(q0, qs[0], 0.05, 0.1, 1.0, 10.0), 0.002,
                                 Clearance.from_safety(config), straight=True)

Trajectories are planned at a fraction of the supervisor's limits (`JointLimits.scaled`) and slowed
where braking would come near the workspace's bounds or a keep-out zone (`Clearance`), so that nominal
motion never needs the supervisor: it is a net, not the planner.

Ruckig: Berscheid & Kröger, "Jerk-limited real-time trajectory generation with arbitrary target
states", RSS 2021. Offline use: one `calculate` per segment, then `at_time` per cycle (~0.5 µs);
`DurationDiscretization.Discrete` makes each duration a whole number of cycles, so the last
sample lands exactly on the goal; `Synchronization.Phase` makes a move straight in joint space.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import ruckig

from kiban.errors import KibanError
from kiban.robot import arm
from kiban.robot.kinematics import jacobian, solve_ik


class PlanningError(KibanError):
    """Ruckig found no trajectory for the inputs (limits not positive, target out of reach, ...)."""


@dataclass(frozen=True)
class JointLimits:
    """Per-joint kinematic limits a trajectory must keep. Arrays # (6,)"""

    vel_rad_s: np.ndarray
    acc_rad_s2: np.ndarray
    jerk_rad_s3: np.ndarray

    def __post_init__(self) -> None:
        for name in ("vel_rad_s", "acc_rad_s2", "jerk_rad_s3"):
            value = np.broadcast_to(np.asarray(getattr(self, name), dtype=np.float64), (arm.N_JOINTS,))
            if not np.all(np.isfinite(value)) or np.any(value <= 0):
                raise PlanningError(f"JointLimits.{name} must be finite and > 0, got {value.tolist()}")
            object.__setattr__(self, name, value.copy())

    def scaled(self, fraction: float) -> JointLimits:
        """The same limits times `fraction` (e.g. 0.8: plan inside the supervisor's limits)."""
        return JointLimits(self.vel_rad_s * fraction, self.acc_rad_s2 * fraction, self.jerk_rad_s3 * fraction)


class Trajectory:
    """A jerk-limited joint trajectory sampled every `cycle_s`; sample k is the state at (k+1)·cycle_s."""

    def __init__(self, traj: ruckig.Trajectory | None, q_goal_rad: np.ndarray, cycle_s: float) -> None:
        self._traj = traj  # None: already at the goal, at rest
        self.q_goal_rad = q_goal_rad
        self.cycle_s = cycle_s
        self.duration_s = 0.0 if traj is None else float(traj.duration)
        self.n_samples = 0 if traj is None else max(1, round(self.duration_s / cycle_s))

    def sample(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q_rad, qd_rad_s, qdd_rad_s2) at time min((k+1)·cycle_s, duration); each # (6,)"""
        if self._traj is None or k + 1 >= self.n_samples:
            zeros = np.zeros(arm.N_JOINTS)
            return self.q_goal_rad.copy(), zeros, zeros.copy()
        p, v, a = self._traj.at_time((k + 1) * self.cycle_s)
        return np.array(p), np.array(v), np.array(a)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every sample at once: q, qd, qdd. Each # (n_samples, 6)"""
        samples = [self.sample(k) for k in range(self.n_samples)]
        if not samples:
            empty = np.zeros((0, arm.N_JOINTS))
            return empty, empty.copy(), empty.copy()
        q, qd, qdd = zip(*samples, strict=True)
        return np.stack(q), np.stack(qd), np.stack(qdd)


def plan_joint_trajectory(
    q0_rad: np.ndarray,
    qd0_rad_s: np.ndarray,
    qdd0_rad_s2: np.ndarray,
    q_goal_rad: np.ndarray,
    limits: JointLimits,
    cycle_s: float,
    *,
    straight: bool = False,
) -> Trajectory:
    """The time-optimal jerk-limited trajectory from (q0, qd0, qdd0) to rest at q_goal (all # (6,)).

    `straight`: ruckig's phase synchronization: every joint follows the same normalized profile,
    so the path is the straight joint-space segment (used on Cartesian lines between IK waypoints).
    """
    q_goal = np.asarray(q_goal_rad, dtype=np.float64).copy()
    if not np.all(np.isfinite(q_goal)):
        raise PlanningError(f"goal is not finite: {q_goal.tolist()}")
    at_rest = not np.any(qd0_rad_s) and not np.any(qdd0_rad_s2)
    if at_rest and np.max(np.abs(q_goal - q0_rad)) < 1e-12:
        return Trajectory(None, q_goal, cycle_s)
    inp = ruckig.InputParameter(arm.N_JOINTS)
    inp.current_position = np.asarray(q0_rad, dtype=np.float64).tolist()
    inp.current_velocity = np.asarray(qd0_rad_s, dtype=np.float64).tolist()
    inp.current_acceleration = np.asarray(qdd0_rad_s2, dtype=np.float64).tolist()
    inp.target_position = q_goal.tolist()
    inp.target_velocity = [0.0] * arm.N_JOINTS
    inp.target_acceleration = [0.0] * arm.N_JOINTS
    inp.max_velocity = limits.vel_rad_s.tolist()
    inp.max_acceleration = limits.acc_rad_s2.tolist()
    inp.max_jerk = limits.jerk_rad_s3.tolist()
    inp.duration_discretization = ruckig.DurationDiscretization.Discrete
    if straight:
        inp.synchronization = ruckig.Synchronization.Phase
    traj = ruckig.Trajectory(arm.N_JOINTS)
    try:
        result = ruckig.Ruckig(arm.N_JOINTS, cycle_s).calculate(inp, traj)
    except RuntimeError as e:  # ruckig raises on invalid input
        raise PlanningError(f"ruckig refused the input: {e}") from e
    if result not in (ruckig.Result.Working, ruckig.Result.Finished):
        raise PlanningError(f"ruckig found no trajectory: {result}")
    return Trajectory(traj, q_goal, cycle_s)


def line_limits(
    q0_rad: np.ndarray,
    q1_rad: np.ndarray,
    length_m: float,
    speed_m_s: float,
    acc_m_s2: float,
    jerk_m_s3: float,
) -> JointLimits:
    """Joint limits that make a phase-synchronized move from q0 to q1 (the joint-space image of a tool
    line `length_m` long) keep the tool's speed, acceleration and jerk near the given Cartesian ones:
    each joint's limit is its share |Δq_j| / length of them (joints that barely move get a floor)."""
    share = np.maximum(np.abs(np.asarray(q1_rad) - q0_rad) / max(length_m, 1e-9), 1e-3)  # rad per m, (6,)
    return JointLimits(share * speed_m_s, share * acc_m_s2, share * jerk_m_s3)


def peak_tool_speed_m_s(traj: Trajectory, *, n_checks: int = 16) -> float:
    """The tool's speed |J(q) q̇| at `n_checks` evenly spaced samples of `traj`, the largest (an estimate)."""
    best = 0.0
    for k in np.linspace(0, max(traj.n_samples - 1, 0), n_checks).round().astype(int):
        q, qd, _ = traj.sample(int(k))
        best = max(best, float(np.linalg.norm(jacobian(arm.forward(q))[:3] @ qd)))
    return best


@dataclass(frozen=True)
class Clearance:
    """The space the supervisor lets the arm use, as the planner sees it: link points shoulder..tool
    inside the workspace box, link segments outside the keep-out boxes (grown by the margin), and the
    supervisor's acceleration and jerk limits, which set how far the arm runs on while braking.

    The supervisor accepts a command only if braking from it keeps those bounds (safety.py), so a plan
    fast near a bound is clamped or stopped. `braking_reach_m` bounds the same braking reach as the
    supervisor does (levers measured to each joint's axis, plus the curvature term), and the skills
    slow a plan until the reach uses at most `use_fraction` of the clearance.
    """

    workspace_min_m: np.ndarray  # (3,)
    workspace_max_m: np.ndarray  # (3,)
    zones_min_m: np.ndarray  # (K, 3), grown by the margin
    zones_max_m: np.ndarray  # (K, 3)
    brake_acc_rad_s2: np.ndarray  # (6,)
    brake_jerk_rad_s3: np.ndarray  # (6,)
    use_fraction: float = 0.6

    @classmethod
    def from_safety(cls, config: object, *, use_fraction: float = 0.6) -> Clearance:
        """From a `SafetyConfig` (duck-typed: motion imports nothing of the supervisor)."""
        grow = config.keep_out_margin_m
        zmin = np.array([z.min_m for z in config.keep_out], dtype=np.float64).reshape(-1, 3) - grow
        zmax = np.array([z.max_m for z in config.keep_out], dtype=np.float64).reshape(-1, 3) + grow
        return cls(
            np.array(config.workspace.min_m, dtype=np.float64),
            np.array(config.workspace.max_m, dtype=np.float64),
            zmin,
            zmax,
            np.array(config.joints.acc_max_rad_s2, dtype=np.float64),
            np.array(config.joints.jerk_max_rad_s3, dtype=np.float64),
            use_fraction,
        )


_SEG = np.linspace(0.0, 1.0, 5)[:, None, None]  # (5, 1, 1) samples along each link segment
_AXIS_REACH_M = arm.axis_reach_m()  # (8, 6) R̂: bound over every q on point i's distance from joint j's axis
_CURVATURE_M = _AXIS_REACH_M[:, np.maximum(np.arange(6)[:, None], np.arange(6)[None, :])]  # (8, 6, 6)
_BRAKE_GRID_S = 0.002 * 1.05 ** np.arange(200)[:, None]  # (200, 1) braking times tried, 5 % apart
BRAKE_TIME_MARGIN = 1.1
"""The supervisor brakes on a grid of whole cycles (5 % apart): its plan may be this much longer."""


def braking_time_s(qd_rad_s: np.ndarray, qdd_rad_s2: np.ndarray, acc: np.ndarray, jerk: np.ndarray) -> float:
    """How long the supervisor's braking plan from (qd, qdd) takes, at most: the shortest time T (one
    for every joint, as the supervisor's plan) in which the acceleration profile a0 + C1 τ + C2 τ²
    (τ = t/T) brings speed and acceleration to zero within `acc` and `jerk`, times BRAKE_TIME_MARGIN."""
    v, a0 = np.asarray(qd_rad_s, dtype=np.float64), np.asarray(qdd_rad_s2, dtype=np.float64)
    if not (v.any() or a0.any()):
        return 0.0
    T = _BRAKE_GRID_S  # (G, 1) against (6,) joints
    c1, c2 = -6 * v / T - 4 * a0, 6 * v / T + 3 * a0  # a(τ) = a0 + c1 τ + c2 τ², a(1) = 0, ∫a dt = −v
    ok = (np.abs(c1) <= jerk * T) & (np.abs(c1 + 2 * c2) <= jerk * T)  # jerk extremes: τ = 0 and 1
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(c2 != 0, -c1 / (2 * c2), -1.0)
    inner = (tau > 0) & (tau < 1)
    ok &= ~inner | (np.abs(a0 + c1 * tau + c2 * tau * tau) <= acc)
    fits = np.flatnonzero(ok.all(axis=1))
    t = float(T[fits[0], 0]) if len(fits) else math.inf
    return BRAKE_TIME_MARGIN * t + 0.004


def braking_reach_m(
    q_rad: np.ndarray, qd_rad_s: np.ndarray, qdd_rad_s2: np.ndarray, acc: np.ndarray, jerk: np.ndarray
) -> np.ndarray:
    """An upper bound on how far each link point (base .. tool) moves while the supervisor brakes from
    (q, qd, qdd): joint j runs on at most h_j = |v_j| T/2 + |a_j| T²/12 (the plan's displacement), and
    point i then moves at most Σ_j R_ij h_j + ½ Σ_jk M_ijk h_j h_k, R_ij its distance from joint j's AXIS
    at q and M the curvature bound over every q (Taylor), never more than Σ_j R̂_ij h_j. # (8,)"""
    v, a = np.abs(qd_rad_s), np.abs(qdd_rad_s2)
    T = braking_time_s(qd_rad_s, qdd_rad_s2, acc, jerk)
    if T == 0.0:
        return np.zeros(arm.N_JOINTS + 2)
    h = v * T / 2 + a * T * T / 12  # (6,)
    frames = arm.forward(q_rad)  # (8, 4, 4)
    P, Z = frames[:, :3, 3], frames[: arm.N_JOINTS, :3, 2]  # (8, 3) points, (6, 3) joint axes
    D = P[:, None, :] - P[None, : arm.N_JOINTS, :]  # (8, 6, 3) from a point on each axis
    along = np.einsum("ijk,jk->ij", D, Z)  # (8, 6)
    R = np.sqrt(np.maximum((D * D).sum(-1) - along * along, 0.0)) * (_AXIS_REACH_M > 0)  # (8, 6)
    return np.minimum(R @ h + 0.5 * ((_CURVATURE_M @ h) @ h), _AXIS_REACH_M @ h)


def braking_ratio(q_rad: np.ndarray, qd_rad_s: np.ndarray, qdd_rad_s2: np.ndarray, c: Clearance) -> float:
    """Braking reach (braking_reach_m) over `use_fraction` of the clearance, worst link sample (> 1: too
    fast here); inf when the arm itself is outside the workspace or inside a zone."""
    P = arm.link_points(q_rad)  # (8, 3)
    reach = braking_reach_m(q_rad, qd_rad_s, qdd_rad_s2, c.brake_acc_rad_s2, c.brake_jerk_rad_s3)  # (8,)
    A, B = P[1:-1], P[2:]  # segments shoulder→…→tool, (6, 3) each
    S = A[None] + _SEG * (B - A)[None]  # (5, 6, 3)
    r = np.maximum(reach[1:-1], reach[2:])[None, :]  # (1, 6) a segment's reach: its larger end's
    room = np.minimum(S - c.workspace_min_m, c.workspace_max_m - S).min(axis=2)  # (5, 6)
    for lo, hi in zip(c.zones_min_m, c.zones_max_m, strict=True):
        room = np.minimum(room, np.linalg.norm(np.maximum(np.maximum(lo - S, S - hi), 0.0), axis=2))
    if np.any(room <= 0.0):
        return math.inf
    return float(np.max(r / (c.use_fraction * room)))


def clearance_rounds(
    q0_rad: np.ndarray,
    q_goal_rad: np.ndarray,
    limits: JointLimits,
    cycle_s: float,
    clearance: Clearance | None,
    *,
    straight: bool = False,
    n_checks: int = 16,
    max_rounds: int = 5,
) -> Iterator[tuple[Trajectory, bool]]:
    """Rest-to-rest plans, each slower than the last (all limits scaled), until `braking_ratio` ≤ 1 at
    `n_checks` samples: yields (plan, accepted) once per round (~1 ms each), so that a control loop
    can spread the rounds over cycles. The last round's plan is accepted whatever it shows: the
    supervisor has the last word. PlanningError if the path itself leaves the workspace or enters
    a keep-out zone."""
    zeros = np.zeros(arm.N_JOINTS)
    for round_ in range(max_rounds):
        traj = plan_joint_trajectory(q0_rad, zeros, zeros, q_goal_rad, limits, cycle_s, straight=straight)
        if clearance is None or round_ == max_rounds - 1:
            yield traj, True
            return
        ratio = 0.0
        for k in np.linspace(0, max(traj.n_samples - 1, 0), n_checks).round().astype(int):
            ratio = max(ratio, braking_ratio(*traj.sample(int(k)), clearance))
        if math.isinf(ratio):
            raise PlanningError("the path leaves the workspace or enters a keep-out zone (with its margin)")
        yield traj, ratio <= 1.0
        if ratio <= 1.0:
            return
        limits = limits.scaled(max(0.25, 0.95 / math.sqrt(ratio)))  # braking reach grows ~ speed²


def plan_within_clearance(
    q0_rad: np.ndarray,
    q_goal_rad: np.ndarray,
    limits: JointLimits,
    cycle_s: float,
    clearance: Clearance | None,
    *,
    straight: bool = False,
) -> Trajectory:
    """`clearance_rounds` run to the end at once: the accepted plan."""
    for traj, accepted in clearance_rounds(q0_rad, q_goal_rad, limits, cycle_s, clearance, straight=straight):
        if accepted:
            return traj
    raise AssertionError("clearance_rounds ends with an accepted plan")  # pragma: no cover


def line_waypoints(
    q0_rad: np.ndarray,
    T_end: np.ndarray,
    fractions: list[float],
    *,
    q_min_rad: np.ndarray | None = None,
    q_max_rad: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Joint positions at `fractions` (increasing, in (0, 1]) of the straight tool line from FK(q0) to
    `T_end` (4, 4), the orientation of `T_end` held; each IK is seeded from the last, so the arm stays
    on one branch. Raises IKError if a point cannot be reached. Each # (6,)

    Between two waypoints the tool follows the joint-space segment; over 5 cm of a vertical line in
    the UR5e's working pose it strays about 1 mm from the line (4 mm over 10 cm in one go).
    """
    start_m = arm.forward(q0_rad)[-1, :3, 3]
    bounds = {} if q_min_rad is None else {"q_min_rad": q_min_rad, "q_max_rad": q_max_rad}
    waypoints, seed = [], np.asarray(q0_rad, dtype=np.float64)
    for f in fractions:
        T = T_end.copy()
        T[:3, 3] = start_m + (T_end[:3, 3] - start_m) * f
        seed = solve_ik(T, seed, **bounds)
        waypoints.append(seed)
    return waypoints
