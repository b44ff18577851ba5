"""Fault types and randomized scenarios: each starts the cell mid-motion, in a valid state, on a
nominal command stream, and injects one fault at a random cycle.

    sc = make_scenario("velocity_spike", index=7, seed=0, config=config)
    sc.command(k, t_s, last_sent_q)          # what the (faulty) sender asks for at cycle k

The nominal stream is smooth and well inside every limit: joint j follows
q_j(t) = q0_j + v_j τ sin(t/τ) (τ = 0.3 s: speed ≤ |v_j|, acceleration ≤ |v_j|/τ, jerk ≤ |v_j|/τ²),
and at 20 samples over the scenario the planner's own braking estimate (motion.braking_ratio) uses at
most half the clearance: nominal motion never needs the supervisor. Start states are drawn until the
supervisor would have accepted them (safety.memory_in_motion), so every scenario starts valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kiban.robot import arm, cell
from kiban.robot.motion import Clearance, braking_ratio
from kiban.robot.safety import memory_in_motion
from kiban.robot.safety_config import SafetyConfig
from kiban.robot.types import Command, CommandKind

FAULT_TYPES = (
    "joint_limit_overrun",
    "velocity_spike",
    "acceleration_spike",
    "jerk_spike",
    "workspace_intrusion",
    "keep_out_intrusion",
    "non_finite",
    "stale_command",
    "heartbeat_loss",
    "person_intrusion",
    "estop_reset_misuse",
    "malformed_command",
)
"""Every fault the campaign injects; "nominal" runs inject none."""
WATCHDOG_FAULTS = ("stale_command", "heartbeat_loss")
"""Detected when their timeout has run out: allowed the timeout plus one cycle."""
TAU_S = 0.3
HOME = np.array(cell.HOME_Q)
SPREAD_RAD = np.array([1.2, 0.35, 0.35, 0.6, 0.6, 1.5])  # start poses around HOME: over the table
CYCLES = {"heartbeat_loss": 300, "stale_command": 300, "estop_reset_misuse": 330, "person_intrusion": 450}
"""Scenario length in cycles (default 250 = 0.5 s): long enough to brake to rest and show it stays."""
_MALFORMED = (
    "type_dict",
    "type_list5",
    "kind",
    "shape5",
    "shape61",
    "none_q",
    "gripper",
    "t_nan",
    "velocity_no_qd",
)


@dataclass
class Scenario:
    fault: str
    index: int
    seed: int
    q0: np.ndarray  # (6,) nominal stream centre
    v: np.ndarray  # (6,) nominal stream speed amplitude
    onset: int  # the first faulty cycle
    cycles: int
    params: dict = field(default_factory=dict)

    def nominal(self, t_s: float) -> np.ndarray:
        """The nominal position asked for at time t (the sender's clock). # (6,)"""
        return self.q0 + self.v * TAU_S * math.sin(t_s / TAU_S)

    def start_state(self, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q, finite-difference v, a) of the stream at t = 0, from its samples at 0, −dt, −2dt."""
        q0, q1, q2 = (self.nominal(-k * dt) for k in range(3))
        v0, v1 = (q0 - q1) / dt, (q1 - q2) / dt
        return q0, v0, (v0 - v1) / dt

    def command(self, k: int, t_s: float, dt: float, last_q: np.ndarray) -> object:
        """The command the (faulty) sender gives at cycle k: position for the end of the cycle."""
        q = self.nominal(t_s + dt)
        p, f = self.params, self.fault
        if k < self.onset:
            return Command(t_s, q_rad=q, seq=k)
        i = k - self.onset
        if f in ("velocity_spike", "acceleration_spike", "jerk_spike") and i < p["length"]:
            return Command(t_s, q_rad=q + np.asarray(p["offset"]), seq=k)
        if f in ("joint_limit_overrun", "workspace_intrusion", "keep_out_intrusion"):
            j_dir = np.asarray(p["direction"])
            start = self.nominal(self.onset * dt)
            return Command(t_s, q_rad=start + j_dir * p["speed"] * (i + 1) * dt, seq=k)
        if f == "non_finite" and i < p["length"]:
            bad = q.copy()
            bad[p["joints"]] = p["value"]
            return Command(t_s, q_rad=bad, seq=k)
        if f == "stale_command":
            if p["variant"] == "frozen":  # the sender hangs: its last command again and again
                return Command(self.onset * dt - dt, q_rad=self.nominal(self.onset * dt), seq=self.onset - 1)
            if i < p["length"]:
                return Command(t_s - p["age_s"], q_rad=q, seq=k)
        if f == "malformed_command" and i < p["length"]:
            return _malformed(p["variant"], t_s, q, k)
        return Command(t_s, q_rad=q, seq=k)


def _malformed(variant: str, t_s: float, q: np.ndarray, k: int) -> object:
    if variant == "type_dict":
        return {"t_s": t_s, "q_rad": q.tolist()}
    if variant == "type_list5":
        return q.tolist()[:5]
    if variant == "kind":
        return Command(t_s, kind="teleport", q_rad=q, seq=k)  # type: ignore[arg-type]
    if variant == "shape5":
        return Command(t_s, q_rad=q[:5], seq=k)
    if variant == "shape61":
        return Command(t_s, q_rad=q.reshape(6, 1), seq=k)
    if variant == "none_q":
        return Command(t_s, q_rad=None, seq=k)
    if variant == "gripper":
        return Command(t_s, q_rad=q, gripper=1.5, seq=k)
    if variant == "t_nan":
        return Command(math.nan, q_rad=q, seq=k)
    return Command(t_s, kind=CommandKind.VELOCITY, q_rad=q, seq=k)  # velocity_no_qd


def _nominal_ok(sc: Scenario, config: SafetyConfig, clearance: Clearance, dt: float) -> bool:
    q, v, a = sc.start_state(dt)
    if memory_in_motion(q, v, a, config, t_s=0.0) is None:
        return False
    for t in np.linspace(0.0, sc.cycles * dt, 20):
        qt = sc.nominal(t)
        vt = sc.v * math.cos(t / TAU_S)
        at = -sc.v / TAU_S * math.sin(t / TAU_S)
        if not np.all((qt > config.joints.pos_min_rad) & (qt < config.joints.pos_max_rad)):
            return False
        if braking_ratio(qt, vt, at, clearance) > 0.5:
            return False
    return True


def make_scenario(fault: str, index: int, seed: int, config: SafetyConfig) -> Scenario:
    """Scenario `index` of `fault` ("nominal" for none), reproducible from (fault, index, seed)."""
    if fault != "nominal" and fault not in FAULT_TYPES:
        raise ValueError(f"unknown fault type {fault!r} (known: {', '.join(FAULT_TYPES)})")
    rng = np.random.default_rng([seed, index, (FAULT_TYPES + ("nominal",)).index(fault)])
    dt = config.cycle_s
    clearance = Clearance.from_safety(config)
    lim = config.joints
    vmax, amax, jmax = (
        np.array(lim.vel_max_rad_s),
        np.array(lim.acc_max_rad_s2),
        np.array(lim.jerk_max_rad_s3),
    )
    cycles = CYCLES.get(fault, 250)
    while True:
        q0 = HOME + rng.uniform(-1, 1, 6) * SPREAD_RAD
        v = rng.uniform(-0.6, 0.6, 6) * (rng.random(6) < 0.7)
        lead = int(rng.integers(6))  # mid-motion: at least one joint at 0.2 rad/s or more
        v[lead] = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6)
        params: dict = {}
        if (
            fault == "joint_limit_overrun"
        ):  # a wrist or base joint 0.1..0.6 rad from its limit, pose unchanged
            j = int(rng.choice([0, 3, 4, 5]))
            side = int(rng.choice([-1, 1]))
            lim_j = lim.pos_max_rad[j] if side > 0 else lim.pos_min_rad[j]
            q0[j] = lim_j - side * rng.uniform(0.1, 0.6)
            v[j] = 0.0
            direction = np.zeros(6)
            direction[j] = side
            params = {"joint": j + 1, "direction": direction.tolist(), "speed": float(rng.uniform(0.3, 1.2))}
        sc = Scenario(fault, index, seed, q0, v, int(rng.integers(5, 30)), cycles, params)
        if _nominal_ok(sc, config, clearance, dt):
            break
    sc.params.update(_fault_params(sc, rng, config, vmax, amax, jmax))
    return sc


def _fault_params(
    sc: Scenario,
    rng: np.random.Generator,
    config: SafetyConfig,
    vmax: np.ndarray,
    amax: np.ndarray,
    jmax: np.ndarray,
) -> dict:
    dt, f = config.cycle_s, sc.fault
    joints = rng.choice(6, size=int(rng.integers(1, 4)), replace=False)
    sign = rng.choice([-1.0, 1.0], size=6)
    if f in ("velocity_spike", "acceleration_spike", "jerk_spike"):
        gain = rng.uniform(1.5, 10.0)
        unit = {
            "velocity_spike": vmax * dt,
            "acceleration_spike": amax * dt * dt,
            "jerk_spike": jmax * dt**3,
        }[f]
        offset = np.zeros(6)
        offset[joints] = (sign * gain * unit)[joints]
        return {"offset": offset.tolist(), "length": int(rng.integers(1, 6)), "gain": float(gain)}
    if f in ("workspace_intrusion", "keep_out_intrusion"):
        return _intrusion(sc, rng, config)
    if f == "non_finite":
        return {"joints": joints.tolist(), "value": float(rng.choice([math.nan, math.inf, -math.inf])),
                "length": int(rng.integers(1, 11))}  # fmt: skip
    if f == "stale_command":
        variant = "frozen" if sc.index % 2 else "old"
        age = float(rng.uniform(1.05, 10.0) * config.command_timeout_s)
        return {"variant": variant, "age_s": age, "length": int(rng.integers(1, 21))}
    if f == "malformed_command":
        return {"variant": _MALFORMED[sc.index % len(_MALFORMED)], "length": int(rng.integers(1, 11))}
    if f == "person_intrusion":  # toward the table side nearest the tool, stopping at its edge
        tool = arm.tool_position(sc.nominal(sc.onset * dt))[:2]
        (x0, x1), (y0, y1), _ = cell.TABLE_M
        gap = cell.PERSON_RADIUS_M + float(rng.uniform(0.0, 0.1))
        sides = {  # (distance from the tool to the side, end point, outward direction)
            "x-": (tool[0] - x0, (x0 - gap, tool[1]), (-1.0, 0.0)),
            "x+": (x1 - tool[0], (x1 + gap, tool[1]), (1.0, 0.0)),
            "y-": (tool[1] - y0, (tool[0], y0 - gap), (0.0, -1.0)),
            "y+": (y1 - tool[1], (tool[0], y1 + gap), (0.0, 1.0)),
        }
        _, end, out = min(sides.values())
        lateral = float(rng.uniform(-0.8, 0.8))
        start = (end[0] + 1.6 * out[0] + lateral * out[1], end[1] + 1.6 * out[1] + lateral * out[0])
        return {
            "path_m": [start, tuple(float(x) for x in end)],
            "speed_m_s": config.separation.human_speed_m_s,
        }
    if f == "estop_reset_misuse":
        return {"misuse": ["no_operator", "while_moving", "person_near", "heartbeat_lost"]}
    return {}


def _intrusion(sc: Scenario, rng: np.random.Generator, config: SafetyConfig) -> dict:
    """A straight joint-space ramp from the stream's position at onset toward a pose that breaks the
    workspace (a link under the table or past a wall) or puts a link in a keep-out zone."""
    dt = config.cycle_s
    start = sc.nominal(sc.onset * dt)
    c = config.compiled
    for _ in range(2000):
        step = rng.normal(size=6) * np.array([1.5, 0.8, 0.8, 0.8, 0.8, 0.1])
        goal = start + step
        pts = arm.link_points(goal)[1:]
        if sc.fault == "workspace_intrusion":
            hit = np.any((pts < c.workspace_min_m) | (pts > c.workspace_max_m))
        else:
            s = pts[:-1, None, :] + np.linspace(0, 1, 9)[None, :, None] * (pts[1:] - pts[:-1])[:, None, :]
            hit = any(
                np.any(np.all((s >= lo) & (s <= hi), axis=-1))
                for lo, hi in zip(c.zone_min_m, c.zone_max_m, strict=True)
            )
        if hit:
            direction = step / np.abs(step).max()
            return {
                "direction": direction.tolist(),
                "speed": float(rng.uniform(0.3, 1.2)),
                "goal": goal.tolist(),
            }
    raise AssertionError(f"no {sc.fault} goal found for scenario {sc.index}")  # pragma: no cover
