"""`kiban robot faults`: a fault-injection campaign against the safety supervisor, judged by the
simulator's ground truth.

    summary = run_campaign(scenarios=100, seed=0, out=Path("out/faults"))   # faults.json, faults.html

Each of the 12 fault types (scenarios.FAULT_TYPES) runs `scenarios` randomized scenarios, plus as
many nominal runs (faults off; at least 100): each a fraction of a second of simulated time around
the fault, started mid-motion in a valid state (scenarios.py), run through the real supervisor into
the MuJoCo cell and judged cycle by cycle (judge.py, campaign.py). The criteria (report.summarize):
every unsafe request prevented, zero violations in the physics, detection within one cycle (the
timeout plus one for watchdog faults), nominal runs with no false stop and ≤ 0.1 % clamped cycles.
Scenarios run in a process pool (one MuJoCo cell per worker).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from kiban.progress import Progress

_WORKER: dict = {}


def _init_worker(config_path: str) -> None:
    from kiban.robot.safety_config import load_safety_config
    from kiban.robot.sim import MujocoRobot

    config = load_safety_config(config_path)
    _WORKER["config"] = config
    _WORKER["robot"] = MujocoRobot(cycle_s=config.cycle_s, seed=0)


def _run_batch(batch: list[tuple[str, int, int]]) -> list[dict]:
    from kiban.robot.faults.campaign import run_scenario
    from kiban.robot.faults.scenarios import make_scenario

    config, robot = _WORKER["config"], _WORKER["robot"]
    return [run_scenario(make_scenario(f, i, seed, config), robot, config) for f, i, seed in batch]


def run_campaign(
    *,
    scenarios: int,
    seed: int,
    out: Path,
    config_path: Path | None = None,
    nominal: int | None = None,
    workers: int | None = None,
    progress_mode: str = "quiet",
    faults: tuple[str, ...] | None = None,
) -> dict:
    """Run the campaign; write faults.json and faults.html under `out`; return the summary (its "ok"
    says whether every criterion held). `nominal` runs default to max(scenarios, 100)."""
    from kiban.errors import ConfigError
    from kiban.robot.faults.report import summarize, write_report
    from kiban.robot.faults.scenarios import FAULT_TYPES
    from kiban.robot.loop import DEFAULT_CONFIG
    from kiban.robot.safety_config import load_safety_config

    if scenarios < 1:
        raise ConfigError(f"--scenarios {scenarios}: need at least 1")
    path = Path(config_path) if config_path is not None else DEFAULT_CONFIG
    load_safety_config(path)  # a bad config fails here, before any worker starts
    types = faults or FAULT_TYPES
    unknown = [f for f in types if f not in FAULT_TYPES]
    if unknown:
        raise ConfigError(f"unknown fault type(s) {unknown} (known: {', '.join(FAULT_TYPES)})")
    n_nominal = nominal if nominal is not None else max(scenarios, 100)
    jobs = [(f, i, seed) for f in types for i in range(scenarios)] + [
        ("nominal", i, seed) for i in range(n_nominal)
    ]
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    jobs = jobs[::2] + jobs[1::2]  # mix the types, so that batches take about as long
    batches = [jobs[i : i + 8] for i in range(0, len(jobs), 8)]
    t0 = time.monotonic()
    results: list[dict] = []
    bar = Progress("faults", len(jobs), mode=progress_mode, unit="scenarios")
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(str(path),)) as pool:
        for fut in as_completed([pool.submit(_run_batch, b) for b in batches]):
            done = fut.result()
            results += done
            bar.update(len(done), violations=sum(r["n_violations"] for r in done))
    bar.close()
    results.sort(key=lambda r: (r["fault"], r["index"]))
    summary = summarize(results)
    summary = {
        "kind": "robot_faults",
        "seed": seed,
        "scenarios_per_type": scenarios,
        "config": str(path),
        "workers": workers,
        "wall_s": round(time.monotonic() - t0, 2),
        **summary,
    }
    js, page = write_report(Path(out), summary, results)
    return {**summary, "report_json": str(js), "report_html": str(page)}
