"""The safety supervisor: one pure function decides, every control cycle, what reaches the robot.

    memory = initial_memory(robot.observe())
    loop:   memory = heartbeat(memory, now_s)                     # from whoever must prove liveness
            verdict, memory = supervise(command, state, config, memory, now_s=now_s)
            robot.send(verdict.command_sent)                       # only this, always a POSITION command

THIS IS A PROTECTIVE LAYER IN FRONT OF THE ROBOT'S OWN CERTIFIED SAFETY CONTROLLER AND ITS HARD-WIRED
EMERGENCY STOP, NOT A SUBSTITUTE FOR EITHER. The arm's safety functions (ISO 10218-1 / -2 safety-rated
monitored stops, speed and position limits, the ISO 13850 e-stop circuit) stay configured and in charge;
this code keeps a policy, a skill or a language model from ever asking them to intervene.

Flow of one cycle (first match decides the status; every intervention returns named reasons):

    e-stop latched ──────────────────────────────▶ ESTOP            "estop_latched:<why>"
    bad clock/state, heartbeat lost, stale state,
    tracking error, person within S_p ───────────▶ PROTECTIVE_STOP  "heartbeat_lost:0.120s", "separation:0.93m<1.21m"
    wrong type/kind/shape, NaN/Inf, gripper ∉ [0,1],
    stale or future command ─────────────────────▶ REFUSED          "non_finite:q_rad", "stale_command:0.012s"
    otherwise follow the request, limited ───────▶ OK | CLAMPED | SLOWED (person within S_p + margin)

What "limited" means. The supervisor owns the sequence of positions it sends; their finite differences
(over cycle_s) are the velocity, acceleration and jerk it guarantees. It keeps, with every command it
accepts, a BRAKING PLAN from that state to rest: a cubic-velocity (discrete Hermite) profile, the same
shape on every joint, v_k = φ_k·v + dt·ψ_k·a, that respects the acceleration and jerk limits. A request
is accepted (clipped to the one-cycle velocity/acceleration/jerk window) only if, from where it leads,
braking along its plan would keep every limit: joint positions, speeds, acceleration and jerk; the tool
speed cap; the workspace and the keep-out zones for every link segment, checked over the whole joint-space
box the plan sweeps with rigorous first- and second-order bounds on how far each link point moves. If
the request fails, it is blended toward the braking step (½, ⅕); if that fails too, or any stop or
refusal applies, the next step of the verified plan is sent. So every stop is an ISO 10218 / IEC 60204-1
stop category 2 (controlled braking, then holding position, drives powered); the latched e-stop brakes
the same way (category 1 behaviour: on hardware the robot's own e-stop circuit removes power). Holding
position at once would itself break the acceleration limit of a moving arm.

The guarantee, by induction over cycles from a robot at rest in a valid configuration: every command
sent has finite positions within the joint limits, finite-difference velocity, acceleration and jerk
within their limits, every link point inside the workspace and every link segment at least the margin
away from every keep-out zone, and tool speed within the cap in force when its braking plan was accepted.
When the cap drops (a person comes near) the arm brakes until it is under it; when a person is within
S_p the arm brakes to rest within its plan's length and stays there. tests/unit/robot/test_safety_properties.py
checks exactly this on 10,000 generated cases.

Cost: ~45 µs per nominal cycle (p50, one CPU core; FK in plain floats, 6-vectors as lists): see
the lead's loop timing. `memory_in_motion` starts the supervisor on a moving arm (tests use it).

Standards: ISO 10218-1:2011 (§5.4 stops, §5.6 reduced speed ≤ 250 mm/s), ISO 10218-2:2011, ISO/TS
15066:2016 §5.5.4 (speed and separation monitoring), ISO 13850:2015 (e-stop: latched, reset only by a
deliberate act), ISO 13855:2010 (approach speed, intrusion distance), IEC 60204-1 §9.2.2 (stop categories).
Nothing here imports a simulator, a policy or a driver.

The package, one idea per module (supervise.py composes them):

    memory.py        what carries from cycle to cycle; heartbeat()
    plan.py          the braking plan (cubic-velocity profile to rest) and its table
    joint_limits.py  the one-cycle jerk / acceleration / speed window; the approach to a clamped target
    zones.py         link points (fast DH), the workspace, the keep-out zones
    verify.py        can the arm brake from a candidate state keeping every limit?
    separation.py    ISO/TS 15066 speed and separation monitoring
    watchdog.py      clock, state, heartbeat, stale observation, tracking error
    commands.py      malformed, NaN/Inf, out-of-range gripper, stale or future commands
    estop.py         the latched e-stop and its reset
"""

from kiban.robot.safety.estop import STANDSTILL_RAD_S, ResetRefused, estop, reset
from kiban.robot.safety.memory import SupervisorMemory, heartbeat, initial_memory
from kiban.robot.safety.separation import protective_separation_m
from kiban.robot.safety.supervise import InterventionLog, memory_in_motion, supervise
from kiban.robot.safety.zones import POINT_NAMES

__all__ = [
    "POINT_NAMES",
    "STANDSTILL_RAD_S",
    "InterventionLog",
    "ResetRefused",
    "SupervisorMemory",
    "estop",
    "heartbeat",
    "initial_memory",
    "memory_in_motion",
    "protective_separation_m",
    "reset",
    "supervise",
]
