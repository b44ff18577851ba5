"""The check of a candidate state (q, v, a): can the arm brake from it keeping every limit?

Joint positions and speeds along the braking plan, the tool-speed cap, the workspace and the keep-out
zones over the whole joint-space box the plan sweeps. Every bound is an upper bound: first- and
second-order bounds on how far each link point moves, with levers measured from each joint's AXIS.
"""

from __future__ import annotations

import math

import numpy as np

from kiban.robot.safety.memory import SupervisorMemory
from kiban.robot.safety.plan import plan_grid, plan_index
from kiban.robot.safety.zones import forward_points, zone_reasons
from kiban.robot.safety_config import N_JOINTS, CompiledSafety


def check_candidate(
    q: np.ndarray, v: np.ndarray, a: np.ndarray, memory: SupervisorMemory, comp: CompiledSafety, cap: float
) -> tuple[int, list[str], list | None]:
    """(plan index or -1, reasons, link points at q). Every bound is an upper bound (see module doc)."""
    vl, al, ql = v.tolist(), a.tolist(), q.tolist()
    gi = plan_index(vl, al, comp, memory.plan_index)
    if gi < 0:
        return -1, ["brake_infeasible"], None
    p = plan_grid()[1][gi]
    dt = comp.dt_s
    fa, fv, fd = dt * p.psi_max, dt * p.phi_sum, dt * dt * p.psi_sum
    h, speed_bad, pos_bad = [], [], []
    for j in range(N_JOINTS):
        vj, aj = vl[j], al[j]
        av, aa = abs(vj), abs(aj) * fa  # |v_k| ≤ φ_k|v| + dt ψ_k|a| with φ ∈ [0, 1], ψ ≥ 0
        if (av + aa if vj * aj > 0 else max(av, aa)) > comp.vel_py[j]:
            speed_bad.append(f"joint_velocity_limit:j{j + 1}")
        dv, da = vj * fv, aj * fd  # braking displacement: both parts are monotone in k
        lo = min(dv, 0.0) + min(da, 0.0)
        hi = max(dv, 0.0) + max(da, 0.0)
        if ql[j] + lo < comp.pos_min_py[j] or ql[j] + hi > comp.pos_max_py[j]:
            pos_bad.append(f"joint_position_limit:j{j + 1}")
        h.append(max(-lo, hi))
    if speed_bad or pos_bad:
        return -1, speed_bad + pos_bad, None
    pts, axes = forward_points(ql, comp)
    t0, t1, t2 = pts[7]
    o0, o1, o2 = memory.points_m[7].tolist()
    chord = math.sqrt((t0 - o0) ** 2 + (t1 - o1) ** 2 + (t2 - o2) ** 2) / dt
    if chord > cap:
        return -1, [f"tool_speed:{chord:.3f}m/s>{cap:.3f}m/s"], None
    if any(h):
        # Tool velocity at q for joint velocity w: J w, with column j = z_j × (p_tool − o_j). Along the plan
        # |J(q_k) w| ≤ |J(q) w| + |w|ᵀ M D_k (M: curvature bound, D_k: path length so far), so with
        # v_k = φ_k v + dt ψ_k a:  speed_k ≤ |Jv| + dt·k1·vMv + dt|Ja|ψ_max + dt²(k2+k3)·vMa + dt³·k4·aMa.
        u0 = u1 = u2 = w0 = w1 = w2 = 0.0
        for j in range(N_JOINTS):
            (c0, c1, c2), (r0, r1, r2) = axes[j], pts[j]
            r0, r1, r2 = t0 - r0, t1 - r1, t2 - r2
            x, y, z = c1 * r2 - c2 * r1, c2 * r0 - c0 * r2, c0 * r1 - c1 * r0
            u0, u1, u2 = u0 + x * vl[j], u1 + y * vl[j], u2 + z * vl[j]
            w0, w1, w2 = w0 + x * al[j], w1 + y * al[j], w2 + z * al[j]
        X = np.abs(np.stack((v, a)))  # (2, 6)
        (s_vv, s_va), (_, s_aa) = (X @ comp.curvature_m[7] @ X.T).tolist()  # |v|ᵀM|v|, |v|ᵀM|a|, |a|ᵀM|a|
        bound = (
            math.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
            + dt * (p.k1 * s_vv + p.psi_max * math.sqrt(w0 * w0 + w1 * w1 + w2 * w2))
            + dt * dt * (p.k2 + p.k3) * s_va
            + dt**3 * p.k4 * s_aa
        )
        if bound > cap:
            return -1, [f"tool_speed:{bound:.3f}m/s>{cap:.3f}m/s"], None
    hv = np.array(h)
    why = zone_reasons(pts, (comp.reach_m @ hv).tolist(), comp)  # ρ_i = Σ_j R̂_ij h_j: cheap, loose
    if why and any(h):  # near a wall or a zone: the bound with the actual levers is tighter
        P = np.array(pts)  # (8, 3)
        D = P[:, None, :] - P[None, :N_JOINTS, :]  # (8, 6, 3) from each joint's origin
        along = D @ np.array(axes).T  # (8, 6, 6); the diagonal pairs D[i, j] with axis j
        along = along[:, np.arange(N_JOINTS), np.arange(N_JOINTS)]  # (8, 6)
        R = np.sqrt(np.maximum((D * D).sum(-1) - along * along, 0.0)) * comp.moves  # distance to each axis
        rho = np.minimum(R @ hv + 0.5 * ((comp.curvature_m @ hv) @ hv), comp.reach_m @ hv)
        why = zone_reasons(pts, rho.tolist(), comp)
    return (-1, why, None) if why else (gi, [], pts)
