"""Cartesian limits: the arm's link points (a fast DH forward kinematics), the workspace box every
link point stays inside, and the keep-out zones no link segment may enter.

Link points are DH frame origins (base, 1..6) and the tool centre; a segment is named by its far end:
link2 is the upper arm, link3 the forearm, link4..link6 the wrist, tool the gripper.
"""

from __future__ import annotations

import math

from kiban.robot.safety_config import N_JOINTS, CompiledSafety

POINT_NAMES = ("base", "link1", "link2", "link3", "link4", "link5", "link6", "tool")


def forward_points(
    q: list[float], comp: CompiledSafety
) -> tuple[list[tuple[float, float, float]], list[tuple[float, ...]]]:
    """Link points (8: base, frames 1..6, tool) and joint axes z_0..z_5 of standard DH, in plain floats
    (5x faster than 4x4 matrices for 6 joints; equal to arm.forward to 1e-15, tested)."""
    x0, x1, x2, y0, y1, y2, z0, z1, z2 = 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0
    p0 = p1 = p2 = 0.0
    pts, axes = [(0.0, 0.0, 0.0)], []
    for i in range(N_JOINTS):
        axes.append((z0, z1, z2))
        c, s = math.cos(q[i]), math.sin(q[i])
        a0, a1, a2 = c * x0 + s * y0, c * x1 + s * y1, c * x2 + s * y2  # Rz(θ): new x
        b0, b1, b2 = c * y0 - s * x0, c * y1 - s * x1, c * y2 - s * x2  # new y
        d, a = comp.dh_d_m[i], comp.dh_a_m[i]
        p0, p1, p2 = p0 + d * z0 + a * a0, p1 + d * z1 + a * a1, p2 + d * z2 + a * a2  # Tz(d) Tx(a)
        ca, sa = comp.dh_cos_alpha[i], comp.dh_sin_alpha[i]  # Rx(α)
        x0, x1, x2 = a0, a1, a2
        y0, y1, y2, z0, z1, z2 = (
            ca * b0 + sa * z0, ca * b1 + sa * z1, ca * b2 + sa * z2, ca * z0 - sa * b0, ca * z1 - sa * b1, ca * z2 - sa * b2
        )  # fmt: skip
        pts.append((p0, p1, p2))
    t = comp.tool_offset_m
    pts.append((p0 + t * z0, p1 + t * z1, p2 + t * z2))
    return pts, axes


def zone_reasons(pts: list[tuple[float, float, float]], rho: list[float], comp: CompiledSafety) -> list[str]:
    """Workspace and keep-out reasons for any configuration whose link points are within ρ_i of `pts` (8).

    While braking within ±h of q, point i moves at most ρ_i = Σ_j R̂_ij h_j, R̂_ij bounding its distance
    from joint j's axis over every q (so it holds all along the path, no remainder), and at most
    Σ_j R_ij h_j + ½ hᵀ M_i h with R_ij that distance at q and M_i bounding the curvature (Taylor).
    Segments shoulder→…→tool grow by the larger ρ of their ends; keep-out zones are already grown by
    the margin; a slab test then decides."""
    (wx0, wy0, wz0), (wx1, wy1, wz1) = comp.workspace_py
    out = []
    for i in range(1, len(pts)):  # the base mount (point 0) is fixed
        (x, y, z), r = pts[i], rho[i]
        if x - r < wx0 or y - r < wy0 or z - r < wz0 or x + r > wx1 or y + r > wy1 or z + r > wz1:
            out.append(f"workspace:{POINT_NAMES[i]}")
    if out:
        return out
    for name, (x0, y0, z0), (x1, y1, z1) in comp.zones_py:
        for s in range(1, len(pts) - 1):
            (ax, ay, az), (bx, by, bz), r = pts[s], pts[s + 1], max(rho[s], rho[s + 1])
            if (  # bounding boxes overlap: then the exact test
                min(ax, bx) - r <= x1
                and max(ax, bx) + r >= x0
                and min(ay, by) - r <= y1
                and max(ay, by) + r >= y0
                and min(az, bz) - r <= z1
                and max(az, bz) + r >= z0
            ) and segment_hits_box(pts[s], pts[s + 1], (x0 - r, y0 - r, z0 - r), (x1 + r, y1 + r, z1 + r)):
                out.append(f"keep_out:{name}:{POINT_NAMES[s + 1]}")
    return out


def segment_hits_box(
    a: tuple[float, ...], b: tuple[float, ...], lo: tuple[float, ...], hi: tuple[float, ...]
) -> bool:
    """Slab test: does the segment a→b meet the closed box [lo, hi]?"""
    t0, t1 = 0.0, 1.0
    for k in range(3):
        d = b[k] - a[k]
        if abs(d) < 1e-15:
            if a[k] < lo[k] or a[k] > hi[k]:
                return False
            continue
        ta, tb = (lo[k] - a[k]) / d, (hi[k] - a[k]) / d
        t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        if t0 > t1:
            return False
    return True
