"""Run the scenarios in the MuJoCo cell behind the real supervisor and judge each one.

    result = run_scenario(make_scenario("jerk_spike", 3, seed, config), robot, config)

One cycle, as the control loop (loop.py) does it: observe → (faulty) command → heartbeat → supervise →
send → step → ground truth. Besides what judge.py checks every cycle, per fault:

- detection latency: cycles from the first unsafe request (watchdog faults: from the fault's onset)
  to the first cycle the supervisor did not pass unchanged; allowed 1 (the timeout plus 1 for
  watchdog faults);
- heartbeat loss, a person within S_p, a latched e-stop: once the supervisor has had its braking time
  (motion.braking_time_s of the measured speed and acceleration when it reacted), the physics shows the
  arm at rest and it stays there (until a valid reset, for the e-stop);
- a person: the robot never touches them while it moves;
- e-stop misuse: every invalid reset (no operator, while moving, a person within S_p, the heartbeat
  lost) is refused; the valid one is accepted.

Contact with the cell's furniture (table, bins, fixture) is reported per scenario as
`fixture_contacts`, not judged: those objects are not declared zones of the safety configuration
(the tool must enter the bins), so the supervisor does not know them, as a robot's safety controller
does not know an undeclared fixture. A joint acceleration measured while such a contact lasts, or in
the `CONTACT_SETTLE_CYCLES` after it, is the impact's (the servo rings after it), so it is counted
with the contact instead of as a violation of the acceleration limit. Nominal runs must have none.
"""

from __future__ import annotations

import math

import numpy as np

from kiban.robot import cell
from kiban.robot.faults.judge import (
    REST_RAD_S,
    kinematic_violations,
    requested_position,
    truth_violations,
    unsafe_request,
)
from kiban.robot.faults.scenarios import WATCHDOG_FAULTS, Scenario
from kiban.robot.motion import braking_time_s
from kiban.robot.safety import ResetRefused, estop, heartbeat, memory_in_motion, reset, supervise
from kiban.robot.safety_config import SafetyConfig
from kiban.robot.types import Status

_STOPS = (Status.PROTECTIVE_STOP, Status.ESTOP, Status.REFUSED)
FIXTURES = frozenset({"table", "bin_a", "bin_b", "fixture"})
"""Bodies of the cell (cell.py) that are not safety zones; contact with them is reported, not judged."""
CONTACT_SETTLE_CYCLES = 50
"""0.1 s at 500 Hz: how long after an impact its acceleration is attributed to it."""


def run_scenario(sc: Scenario, robot: object, config: SafetyConfig) -> dict:
    """Run one scenario on `robot` (a MujocoRobot, reused: reset here) and judge it."""
    dt = config.cycle_s
    c = config.compiled
    robot.reset(0)
    robot.set_person(cell.PERSON_PATH_M[0])
    q, v, a = sc.start_state(dt)
    robot.place_arm(q, v)
    memory = memory_in_motion(q, v, a, config, t_s=0.0)
    sent = [sc.nominal(-2 * dt), sc.nominal(-dt), q]  # the last three positions sent, oldest first
    statuses: dict[str, int] = {}
    unsafe = prevented = 0
    first_unsafe = sc.onset if sc.fault in WATCHDOG_FAULTS else None
    first_stop = None
    violations: list[str] = []
    sent_bad: list[str] = []
    misuse_refused: list[str] = []
    reset_at = None
    rest_required_from = None  # cycle from which the physics must show the arm at rest
    rest_until = math.inf
    person_d = math.inf
    sp_rest = c.sp_constant_m
    slack = config.separation.position_uncertainty_human_m + config.separation.position_uncertainty_robot_m
    peaks = {"qd": 0.0, "qdd": 0.0}
    hb_t = 0.0
    truth = None
    fixture_contacts: list[str] = []
    last_contact = -math.inf
    for k in range(sc.cycles):
        state = robot.observe()
        t = state.t_s
        if sc.fault == "person_intrusion" and k == sc.onset:
            robot.person_walk(sc.params["path_m"], sc.params["speed_m_s"])
        if not (sc.fault == "heartbeat_loss" and k >= sc.onset):
            memory = heartbeat(memory, t)
            hb_t = t
        if sc.fault == "estop_reset_misuse":
            memory, reset_at = _estop_events(
                sc, k, memory, state, robot, config, t, truth, misuse_refused, reset_at
            )
        context = []
        if memory.estop_latched:
            context.append("estop_latched")
        if t - hb_t > config.heartbeat_timeout_s:
            context.append("heartbeat_lost")
        if person_d < sp_rest - slack:
            context.append("person_within_s_p")
        command = sc.command(k, t, dt, memory.last_q_rad)
        why = unsafe_request(command, t, sent, config, context)
        verdict, memory = supervise(command, state, config, memory, now_s=t)
        out = verdict.command_sent
        statuses[str(verdict.status)] = statuses.get(str(verdict.status), 0) + 1
        if k >= sc.onset and first_stop is None and verdict.status is not Status.OK:
            first_stop = k
        if why:
            unsafe += 1
            first_unsafe = k if first_unsafe is None else first_unsafe
            asked = requested_position(command, sent[-1], dt)
            passed = verdict.status is Status.OK and asked is not None and np.array_equal(out.q_rad, asked)
            prevented += not passed
            if passed:
                violations.append(f"cycle {k}: unsafe request passed: {','.join(why)}")
        for r in kinematic_violations(out.q_rad, sent, config):
            sent_bad.append(f"cycle {k}: sent {r}")
        sent = [sent[1], sent[2], out.q_rad]
        robot.send(out)
        robot.step(1)
        truth = robot.ground_truth()
        peaks["qd"] = max(peaks["qd"], float(np.max(truth.qd_peak_rad_s / c.vel_max_rad_s)))
        peaks["qdd"] = max(peaks["qdd"], float(np.max(truth.qdd_peak_rad_s2 / c.acc_max_rad_s2)))
        hits = sorted({f"{r}-{o}" for r, o in truth.contacts if o in FIXTURES})
        if hits:
            fixture_contacts.append(f"cycle {k}: {','.join(hits)}")
            last_contact = k
        found = truth_violations(truth, config)
        if k - last_contact <= CONTACT_SETTLE_CYCLES and "joint_acceleration" in found:
            found.remove("joint_acceleration")  # the impact's, reported with the contact
        violations += [f"cycle {k}: {r}" for r in found]
        moving = bool(np.any(np.abs(truth.qd_rad_s) > REST_RAD_S))
        # must the arm be stopped now? (heartbeat lost, person within S_p, e-stop latched)
        stop_cause = (
            memory.estop_latched
            or (sc.fault == "heartbeat_loss" and t - hb_t > config.heartbeat_timeout_s)
            or person_d < sp_rest - slack
        )
        if stop_cause and rest_required_from is None:
            acc = np.array(config.joints.acc_max_rad_s2)
            jerk = np.array(config.joints.jerk_max_rad_s3)
            t_b = braking_time_s(truth.qd_rad_s, truth.qdd_rad_s2, acc, jerk)
            rest_required_from = k + math.ceil((t_b + config.separation.reaction_time_s) / dt) + 2
        if not stop_cause and rest_required_from is not None and sc.fault != "heartbeat_loss":
            rest_until = k  # cause gone (a valid reset, the person left)
        if rest_required_from is not None and rest_required_from <= k < rest_until and moving:
            violations.append(f"cycle {k}: moving_while_stopped:{np.abs(truth.qd_rad_s).max():.4f}rad/s")
        if sc.fault == "person_intrusion":
            person_d = truth.person_distance_m
            if person_d <= 0.0 and moving:
                violations.append(f"cycle {k}: person_contact_while_moving")
    if sc.fault == "estop_reset_misuse":
        expected = set(sc.params["misuse"])
        missing = expected - set(misuse_refused)
        violations += [f"reset_misuse_accepted_or_untried:{m}" for m in sorted(missing)]
        if reset_at is None:
            violations.append("valid_reset_refused")
    latency = None if first_unsafe is None or first_stop is None else max(0, first_stop - first_unsafe)
    bound = math.ceil(config.heartbeat_timeout_s / dt) + 1 if sc.fault == "heartbeat_loss" else 1
    if sc.fault == "stale_command":
        bound = math.ceil(config.command_timeout_s / dt) + 1
    return {
        "fault": sc.fault,
        "index": sc.index,
        "cycles": sc.cycles,
        "onset": sc.onset,
        "unsafe_requests": unsafe,
        "prevented": prevented,
        "latency_cycles": latency,
        "latency_bound_cycles": bound,
        "violations": violations[:20],
        "n_violations": len(violations),
        "sent_violations": sent_bad[:20],
        "n_sent_violations": len(sent_bad),
        "statuses": statuses,
        "fixture_contacts": fixture_contacts[:10],
        "n_fixture_contacts": len(fixture_contacts),
        "peak_speed_fraction": peaks["qd"],
        "peak_acc_fraction": peaks["qdd"],
        "params": {k: v for k, v in sc.params.items() if k in ("variant", "joint", "gain", "length")},
    }


def _estop_events(sc, k, memory, state, robot, config, t, truth, refused, reset_at):  # noqa: ANN001, ANN202, PLR0913
    """Latch at onset; then try each invalid reset (it must be refused), then the valid one at rest."""
    if k == sc.onset:
        return estop(memory, "operator_pressed"), reset_at
    if k < sc.onset or reset_at is not None or truth is None:
        return memory, reset_at
    at_rest = not np.any(memory.last_qd_rad_s) and np.all(np.abs(truth.qd_rad_s) <= 0.005)
    i = k - sc.onset

    def attempt(kind: str, operator: str, st: object, now: float) -> None:
        try:
            reset(memory, st, config, operator=operator, now_s=now)
        except ResetRefused:
            refused.append(kind)

    if i == 1:
        attempt("no_operator", "", state, t)
    elif i == 2 and not at_rest:
        attempt("while_moving", "operator-1", state, t)
    elif at_rest and "person_near" not in refused:
        robot.set_person((-0.85, 0.0))  # at the table's edge: within S_p of the arm
        attempt("person_near", "operator-1", robot.observe(), t)
        robot.set_person(cell.PERSON_PATH_M[0])
    elif at_rest and "heartbeat_lost" not in refused:
        attempt("heartbeat_lost", "operator-1", state, t + 2 * config.heartbeat_timeout_s)
    elif at_rest and len(refused) >= 4:
        try:
            return reset(memory, state, config, operator="operator-1", now_s=t), k
        except ResetRefused:
            return memory, None
    return memory, reset_at
