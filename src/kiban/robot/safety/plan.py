"""The braking plan every accepted state carries: a cubic-velocity (discrete Hermite) profile to rest.

    a_k = a + c1 k + c2 k²  (k = 0..N),  a_N = 0,  Σ a_k dt = −v   so  v_N = 0
    q_k = q_0 + dt·Φ_k·v + dt²·Ψ_k·a                              (plan_offsets, closed form)

The same shape on every joint; its length N is the shortest on a 5 % grid (plan_grid) whose jerk and
acceleration fit every joint's limits (plan_fits, plan_index).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from kiban.robot.safety_config import BRAKE_CYCLES_MAX, N_JOINTS, CompiledSafety

if TYPE_CHECKING:
    from kiban.robot.safety.memory import SupervisorMemory


@dataclass(frozen=True)
class Plan:
    n: int
    gamma: float
    beta2: float
    alpha2: float
    psi_max: float  # max_k ψ_k
    phi_sum: float  # Φ_N = Σ φ_k: displacement per unit of initial velocity, in cycles
    psi_sum: float  # Ψ_N = Σ ψ_k
    k1: float  # max_k φ_k Φ_k   (tool-speed bound terms, see _check)
    k2: float  # max_k φ_k Ψ_k
    k3: float  # max_k ψ_k Φ_k
    k4: float  # max_k ψ_k Ψ_k


@cache
def plan_grid() -> tuple[tuple[int, ...], tuple[Plan, ...]]:
    """Plan lengths 2 .. BRAKE_CYCLES_MAX, 5 % apart, with their shape constants (computed once)."""
    ns = sorted({max(2, round(2 * 1.05**i)) for i in range(400) if 2 * 1.05**i <= BRAKE_CYCLES_MAX})
    plans = []
    for n in ns:
        k = np.arange(n + 1, dtype=np.float64)
        gamma, beta2, alpha2 = 1 / n + 3 / (n + 1), 3 / (n * (n + 1)), 6 / (n**3 - n)
        phi = 1 + k * (k + 1) * (2 * k + 1 - 3 * n) / (n**3 - n)  # velocity response to v, 1 → 0
        psi = k - gamma * k * (k + 1) / 2 + beta2 * k * (k + 1) * (2 * k + 1) / 6  # response to a·dt, ≥ 0
        Phi, Psi = np.cumsum(phi) - 1, np.cumsum(psi)  # Σ_{i=1..k}
        plans.append(
            Plan(n, gamma, beta2, alpha2, float(psi.max()), float(Phi[-1]), float(Psi[-1]),
                  float(np.max(phi * Phi)), float(np.max(phi * Psi)), float(np.max(psi * Phi)), float(np.max(psi * Psi)))
        )  # fmt: skip
    return tuple(ns), tuple(plans)


def plan_offsets(p: Plan, k: int) -> tuple[float, float]:
    """(Φ_k, Ψ_k) in closed form: q_k = q_0 + dt·Φ_k·v + dt²·Ψ_k·a."""
    n = p.n
    k = min(k, n)
    s1, s2 = k * (k + 1) / 2, k * (k + 1) * (2 * k + 1) / 6
    phi_c = k + (2 * s1 * s1 + 3 * s2 + s1 - 3 * n * (s2 + s1)) / (n**3 - n)
    psi_c = s1 - p.gamma * k * (k + 1) * (k + 2) / 6 + p.beta2 * k * (k + 1) ** 2 * (k + 2) / 12
    return phi_c, psi_c


def plan_step(memory: SupervisorMemory, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The next position of the current braking plan, with its finite-difference velocity and acceleration."""
    p = plan_grid()[1][memory.plan_index]
    phi_c, psi_c = plan_offsets(p, memory.plan_k + 1)
    q = memory.plan_q0_rad + (dt * phi_c) * memory.plan_v0_rad_s + (dt * dt * psi_c) * memory.plan_a0_rad_s2
    v = (q - memory.last_q_rad) / dt
    return q, v, (v - memory.last_qd_rad_s) / dt


def plan_fits(p: Plan, vd: list[float], a: list[float], comp: CompiledSafety) -> bool:
    """Does the plan of length p.n from (v = vd·dt, a) keep jerk and acceleration within limits on every
    joint? Jerk is linear in k (extremes: first and last step); acceleration is quadratic (check its top)."""
    n, b2, al2, g = p.n, p.beta2, p.alpha2, p.gamma
    nal2, m = n * al2, 2 * n - 1
    for j in range(N_JOINTS):
        aj, vj, lim = a[j], vd[j], comp.jerk_step_py[j]
        if abs(aj) > comp.acc_py[j]:
            return False  # the start itself (the supervisor's own candidates never get here)
        c2 = b2 * aj + al2 * vj
        c1 = -g * aj - nal2 * vj
        if abs(c1 + c2) > lim or abs(c1 + m * c2) > lim:
            return False
        if c2 != 0.0 and 0.0 < -c1 / (2 * c2) < n and abs(aj - c1 * c1 / (4 * c2)) > comp.acc_py[j]:
            return False
    return True


def plan_index(v: list[float], a: list[float], comp: CompiledSafety, start: int) -> int:
    """The shortest plan near `start` (the last plan's index) that fits; -1 if none does."""
    if not (any(v) or any(a)):
        return 0
    plans = plan_grid()[1]
    dt = comp.dt_s
    vd = [x / dt for x in v]
    gi = start
    if plan_fits(plans[gi], vd, a, comp):
        while gi > 0 and plan_fits(plans[gi - 1], vd, a, comp):
            gi -= 1
        return gi
    lo, step = gi, 1  # lo fails; search upward, doubling, then bisect back
    while True:
        gi = min(lo + step, len(plans) - 1)
        if plan_fits(plans[gi], vd, a, comp):
            break
        if gi == len(plans) - 1:
            return -1
        lo, step = gi, step * 2
    while gi - lo > 1:
        mid = (lo + gi) // 2
        if plan_fits(plans[mid], vd, a, comp):
            gi = mid
        else:
            lo = mid
    return gi
