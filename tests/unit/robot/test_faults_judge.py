"""The fault campaign's judge and criteria: which requests are unsafe, and when the campaign fails."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kiban.robot import cell
from kiban.robot.faults.judge import unsafe_request
from kiban.robot.faults.report import summarize
from kiban.robot.faults.scenarios import FAULT_TYPES, make_scenario
from kiban.robot.safety import memory_in_motion
from kiban.robot.safety_config import load_safety_config
from kiban.robot.types import Command

CFG = load_safety_config(Path(__file__).resolve().parents[3] / "examples" / "robot-safety.yaml")
HOME = np.array(cell.HOME_Q)
REST = [HOME, HOME, HOME]


def test_unsafe_requests_are_named() -> None:
    dt, jerk = CFG.cycle_s, CFG.joints.jerk_max_rad_s3[0]
    assert unsafe_request(Command(0.0, q_rad=HOME), 0.0, REST, CFG, []) == []
    small = HOME + np.array([0.5 * jerk * dt**3, 0, 0, 0, 0, 0])
    assert unsafe_request(Command(0.0, q_rad=small), 0.0, REST, CFG, []) == []
    big = HOME + np.array([2.0 * jerk * dt**3, 0, 0, 0, 0, 0])
    assert unsafe_request(Command(0.0, q_rad=big), 0.0, REST, CFG, []) == ["joint_jerk"]
    assert unsafe_request(Command(0.0, q_rad=HOME * math.nan), 0.0, REST, CFG, []) == ["non_finite"]
    assert unsafe_request({"q_rad": HOME}, 0.0, REST, CFG, []) == ["malformed:type"]
    assert unsafe_request(Command(0.0, q_rad=HOME), 1.0, REST, CFG, []) == ["stale"]
    assert unsafe_request(Command(0.0, q_rad=small), 0.0, REST, CFG, ["estop_latched"]) == ["estop_latched"]
    assert (
        unsafe_request(Command(0.0, q_rad=HOME), 0.0, REST, CFG, ["estop_latched"]) == []
    )  # holding is fine


def test_every_scenario_starts_in_a_state_the_supervisor_accepts() -> None:
    for fault in (*FAULT_TYPES, "nominal"):
        for i in range(3):
            sc = make_scenario(fault, i, 0, CFG)
            assert memory_in_motion(*sc.start_state(CFG.cycle_s), CFG, t_s=0.0) is not None
            again = make_scenario(fault, i, 0, CFG)  # reproducible
            assert repr(again.params) == repr(sc.params) and np.array_equal(again.q0, sc.q0)


def _result(fault: str, **kw: object) -> dict:
    r = {
        "fault": fault, "index": 0, "cycles": 250, "onset": 10, "unsafe_requests": 3, "prevented": 3,
        "latency_cycles": 0, "latency_bound_cycles": 1, "violations": [], "n_violations": 0,
        "sent_violations": [], "n_sent_violations": 0, "statuses": {"ok": 240, "clamped": 10},
        "peak_speed_fraction": 0.1, "peak_acc_fraction": 0.1, "params": {},
    }  # fmt: skip
    return {**r, **kw}


def test_the_criteria_fail_on_any_lapse() -> None:
    nominal = [
        _result("nominal", unsafe_requests=0, prevented=0, latency_cycles=None, statuses={"ok": 250})
    ] * 4
    good = [_result("jerk_spike")]
    assert summarize(good + nominal)["ok"] is True
    assert summarize([_result("jerk_spike", prevented=2)] + nominal)["ok"] is False  # one got through
    assert summarize([_result("jerk_spike", latency_cycles=2)] + nominal)["ok"] is False  # late
    assert summarize([_result("jerk_spike", latency_cycles=None)] + nominal)["ok"] is False  # never detected
    assert (
        summarize([_result("jerk_spike", n_violations=1)] + nominal)["ok"] is False
    )  # the physics broke a limit
    stopped = _result(
        "nominal", unsafe_requests=0, latency_cycles=None, statuses={"ok": 249, "protective_stop": 1}
    )
    assert summarize(good + nominal + [stopped])["ok"] is False  # a false stop
    clamped = _result("nominal", unsafe_requests=0, latency_cycles=None, statuses={"ok": 248, "clamped": 2})
    assert summarize(good + nominal + [clamped])["nominal"]["clamped_fraction"] == 2 / 1250
    assert summarize(good + nominal + [clamped])["ok"] is False  # 0.16 % > 0.1 %


def test_a_nominal_run_touching_the_furniture_fails_the_campaign() -> None:
    nominal = [
        _result("nominal", unsafe_requests=0, prevented=0, latency_cycles=None, statuses={"ok": 250})
    ] * 4
    touching = _result(
        "nominal", unsafe_requests=0, latency_cycles=None, statuses={"ok": 250}, n_fixture_contacts=3
    )
    assert summarize([_result("jerk_spike")] + nominal)["ok"] is True
    assert summarize([_result("jerk_spike")] + nominal + [touching])["ok"] is False


def test_an_impact_on_a_bin_is_reported_as_contact_not_as_an_acceleration_violation() -> None:
    """Seed 12345, keep-out scenario 0: the faulty command swings the arm across the cell while the
    supervisor keeps it out of the fixture's zone, and a finger strikes bin_b (not a safety zone).
    The impact rings the servo over the acceleration limit: reported as a contact, everything else
    judged as usual (every unsafe request prevented, no violation)."""
    from kiban.robot.faults.campaign import run_scenario
    from kiban.robot.sim import MujocoRobot

    robot = MujocoRobot(cycle_s=CFG.cycle_s, seed=0)
    r = run_scenario(make_scenario("keep_out_intrusion", 0, 12345, CFG), robot, CFG)
    assert r["n_fixture_contacts"] > 0 and "bin_b" in r["fixture_contacts"][0]
    assert r["peak_acc_fraction"] > 1.25  # the impact itself, as the physics measured it
    assert r["n_violations"] == 0 and r["prevented"] == r["unsafe_requests"] > 0
