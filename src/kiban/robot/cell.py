"""The simulated work cell as MJCF, generated from published parameters: no meshes, no external assets.

    top view, +x right, +y up, metres; world = robot base frame, z up, table top z = 0, floor z = -0.75

            ▢ bin_a (-0.30, 0.45)
       ∷ parts        ● base (0, 0)           ▇ fixture
            ▢ bin_b (-0.30, -0.45)
    ◯ person walks (-2.0, -1.6) ─▶ (-0.45, -0.90)

The robot faces -x: at q = 0 the UR5e stretches along -x (Universal Robots' own base frame), and at
HOME_Q the tool hangs 0.34 m above the table over the parts, pointing down. Coordinates, for the
keep-out zones of examples/robot-safety.yaml (all in the base frame):

| thing | where |
| --- | --- |
| robot base | origin; the arm stands on the table top |
| table top | x ∈ [-0.75, 0.65], y ∈ [-0.65, 0.65], z ∈ [-0.04, 0] |
| fixture (obstacle) | box x ∈ [0.30, 0.50], y ∈ [-0.20, 0.20], z ∈ [0, 0.30] |
| bins (open boxes) | inner 0.16 × 0.16 m, walls 0.06 m high; centres bin_a (-0.30, 0.45), bin_b (-0.30, -0.45) |
| parts | 0.04 m cubes, 0.05 kg, axis-aligned, centres z = 0.02, x ∈ [-0.60, -0.35], y ∈ [-0.25, 0.25], ≥ 0.10 m apart |
| person | capsule r 0.2 m, 1.7 m tall (z ∈ [-0.75, 0.95]); parked at (-2.0, -1.6), walks to (-0.45, -0.90) |

The arm is the UR5e of kiban.robot.arm. Each standard-DH frame becomes a MuJoCo body: body i sits at
frame i-1 turned by θ_i about its z axis, so the body's hinge is that z axis and the next body sits at
(a_i, 0, d_i) turned by α_i about x. MuJoCo's joint angles are then exactly the DH θ_i (no offsets),
and body i+1's origin is DH frame i's origin (checked in tests/unit/robot/test_cell.py to 1e-6).

Masses and centres of mass: Universal Robots, "DH parameters for calculations of kinematics and
dynamics" (UR5e: 3.761, 8.058, 2.846, 1.37, 1.3, 0.365 kg; centres of mass in each link's DH frame).
Torque limits: Universal Robots, "Max. joint torques" (UR5e: 150 N·m base/shoulder/elbow, 28 N·m
wrists). Inertia tensors are not published: solid cylinders of the link's length and radius stand in.
Armature 0.1 kg·m² (reflected rotor inertia) is the value MuJoCo Menagerie's UR5e model uses.

    >>> import mujoco
    >>> model = mujoco.MjModel.from_xml_string(build_cell_mjcf(seed=0))
    >>> model.nu, model.body("part2").name
    (7, 'part2')
"""

from __future__ import annotations

import math

import numpy as np

from kiban.robot.arm import DH, N_JOINTS, TOOL_OFFSET_M, UR5E

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
HOME_Q = (0.0, -math.pi / 2, math.pi / 2, -math.pi / 2, -math.pi / 2, 0.0)
LINK_MASS_KG = (3.761, 8.058, 2.846, 1.37, 1.3, 0.365)
LINK_COM_M = (  # in DH frame i
    (0.0, -0.02561, 0.00193),
    (0.2125, 0.0, 0.11336),
    (0.15, 0.0, 0.0265),
    (0.0, -0.0018, 0.01634),
    (0.0, 0.0018, 0.01634),
    (0.0, 0.0, -0.001159),
)
MAX_TORQUE_NM = (150.0, 150.0, 150.0, 28.0, 28.0, 28.0)
LINK_RADIUS_M = (0.06, 0.055, 0.045, 0.04, 0.04, 0.035)
# Servo gains of the position actuators, force = kp (target - q) - kv q̇ (+ gravity compensation).
# kp = I ω² and kv = 2 I ω (critical damping) with ω ≈ 90 rad/s (≈ 15 Hz bandwidth, ~50 ms to
# settle a disturbance) for the effective inertia I each joint sees (links plus armature, mj_fullM
# between HOME_Q and the outstretched pose); ω·timestep ≈ 0.2 keeps the explicit stiffness stable
# (kv is integrated implicitly by `implicitfast`). Higher kp buys little: the feed-forward below
# already removes the tracking lag, and the torque limits cap what a stiffer servo could do. sim.py adds velocity and inertia
# feed-forward, so the joints follow a smooth command without the kv/kp lag or an acceleration lag.
ARM_KP = (20000.0, 30000.0, 10000.0, 1200.0, 1200.0, 900.0)
ARM_KV = (450.0, 650.0, 220.0, 27.0, 27.0, 20.0)
ARMATURE_KG_M2 = (0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
DAMPING_NM_S = (2.0, 2.0, 2.0, 0.5, 0.5, 0.5)

FINGER_TRAVEL_M = 0.045  # each finger; open: inner faces 0.09 m apart, closed: they meet
FINGER_HALF_M = (0.006, 0.012, 0.0325)  # finger box half sizes (x: closing axis, y, z: along the tool)
GRIPPER_MASS_KG = 0.9  # palm 0.8 + two fingers 0.05 (a 2F-85-class gripper weighs 0.925 kg)
GRIPPER_KP, GRIPPER_KV = 500.0, 10.0  # closed on a 0.04 m part, 0.02 m short of the target: ≈ 10 N squeeze

TABLE_M = ((-0.75, 0.65), (-0.65, 0.65), (-0.04, 0.0))  # (x, y, z) ranges
FLOOR_Z_M = -0.75
FIXTURE_M = ((0.30, 0.50), (-0.20, 0.20), (0.0, 0.30))
BINS_M = {"bin_a": (-0.30, 0.45), "bin_b": (-0.30, -0.45)}
BIN_INNER_HALF_M, BIN_WALL_M, BIN_HEIGHT_M = 0.08, 0.01, 0.06
PART_HALF_M, PART_MASS_KG, PART_MIN_GAP_M = 0.02, 0.05, 0.10
PART_REGION_M = ((-0.60, -0.35), (-0.25, 0.25))  # (x, y) ranges of part centres
PERSON_RADIUS_M, PERSON_AXIS_Z_M = 0.2, (-0.55, 0.75)  # capsule: z from -0.75 (floor) to 0.95
PERSON_PATH_M = ((-2.0, -1.6), (-0.45, -0.90))  # from outside the cell to the table's side by bin_b

# Collision bits: robot 1, environment 2, parts 4, person 8. The robot does not collide with itself
# (neighbouring links overlap at the joints); the person touches only the robot (it is kinematic).
_BITS = {"robot": (1, 2 | 4 | 8), "env": (2, 1 | 4), "part": (4, 1 | 2 | 4), "person": (8, 1)}


def part_positions(seed: int | None, parts: int = 3) -> np.ndarray:
    """Centres of the parts on the table: evenly spaced for seed None, else seeded random. # (parts, 3)

    >>> part_positions(None, 3)[:, 1].round(3).tolist()
    [-0.125, 0.0, 0.125]
    """
    (x0, x1), (y0, y1) = PART_REGION_M
    too_many = ValueError(f"parts={parts}: cannot place that many parts {PART_MIN_GAP_M} m apart")
    if seed is None:
        ys = np.linspace(y0, y1, parts + 2)[1:-1]
        if parts > 1 and ys[1] - ys[0] < PART_MIN_GAP_M:
            raise too_many
        xy = np.stack([np.full(parts, (x0 + x1) / 2), ys], axis=1)
    else:
        rng = np.random.default_rng(seed)
        xy = np.empty((parts, 2))
        for i in range(parts):
            for _ in range(1000):
                p = rng.uniform((x0, y0), (x1, y1))
                if i == 0 or np.min(np.linalg.norm(xy[:i] - p, axis=1)) >= PART_MIN_GAP_M:
                    break
            else:
                raise too_many
            xy[i] = p
    return np.concatenate([xy, np.full((parts, 1), PART_HALF_M)], axis=1)


def _f(*values: float) -> str:
    return " ".join(repr(round(float(v), 12)) for v in values)


def _box(
    name: str, kind: str, center: tuple[float, ...], half: tuple[float, ...], rgba: str, **kw: str
) -> str:
    contype, conaffinity = _BITS[kind] if kind else (0, 0)
    extra = "".join(f' {k}="{v}"' for k, v in kw.items())
    return (
        f'<geom name="{name}" type="box" pos="{_f(*center)}" size="{_f(*half)}" rgba="{rgba}" '
        f'contype="{contype}" conaffinity="{conaffinity}"{extra}/>'
    )


def _cylinder_inertia(mass: float, radius: float, length: float, along_x: bool) -> tuple[float, ...]:
    axial, perp = mass * radius**2 / 2, mass * (3 * radius**2 + length**2) / 12
    return (axial, perp, perp) if along_x else (perp, perp, axial)


def _arm(dh: DH) -> str:
    """Nested bodies base → link1..link6 → flange (gripper, tool site), one per DH frame."""
    c, ca = _BITS["robot"]
    geom = f'contype="{c}" conaffinity="{ca}" rgba="0.55 0.62 0.70 1"'
    xml = [
        '<body name="base">',
        f'<geom name="base" type="cylinder" fromto="0 0 0 0 0 0.05" size="0.075" {geom}/>',
        '<site name="base" pos="0 0 0" size="0.01"/>',
    ]
    for i in range(N_JOINTS):
        a, d, r = dh.a_m[i], dh.d_m[i], LINK_RADIUS_M[i]
        alpha = dh.alpha_rad[i - 1] if i else 0.0
        pos = (dh.a_m[i - 1], 0.0, dh.d_m[i - 1]) if i else (0.0, 0.0, 0.0)
        quat = (math.cos(alpha / 2), math.sin(alpha / 2), 0.0, 0.0)
        # centre of mass: DH frame i is this body moved by (a, 0, d) and turned by α_i about x
        ca_i, sa_i = math.cos(dh.alpha_rad[i]), math.sin(dh.alpha_rad[i])
        cx, cy, cz = LINK_COM_M[i]
        com = (a + cx, ca_i * cy - sa_i * cz, d + sa_i * cy + ca_i * cz)
        inertia = _cylinder_inertia(LINK_MASS_KG[i], r, max(abs(a), abs(d), 0.1), along_x=abs(a) > abs(d))
        xml += [
            f'<body name="link{i + 1}" pos="{_f(*pos)}" quat="{_f(*quat)}" gravcomp="1">',
            f'<inertial pos="{_f(*com)}" mass="{LINK_MASS_KG[i]}" diaginertia="{_f(*inertia)}"/>',
            f'<joint name="{JOINT_NAMES[i]}" type="hinge" axis="0 0 1" range="{_f(-2 * math.pi, 2 * math.pi)}" '
            f'armature="{ARMATURE_KG_M2[i]}" damping="{DAMPING_NM_S[i]}" actuatorgravcomp="true" '
            f'actuatorfrcrange="{_f(-MAX_TORQUE_NM[i], MAX_TORQUE_NM[i])}"/>',
        ]
        # the joint housing along the hinge (the first one stands on the base, clear of the table)
        z0, z1 = (0.055, d) if i == 0 else (-r * 1.2, r * 1.2)
        xml.append(f'<geom type="cylinder" fromto="0 0 {_f(z0)} 0 0 {_f(z1)}" size="{r * 1.1}" {geom}/>')
        if d and i:
            xml.append(f'<geom type="capsule" fromto="0 0 0 0 0 {_f(d)}" size="{r * 0.85}" {geom}/>')
        if a:
            xml.append(
                f'<geom type="capsule" fromto="0 0 {_f(d)} {_f(a)} 0 {_f(d)}" size="{r * 0.85}" {geom}/>'
            )
    alpha6 = dh.alpha_rad[-1]
    xml += [
        f'<body name="flange" pos="{_f(dh.a_m[-1], 0, dh.d_m[-1])}" '
        f'quat="{_f(math.cos(alpha6 / 2), math.sin(alpha6 / 2), 0, 0)}" gravcomp="1">',
        '<site name="flange" pos="0 0 0" size="0.01"/>',
        f'<site name="tool" pos="0 0 {_f(TOOL_OFFSET_M)}" size="0.008" rgba="1 0.3 0.1 1"/>',
        _gripper(geom),
        "</body>" * (N_JOINTS + 2),  # flange, link6..link1, base
    ]
    return "\n".join(xml)


def _gripper(geom: str) -> str:
    """A parallel gripper: palm on the flange, two fingers sliding along the flange's x axis."""
    fx, fy, fz = FINGER_HALF_M
    finger_z = TOOL_OFFSET_M + 0.015 - fz  # finger tips 0.015 m beyond the tool point
    x_open = FINGER_TRAVEL_M + fx
    friction = 'friction="1.5 0.02 0.002" condim="4"'
    fingers = []
    for side, sign in (("left", 1), ("right", -1)):
        fingers += [
            f'<body name="finger_{side}" pos="{_f(sign * x_open, 0, finger_z)}" gravcomp="1">',
            '<inertial pos="0 0 0" mass="0.05" diaginertia="2e-5 2e-5 5e-6"/>',
            f'<joint name="finger_{side}" type="slide" axis="{-sign} 0 0" range="{_f(0, FINGER_TRAVEL_M)}" '
            'armature="0.01" damping="2"/>',
            f'<geom name="finger_{side}" type="box" size="{_f(fx, fy, fz)}" {geom} {friction}/>',
            "</body>",
        ]
    palm_mass = GRIPPER_MASS_KG - 0.1
    return "\n".join(
        [
            '<body name="gripper" gravcomp="1">',
            f'<inertial pos="0 0 0.05" mass="{palm_mass}" diaginertia="0.0012 0.0012 0.0008"/>',
            f'<geom name="palm" type="box" pos="0 0 0.05" size="0.065 0.035 0.05" {geom}/>',
            *fingers,
            "</body>",
        ]
    )


def _bin(name: str, x: float, y: float) -> str:
    h, t, H = BIN_INNER_HALF_M, BIN_WALL_M, BIN_HEIGHT_M
    rgba = "0.25 0.45 0.75 1"
    walls = [
        _box(f"{name}_floor", "env", (0, 0, 0.0025), (h + t, h + t, 0.0025), rgba),
        _box(f"{name}_wall_xp", "env", (h + t / 2, 0, H / 2), (t / 2, h + t, H / 2), rgba),
        _box(f"{name}_wall_xn", "env", (-h - t / 2, 0, H / 2), (t / 2, h + t, H / 2), rgba),
        _box(f"{name}_wall_yp", "env", (0, h + t / 2, H / 2), (h, t / 2, H / 2), rgba),
        _box(f"{name}_wall_yn", "env", (0, -h - t / 2, H / 2), (h, t / 2, H / 2), rgba),
    ]
    return "\n".join(
        [
            f'<body name="{name}" pos="{_f(x, y, 0)}">',
            *walls,
            f'<site name="{name}" pos="0 0 0.005"/>',
            "</body>",
        ]
    )


def _look_at(pos: tuple[float, float, float], target: tuple[float, float, float]) -> str:
    f = np.subtract(target, pos) / np.linalg.norm(np.subtract(target, pos))
    x = np.cross(f, (0, 0, 1))
    x /= np.linalg.norm(x)
    return _f(*x, *np.cross(x, f))


def build_cell_mjcf(
    *, seed: int | None = None, parts: int = 3, timestep_s: float = 0.002, dh: DH = UR5E
) -> str:
    """The cell's MJCF: table, UR5e with gripper, `parts` cubes (seeded places), two bins, a fixture, a person.

    Names: joints JOINT_NAMES, finger_left/finger_right; actuators the joint names and "gripper";
    sites "tool", "flange", "base", "part<i>", "bin_a", "bin_b"; bodies "part<i>", "person" (mocap),
    "fixture", "table", "bin_a", "bin_b"; keyframe "home" (HOME_Q, gripper open).
    """
    if parts < 0:
        raise ValueError(f"parts={parts}: must be ≥ 0")
    (tx0, tx1), (ty0, ty1), (tz0, tz1) = TABLE_M
    tc = ((tx0 + tx1) / 2, (ty0 + ty1) / 2, (tz0 + tz1) / 2)
    th = ((tx1 - tx0) / 2, (ty1 - ty0) / 2, (tz1 - tz0) / 2)
    leg_half = (0.03, 0.03, (tz0 - FLOOR_Z_M) / 2)
    legs = [
        _box(f"table_leg{i}", "", (x, y, (tz0 + FLOOR_Z_M) / 2), leg_half, "0.45 0.35 0.25 1")
        for i, (x, y) in enumerate(
            [
                (tx0 + 0.05, ty0 + 0.05),
                (tx0 + 0.05, ty1 - 0.05),
                (tx1 - 0.05, ty0 + 0.05),
                (tx1 - 0.05, ty1 - 0.05),
            ]
        )
    ]
    (fx0, fx1), (fy0, fy1), (fz0, fz1) = FIXTURE_M
    fixture_c = ((fx0 + fx1) / 2, (fy0 + fy1) / 2, (fz0 + fz1) / 2)
    fixture_h = ((fx1 - fx0) / 2, (fy1 - fy0) / 2, (fz1 - fz0) / 2)
    p = PART_HALF_M
    part_xyz = part_positions(seed, parts)
    part_bodies = [
        f'<body name="part{i}" pos="{_f(*xyz)}"><freejoint name="part{i}"/>'
        + _box(
            f"part{i}", "part", (0, 0, 0), (p, p, p), "0.85 0.55 0.1 1", mass=str(PART_MASS_KG), condim="4"
        )
        + f'<site name="part{i}" pos="0 0 0" size="0.005"/></body>'
        for i, xyz in enumerate(part_xyz)
    ]
    pc, pa = _BITS["person"]
    (px, py), (z0, z1) = PERSON_PATH_M[0], PERSON_AXIS_Z_M
    actuators = [
        f'<position name="{n}" joint="{n}" kp="{kp}" kv="{kv}" ctrlrange="{_f(-2 * math.pi, 2 * math.pi)}"/>'
        for n, kp, kv in zip(JOINT_NAMES, ARM_KP, ARM_KV, strict=True)
    ]
    actuators.append(
        f'<position name="gripper" joint="finger_left" kp="{GRIPPER_KP}" kv="{GRIPPER_KV}" '
        f'ctrlrange="{_f(0, FINGER_TRAVEL_M)}" forcerange="-40 40"/>'
    )
    home_qpos = [*HOME_Q, 0.0, 0.0] + [v for xyz in part_xyz for v in (*xyz, 1.0, 0.0, 0.0, 0.0)]
    overview = _look_at((-2.0, 1.1, 1.5), (-0.2, -0.1, 0.0))
    worldbody = [
        '<light name="sun" pos="0 0 3" dir="0 0 -1" directional="true"/>',
        f'<camera name="overview" pos="-2.0 1.1 1.5" xyaxes="{overview}"/>',
        '<camera name="top" pos="-0.05 0 2.4" xyaxes="0 -1 0 1 0 0"/>',
        f'<geom name="floor" type="plane" pos="0 0 {_f(FLOOR_Z_M)}" size="3 3 0.1" rgba="0.8 0.8 0.8 1" '
        f'contype="{_BITS["env"][0]}" conaffinity="{_BITS["env"][1]}"/>',
        '<body name="table">',
        _box("table", "env", tc, th, "0.6 0.48 0.35 1"),
        *legs,
        "</body>",
        f'<body name="fixture">{_box("fixture", "env", fixture_c, fixture_h, "0.8 0.2 0.2 1")}</body>',
        *(_bin(name, x, y) for name, (x, y) in BINS_M.items()),
        _arm(dh),
        *part_bodies,
        f'<body name="person" mocap="true" pos="{_f(px, py, 0)}">',
        f'<geom name="person" type="capsule" fromto="0 0 {_f(z0)} 0 0 {_f(z1)}" size="{PERSON_RADIUS_M}" '
        f'rgba="0.9 0.75 0.2 0.8" contype="{pc}" conaffinity="{pa}"/>',
        "</body>",
    ]
    return "\n".join(
        [
            '<mujoco model="kiban_cell">',
            '<compiler angle="radian" autolimits="true"/>',
            f'<option timestep="{_f(timestep_s)}" integrator="implicitfast" cone="elliptic" impratio="10"/>',
            '<visual><global offwidth="1280" offheight="960"/></visual>',
            "<worldbody>",
            *worldbody,
            "</worldbody>",
            '<contact><exclude body1="base" body2="link1"/></contact>',
            '<equality><joint name="fingers" joint1="finger_right" joint2="finger_left" polycoef="0 1 0 0 0" solref="0.004 1"/>'
            "</equality>",
            "<actuator>",
            *actuators,
            "</actuator>",
            f'<keyframe><key name="home" qpos="{_f(*home_qpos)}" ctrl="{_f(*HOME_Q, 0.0)}" '
            f'mpos="{_f(px, py, 0)}" mquat="1 0 0 0"/></keyframe>',
            "</mujoco>",
        ]
    )
