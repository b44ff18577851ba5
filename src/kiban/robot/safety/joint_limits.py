"""Joint limits on the request: the one-cycle window (jerk, acceleration, speed) and, for a position
target outside it, a jerk-limited approach that ARRIVES.

The supervisor owns the positions it sends; their finite differences over cycle_s are the speed,
acceleration and jerk it guarantees. A request whose next step fits the window on every joint passes as
it is. Otherwise each joint gets the next step of an approach plan to the target: accelerations

    a_k = a_0 + C1 s + C2 s² + C3 s³,   s = k/n,   k = 1..n

with the three coefficients fixed by arriving AT the target AT rest after n cycles (a_n = 0, v_n = 0,
q_n = target; exact in discrete time), and n the shortest length (within ~6 %) whose jerk, acceleration
and speed fit the joint's limits (closed-form extremes). Held still, the target is reached: the next
cycle tries the rest of the same plan first (n − 1: the same polynomial, so it fits again), hence
convergence in n cycles. A speed target, or a position no plan of APPROACH_MAX_CYCLES reaches, falls back
to a braking-curve speed law. Safety never rests on this: the window clip and the braking-plan check
(verify.py) hold whatever this proposes.
"""

from __future__ import annotations

import math

import numpy as np

from kiban.robot.safety.memory import SupervisorMemory
from kiban.robot.safety_config import N_JOINTS, CompiledSafety

APPROACH_MAX_CYCLES = 8192
"""The longest approach plan searched (16 s at 500 Hz)."""
_FIT = 1.0 - 1e-9  # plans are chosen this much inside the window, so the rest of one fits again
_ARRIVED_RAD = 1e-10  # a plan step this close to the request is the request (the window is ~3e-7 rad)
_NAMES = ("jerk", "acceleration", "velocity")


def limit_request(
    position: bool, target: np.ndarray, v_des: np.ndarray, memory: SupervisorMemory, comp: CompiledSafety
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], tuple[int, ...] | None]:
    """(q_new, v_new, a_new, reasons, approach): the next step toward the request within the window.
    `target`: the requested position; `v_des`: the speed it needs; `position`: a POSITION command.
    `approach`: cycles left per joint of the approach plans followed (None: none)."""
    dt = comp.dt_s
    q, v, a = memory.last_q_rad, memory.last_qd_rad_s, memory.last_qdd_rad_s2
    a_des = (v_des - v) / dt  # (6,) what the request needs
    J, A, V = comp.jerk_step_py, comp.acc_py, comp.vel_py
    vl, al, adl = v.tolist(), a.tolist(), a_des.tolist()
    tl, ql = target.tolist(), q.tolist()
    hints = memory.approach if position and memory.approach is not None else (0,) * N_JOINTS
    r1, r2, r3 = memory.requests if memory.requests is not None else (tl, tl, tl)
    lo, hi = [0.0] * N_JOINTS, [0.0] * N_JOINTS
    inside = True
    for j in range(N_JOINTS):  # the one-cycle window: jerk, acceleration, velocity
        vj, aj = vl[j], al[j]
        lo[j] = max(aj - J[j], -A[j], (-V[j] - vj) / dt)
        hi[j] = min(aj + J[j], A[j], (V[j] - vj) / dt)
        inside = inside and lo[j] <= adl[j] <= hi[j] and not hints[j]
    if inside:
        return target, v_des, a_des, [], None
    reasons: list[str] = []
    a_new = adl.copy()
    speed_law = _speed_law(position, target, v_des, q, v, J, A, dt)
    ns = [0] * N_JOINTS
    for j in range(N_JOINTS):
        in_window = lo[j] <= adl[j] <= hi[j]
        if in_window and not hints[j]:
            continue  # this joint follows the request as it is
        if position:
            # the request's own motion (finite differences of the last requests), extrapolated at
            # constant jerk: the plan arrives ON it, at its speed and acceleration
            t0, t1, t2, t3 = tl[j], r1[j], r2[j], r3[j]
            vt, at, jt = (t0 - t1) / dt, (t0 - 2 * t1 + t2) / dt**2, (t0 - 3 * t1 + 3 * t2 - t3) / dt**3
            plan = None
            if abs(vt) <= V[j] and abs(at) <= A[j] and abs(jt) * dt <= J[j]:  # else a spike: nothing joins it
                lim = (J[j] * _FIT, A[j] * _FIT, V[j] * _FIT)
                plan = approach_plan(ql[j], vl[j], al[j], tl[j], dt, *lim, hints[j] - 1, (vt, at, jt))
            if plan is not None and in_window and abs(dt * dt * (plan[1] - adl[j])) <= _ARRIVED_RAD:
                continue  # the plan's step is the request itself: arrived
            if plan is not None:
                ns[j], a_new[j] = plan
        if not ns[j]:
            a_new[j] = speed_law[j]
        a_new[j] = min(max(a_new[j], lo[j]), hi[j])
        reasons.append(_limit_name(adl[j], lo[j], hi[j], j, vl[j], al[j], J, A, V, dt))
    a_arr = np.array(a_new)
    v_new = v + a_arr * dt
    return q + v_new * dt, v_new, a_arr, reasons, tuple(ns) if any(ns) else None


def _limit_name(x: float, lo: float, hi: float, j: int, v: float, a: float, J, A, V, dt: float) -> str:  # noqa: ANN001
    """The limit that holds joint j back: the tightest bound on the side the request crossed (a request
    inside the window that is held back by its approach plan: the jerk limit, which forbids a halt there)."""
    if x > hi:
        bounds = (a + J[j], A[j], (V[j] - v) / dt)
        return f"joint_{_NAMES[min(range(3), key=lambda i: bounds[i])]}_limit:j{j + 1}"
    if x < lo:
        bounds = (a - J[j], -A[j], (-V[j] - v) / dt)
        return f"joint_{_NAMES[max(range(3), key=lambda i: bounds[i])]}_limit:j{j + 1}"
    return f"joint_jerk_limit:j{j + 1}"


def _speed_law(
    position: bool,
    target: np.ndarray,
    v_des: np.ndarray,
    q: np.ndarray,
    v: np.ndarray,
    jerk_step: tuple[float, ...],
    acc: tuple[float, ...],
    dt: float,
) -> list[float]:
    """Reach the wanted speed with the acceleration ramping to zero (|a| = sqrt(2 J |err|)); a far position
    target is approached on its braking curve, not at full tilt."""
    jerk, amax = np.array(jerk_step) / dt, np.array(acc)
    if position:
        delta = target - q
        v_des = np.sign(delta) * np.minimum(np.abs(delta) / dt, np.sqrt(amax * np.abs(delta)))
    err = v_des - v
    a_goal = np.sign(err) * np.minimum(np.sqrt(2 * jerk * np.abs(err)), amax)
    return np.where(np.abs(err) < np.abs(a_goal) * dt, err / dt, a_goal).tolist()


def approach_plan(
    q0: float,
    v0: float,
    a0: float,
    target: float,
    dt: float,
    jerk_step: float,
    acc: float,
    vel: float,
    hint: int,
    motion: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> tuple[int, float] | None:
    """(n, first acceleration) of the shortest approach plan (within ~6 %) that fits, trying `hint` first;
    None if none of up to APPROACH_MAX_CYCLES does. jerk_step: the most |a| may change in one cycle;
    motion: the request's own (speed, acceleration, jerk); zeros for a target held still.

    >>> n, a1 = approach_plan(0.0, 0.0, 0.0, 1e-3, 0.002, 0.08, 4.0, 3.14, 0)
    >>> 3 <= n <= 80 and 0 < a1 <= 0.08
    True
    """
    args = (q0, v0, a0, target, dt, jerk_step, acc, vel, *motion)
    if hint >= 3 and (a1 := _fits(hint, *args)) is not None:
        return hint, a1
    lo, n = 2, 3  # lo: the longest length known not to fit
    while (a1 := _fits(n, *args)) is None:
        if n >= APPROACH_MAX_CYCLES:
            return None
        lo, n = n, min(2 * n, APPROACH_MAX_CYCLES)
    while n - lo > max(1, n // 16):  # bisect back toward the shortest
        mid = (lo + n) // 2
        if (a_mid := _fits(mid, *args)) is None:
            lo = mid
        else:
            n, a1 = mid, a_mid
    return n, a1


def _fits(
    n: int,
    q0: float,
    v0: float,
    a0: float,
    target: float,
    dt: float,
    jerk_step: float,
    acc: float,
    vel: float,
    vt: float,
    at: float,
    jt: float,
) -> float | None:
    """The plan of length n: its first acceleration if its jerk, acceleration and speed fit, else None.
    It ends ON the request's extrapolation at constant jerk jt (T is the position asked for step 1):
    a_n = at + (n−1) dt jt,  v_n = vt + (n−1) dt at + (n−1)n/2 dt² jt,
    q_n = T + (n−1) dt vt + (n−1)n/2 dt² at + (n−1)n(n+1)/6 dt³ jt."""
    # sums over k = 1..n of k^p (P1..P4), then the three end conditions on position, speed, acceleration
    p1 = n * (n + 1) / 2
    p2 = n * (n + 1) * (2 * n + 1) / 6
    p3 = p1 * p1
    p4 = n * (n + 1) * (2 * n + 1) * (3 * n * n + 3 * n - 1) / 30
    m1, m2, m3 = p1 / n, p2 / n**2, p3 / n**3  # Σ s^p
    w1, w2, w3 = (
        ((n + 1) * p1 - p2) / n,
        ((n + 1) * p2 - p3) / n**2,
        ((n + 1) * p3 - p4) / n**3,
    )  # Σ (n−k+1) s^p
    an = at + (n - 1) * dt * jt
    vn = vt + (n - 1) * dt * at + (n - 1) * n / 2 * dt * dt * jt
    qn = target + (n - 1) * dt * vt + (n - 1) * n / 2 * dt * dt * at + (n - 1) * n * (n + 1) / 6 * dt**3 * jt
    if abs(an) > acc or abs(vn) > vel:
        return None
    da = an - a0  # C1 + C2 + C3, substituted below
    r2 = (vn - v0) / dt - n * a0 - da * m1
    r3 = (qn - q0 - n * dt * v0) / (dt * dt) - a0 * p1 - da * w1
    d11, d12, d21, d22 = m2 - m1, m3 - m1, w2 - w1, w3 - w1
    det = d11 * d22 - d12 * d21
    if det == 0.0:
        return None
    c2 = (r2 * d22 - d12 * r3) / det
    c3 = (d11 * r3 - d21 * r2) / det
    c1 = da - c2 - c3

    # jerk per cycle, j_k = a_k − a_(k−1): a quadratic in k; its extremes at k = 1, n or the vertex
    def jerk_at(k: float) -> float:
        return c1 / n + c2 * (2 * k - 1) / n**2 + c3 * (3 * k * k - 3 * k + 1) / n**3

    ks = [1.0, float(n)]
    if c3 != 0.0 and 1.0 < (kv := 0.5 - c2 * n / (3 * c3)) < n:
        ks.append(kv)
    if any(abs(jerk_at(k)) > jerk_step for k in ks):
        return None

    def acc_at(s: float) -> float:  # a(s) = a0 + c1 s + c2 s² + c3 s³, s = k/n
        return a0 + s * (c1 + s * (c2 + s * c3))

    # acceleration: extremes where a'(s) = 0 inside (0, 1); the speed: where a(s) changes sign, found
    # by bisection on the pieces between those extremes, where a is monotone
    cuts = sorted(s for s in _roots(3 * c3, 2 * c2, c1) if 0.0 < s < 1.0)
    if any(abs(acc_at(s)) > acc for s in cuts):
        return None
    edges = [0.0, *cuts, 1.0]
    for s0, s1 in zip(edges[:-1], edges[1:], strict=True):
        f0, f1 = acc_at(s0), acc_at(s1)
        if f0 * f1 >= 0.0:
            continue
        for _ in range(30):
            mid = 0.5 * (s0 + s1)
            if acc_at(mid) * f0 > 0.0:
                s0 = mid
            else:
                s1 = mid
        for k in (math.floor(s0 * n), math.ceil(s1 * n)):
            if 1 <= k <= n:
                pk1, pk2 = k * (k + 1) / 2, k * (k + 1) * (2 * k + 1) / 6
                vk = v0 + dt * (k * a0 + c1 * pk1 / n + c2 * pk2 / n**2 + c3 * pk1 * pk1 / n**3)
                if abs(vk) > vel:
                    return None
    return a0 + c1 / n + c2 / n**2 + c3 / n**3


def _roots(a: float, b: float, c: float) -> tuple[float, ...]:
    """Real roots of a x² + b x + c (a linear or constant one too)."""
    if a == 0.0:
        return (-c / b,) if b != 0.0 else ()
    disc = b * b - 4 * a * c
    if disc < 0.0:
        return ()
    r = math.sqrt(disc)
    q = -0.5 * (b + math.copysign(r, b))  # the stable form
    return (q / a, c / q) if q != 0.0 else (0.0,)
