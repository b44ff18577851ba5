"""The control loop: observe → policy → supervise → send, one control cycle at a time, in lockstep.

    result = run_episode(robot, policy, config, max_cycles=20_000, seed=1000)
    result.success, result.interventions, result.timing.compute_p99_us

Every cycle:  state = robot.observe();  command = policy(state);  memory = heartbeat(memory, t);
verdict, memory = supervise(command, state, config, memory, now_s=t);  robot.send(verdict.command_sent);
robot.step(1). Time is the robot's (simulated seconds in simulation), so a seeded run replays bit for
bit. What is measured: COMPUTE per cycle (policy + heartbeat + supervisor, `perf_counter_ns`, physics
excluded), against the cycle as a deadline; the wall-clock period between cycle starts, whose jitter
is reported but never gated (in lockstep simulation nothing waits for the wall clock).

After every cycle the simulator's ground truth is checked independently of the supervisor
(`ground_truth_violations`): what the physics did, not what was commanded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from kiban.errors import ConfigError
from kiban.robot.interface import Robot
from kiban.robot.safety import heartbeat, initial_memory, supervise
from kiban.robot.safety_config import SafetyConfig, load_safety_config
from kiban.robot.types import Command, RobotState, Status

VEL_TOLERANCE = 0.05
"""Measured joint speed may exceed the limit by this fraction: the servo tracks, it does not copy."""
POS_TOLERANCE_RAD = 1e-3
WORKSPACE_TOLERANCE_M = 0.005
SETTLE_S = 0.2
"""After the policy ends, hold this long (parts come to rest) before success is judged."""
DEFAULT_CONFIG = Path(__file__).resolve().parent / "default-safety.yaml"
"""The installed default (the same limits as examples/robot-safety.yaml, which is the copy to edit)."""


class Policy(Protocol):
    def __call__(self, state: RobotState) -> Command | None:
        """The command for this cycle, or None when the policy has finished."""
        ...


@dataclass(frozen=True)
class CycleTiming:
    """Per-cycle compute (policy, then heartbeat + supervisor; physics excluded) and wall-clock period, µs."""

    cycles: int
    compute_p50_us: float
    compute_p99_us: float
    compute_max_us: float
    deadline_misses: int
    """Cycles whose compute exceeded the cycle period."""
    supervisor_p50_us: float
    supervisor_p99_us: float
    policy_p50_us: float
    policy_p99_us: float
    wall_period_p50_us: float
    wall_period_p99_us: float
    wall_jitter_us: float
    """p99 − p50 of the wall-clock period between cycle starts: reported, not gated."""

    @classmethod
    def from_ns(
        cls, policy_ns: np.ndarray, supervisor_ns: np.ndarray, period_ns: np.ndarray, cycle_s: float
    ) -> CycleTiming:
        compute = (policy_ns + supervisor_ns) / 1e3  # (N,) µs

        def pct(x: np.ndarray, p: float) -> float:
            return float(np.percentile(x, p)) if len(x) else 0.0

        period = period_ns / 1e3
        return cls(
            cycles=len(compute),
            compute_p50_us=pct(compute, 50),
            compute_p99_us=pct(compute, 99),
            compute_max_us=float(compute.max()) if len(compute) else 0.0,
            deadline_misses=int(np.sum(compute > cycle_s * 1e6)),
            supervisor_p50_us=pct(supervisor_ns / 1e3, 50),
            supervisor_p99_us=pct(supervisor_ns / 1e3, 99),
            policy_p50_us=pct(policy_ns / 1e3, 50),
            policy_p99_us=pct(policy_ns / 1e3, 99),
            wall_period_p50_us=pct(period, 50),
            wall_period_p99_us=pct(period, 99),
            wall_jitter_us=pct(period, 99) - pct(period, 50),
        )


@dataclass
class EpisodeTrace:
    """What was observed and sent, cycle by cycle: the episode's data (record.py writes it)."""

    t_s: list[float] = field(default_factory=list)
    q_rad: list[np.ndarray] = field(default_factory=list)  # each (6,)
    qd_rad_s: list[np.ndarray] = field(default_factory=list)  # each (6,)
    gripper: list[float] = field(default_factory=list)
    action_q_rad: list[np.ndarray] = field(default_factory=list)  # each (6,): the command SENT
    action_gripper: list[float] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """observation.state (N, 7): q and gripper; action (N, 7): sent q and gripper; t_s (N,)."""
        n = len(self.t_s)
        state = np.column_stack([np.reshape(self.q_rad, (n, -1)), self.gripper]) if n else np.zeros((0, 7))
        action = (
            np.column_stack([np.reshape(self.action_q_rad, (n, -1)), self.action_gripper]) if n else state
        )
        return {
            "t_s": np.asarray(self.t_s),
            "state": state,
            "action": action,
            "qd_rad_s": np.reshape(self.qd_rad_s, (n, -1)),
        }


@dataclass
class EpisodeResult:
    success: bool
    cycles: int
    sim_time_s: float
    interventions: list[dict]
    """Every cycle the supervisor did not pass unchanged: {"cycle", "t_s", "status", "reasons"}."""
    intervention_counts: dict[str, int]
    """Cycles per status other than OK (e.g. {"clamped": 3})."""
    violations: list[str]
    """Ground-truth violations, "cycle 812: joint_velocity:j2:3.31rad/s" (the first 100)."""
    timing: CycleTiming
    peaks: dict[str, float]
    """Largest measured fraction of each limit over the episode (joint speed, tool speed)."""
    error: str | None = None
    """Why the policy ended early (a skill's failed condition), if it did."""
    trace: EpisodeTrace = field(default_factory=EpisodeTrace, repr=False)
    timing_ns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """Raw per-cycle "policy" and "supervisor" compute and wall "period", ns. Each # (cycles,)"""

    def summary(self) -> dict:
        """The JSON-able summary the CLI prints."""
        return {
            "success": self.success,
            "cycles": self.cycles,
            "sim_time_s": round(self.sim_time_s, 6),
            "interventions": len(self.interventions),
            "intervention_counts": self.intervention_counts,
            "violations": len(self.violations),
            "violation_examples": self.violations[:5],
            "error": self.error,
            "timing": {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self.timing).items()},
            "peaks": {k: round(v, 4) for k, v in self.peaks.items()},
        }


def ground_truth_violations(truth: object, config: SafetyConfig) -> list[str]:
    """What the physics did that the limits forbid: joint range and speed (with tracking tolerance),
    link points outside the workspace, link segments inside a keep-out zone, the robot touching the
    environment or the person. `truth` is `MujocoRobot.ground_truth()`."""
    c = config.compiled
    out = []
    q = truth.q_rad
    for j in np.flatnonzero(
        (q < c.pos_min_rad - POS_TOLERANCE_RAD) | (q > c.pos_max_rad + POS_TOLERANCE_RAD)
    ):
        out.append(f"joint_position:j{j + 1}:{q[j]:.4f}rad")
    qd = truth.qd_peak_rad_s
    for j in np.flatnonzero(qd > c.vel_max_rad_s * (1 + VEL_TOLERANCE)):
        out.append(f"joint_velocity:j{j + 1}:{qd[j]:.3f}rad/s")
    pts = truth.links_m[1:]  # (7, 3) shoulder .. tool
    tol = WORKSPACE_TOLERANCE_M
    outside = np.any((pts < c.workspace_min_m - tol) | (pts > c.workspace_max_m + tol), axis=1)
    for i in np.flatnonzero(outside):
        out.append(f"workspace:point{i + 1}:{np.round(pts[i], 3).tolist()}")
    for name, lo, hi in zip(c.zone_names, c.zone_min_m, c.zone_max_m, strict=True):
        lo, hi = lo + config.keep_out_margin_m, hi - config.keep_out_margin_m  # the zone itself, no margin
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            if _segment_in_box(a, b, lo, hi):
                out.append(f"keep_out:{name}")
                break
    for robot_body, other in truth.contacts:
        if not other.startswith("part"):
            out.append(f"contact:{robot_body}:{other}")
    if truth.person_distance_m <= 0:
        out.append(f"person_contact:{truth.person_distance_m:.3f}m")
    return out


def _segment_in_box(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int = 8) -> bool:
    """Does the segment a→b pass through the box? (Sampled: the links are short against the zones.)"""
    s = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)  # (n, 3)
    return bool(np.any(np.all((s >= lo) & (s <= hi), axis=1)))


def run_episode(
    robot: Robot,
    policy: Policy,
    config: SafetyConfig,
    *,
    rate_hz: float = 500.0,
    max_cycles: int,
    seed: int | None,
    record: Path | None = None,
    success: Callable[[], bool] | None = None,
    task: str = "episode",
    check_ground_truth: bool | None = None,
) -> EpisodeResult:
    """Reset the robot with `seed` and run until the policy returns None (then SETTLE_S of holding) or
    `max_cycles`. `success()` judges the end (default: the policy finished without error);
    a ground-truth violation or a protective stop fails the episode. `record`: write the episode
    there in the LeRobot v3 layout (record.py). `check_ground_truth` (default: when the robot has
    `ground_truth()`, i.e. in simulation) checks the physics after every cycle."""
    cycle_s = 1.0 / rate_hz
    if abs(robot.cycle_s - cycle_s) > 1e-12 or abs(config.cycle_s - cycle_s) > 1e-12:
        raise ConfigError(
            f"rate_hz={rate_hz}: the robot's cycle ({robot.cycle_s} s) and the safety config's cycle_s "
            f"({config.cycle_s} s) must both be 1/rate_hz"
        )
    if record is not None:
        from kiban.robot.record import check_target  # pyarrow only when recording

        check_target(Path(record))  # before the run, not after it
    if check_ground_truth is None:
        check_ground_truth = hasattr(robot, "ground_truth")
    state = robot.reset(seed)
    memory = initial_memory(state)
    trace = EpisodeTrace()
    interventions: list[dict] = []
    counts: dict[str, int] = {}
    violations: list[str] = []
    peak_qd, peak_tool = np.zeros(robot.n_joints), 0.0
    policy_ns = np.zeros(max_cycles, dtype=np.int64)
    supervisor_ns = np.zeros(max_cycles, dtype=np.int64)
    period_ns = np.zeros(max_cycles, dtype=np.int64)
    settle_left = round(SETTLE_S / cycle_s)
    hold: Command | None = None
    gripper_sent = state.gripper
    perf = time.perf_counter_ns
    wall_prev = perf()
    cycle = 0
    while cycle < max_cycles:
        wall = perf()
        period_ns[cycle] = wall - wall_prev
        wall_prev = wall
        state = robot.observe()
        now_s = state.t_s
        t0 = perf()
        command = policy(state) if hold is None else None
        if command is None:  # the policy has finished: hold the last position while things settle
            if settle_left == 0:
                break
            settle_left -= 1
            last = memory.last_q_rad
            hold = Command(t_s=now_s, q_rad=last, gripper=None, seq=cycle)
            command = hold
        t1 = perf()
        memory = heartbeat(memory, now_s)  # the policy is alive: it answered this cycle
        verdict, memory = supervise(command, state, config, memory, now_s=now_s)
        t2 = perf()
        policy_ns[cycle], supervisor_ns[cycle] = t1 - t0, t2 - t1
        sent = verdict.command_sent
        robot.send(sent)
        robot.step(1)
        if verdict.status is not Status.OK:
            interventions.append(
                {
                    "cycle": cycle,
                    "t_s": now_s,
                    "status": str(verdict.status),
                    "reasons": list(verdict.reasons),
                }
            )
            counts[str(verdict.status)] = counts.get(str(verdict.status), 0) + 1
        if sent.gripper is not None:
            gripper_sent = sent.gripper
        trace.t_s.append(now_s)
        trace.q_rad.append(state.q_rad)
        trace.qd_rad_s.append(state.qd_rad_s)
        trace.gripper.append(state.gripper)
        trace.action_q_rad.append(sent.q_rad)
        trace.action_gripper.append(gripper_sent)
        if check_ground_truth:
            truth = robot.ground_truth()
            np.maximum(peak_qd, truth.qd_peak_rad_s, out=peak_qd)
            peak_tool = max(peak_tool, truth.tool_speed_m_s)
            if len(violations) < 100:
                violations += [f"cycle {cycle}: {v}" for v in ground_truth_violations(truth, config)]
        cycle += 1
    error = getattr(policy, "error", None)
    finished = hold is not None or getattr(policy, "done", False)
    ok = finished and error is None and (success() if success is not None else True)
    stopped = counts.get(str(Status.PROTECTIVE_STOP), 0) + counts.get(str(Status.ESTOP), 0)
    timing = CycleTiming.from_ns(policy_ns[:cycle], supervisor_ns[:cycle], period_ns[1:cycle], cycle_s)
    result = EpisodeResult(
        success=bool(ok and not violations and not stopped),
        cycles=cycle,
        sim_time_s=robot.t_s,
        interventions=interventions,
        intervention_counts=counts,
        violations=violations,
        timing=timing,
        peaks={
            "joint_speed_fraction": float(np.max(peak_qd / config.compiled.vel_max_rad_s)),
            "tool_speed_m_s": peak_tool,
            "tool_speed_fraction": peak_tool / config.tool_speed_max_m_s,
        },
        error=None if error is None else str(error),
        trace=trace,
        timing_ns={
            "policy": policy_ns[:cycle],
            "supervisor": supervisor_ns[:cycle],
            "period": period_ns[1:cycle],
        },
    )
    if record is not None:
        from kiban.robot.record import write_episode  # pyarrow only when recording

        stats = {
            "seed": seed,
            "success": result.success,
            "interventions": len(interventions),
            "violations": len(violations),
        }
        write_episode(
            Path(record),
            result.trace,
            fps=round(rate_hz),
            task=task,
            joint_names=robot.joint_names,
            stats=stats,
        )
    return result


def sim_episode(task: str, seed: int, *, record: Path | None = None, config_path: Path | None = None) -> dict:
    """`kiban robot sim --task pick-place --seed S [--record DIR]`: one episode in the MuJoCo cell;
    returns the summary the CLI prints (success, interventions, cycle statistics)."""
    from kiban.robot.sim import MujocoRobot  # mujoco only when simulating
    from kiban.robot.tasks import TASKS

    if task not in TASKS:
        raise ConfigError(f"--task {task!r}: unknown task (known: {', '.join(sorted(TASKS))})")
    path = Path(config_path) if config_path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise ConfigError(f"{path}: no safety config (pass --config; examples/robot-safety.yaml is one)")
    config = load_safety_config(path)
    robot = MujocoRobot(cycle_s=config.cycle_s, seed=seed)
    try:
        spec = TASKS[task](robot, config)
        result = run_episode(
            robot,
            spec.policy,
            config,
            rate_hz=1.0 / config.cycle_s,
            max_cycles=spec.max_cycles,
            seed=seed,
            record=record,
            success=spec.success,
            task=spec.description,
        )
    finally:
        robot.close()
    return {"task": task, "seed": seed, **result.summary(), "record": None if record is None else str(record)}
