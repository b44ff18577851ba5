"""The control loop in the MuJoCo cell: a seeded pick and place succeeds through the supervisor, replays
bit for bit, and records a LeRobot v3.0 dataset."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from kiban.errors import ConfigError
from kiban.robot.loop import ground_truth_violations, run_episode, sim_episode
from kiban.robot.safety_config import load_safety_config
from kiban.robot.sim import MujocoRobot
from kiban.robot.tasks import pick_place_task
from kiban.robot.types import Command, RobotState

CONFIG = load_safety_config("examples/robot-safety.yaml")


def episode(seed: int, *, parts: int | None = None, record: Path | None = None):  # noqa: ANN201
    robot = MujocoRobot(seed=seed)
    spec = pick_place_task(robot, CONFIG, parts=parts)
    result = run_episode(
        robot,
        spec.policy,
        CONFIG,
        max_cycles=spec.max_cycles,
        seed=seed,
        record=record,
        success=spec.success,
        task=spec.description,
    )
    return result, robot


def test_seeded_pick_place_succeeds_without_interventions_or_violations() -> None:
    result, robot = episode(1000)
    assert result.error is None
    assert result.success
    assert result.violations == []
    assert result.intervention_counts == {}  # nominal motion: no clamp, no slowdown, no stop
    assert all(any(robot.part_in_bin(p, b) for b in ("bin_a", "bin_b")) for p in robot.part_names)
    assert result.peaks["joint_speed_fraction"] < 0.5
    t = result.timing
    assert t.cycles == result.cycles and t.compute_p50_us > 0 and t.wall_period_p50_us > 0


@pytest.fixture(scope="module")
def two_recorded_runs(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("episodes")
    runs = [episode(1001, parts=1, record=root / f"run{i}")[0] for i in range(2)]
    return runs, [root / "run0", root / "run1"]


def test_same_seed_replays_bit_identically(two_recorded_runs) -> None:  # noqa: ANN001
    (a, b), (dir_a, dir_b) = two_recorded_runs
    assert a.success and b.success
    for key, x in a.trace.arrays().items():
        assert x.tobytes() == b.trace.arrays()[key].tobytes(), key
    data = "data/chunk-000/file-000.parquet"
    assert (dir_a / data).read_bytes() == (dir_b / data).read_bytes()


def test_recording_has_the_lerobot_v3_layout(two_recorded_runs) -> None:  # noqa: ANN001
    (result, _), (root, _) = two_recorded_runs
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["fps"] == 500 and info["total_episodes"] == 1 and info["total_frames"] == result.cycles
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    for key in ("robot_type", "total_tasks", "chunks_size", "data_files_size_in_mb", "splits", "video_path"):
        assert key in info
    feats = info["features"]
    assert feats["observation.state"]["shape"] == [7] and feats["observation.state"]["dtype"] == "float32"
    assert feats["action"]["names"][-1] == "gripper"
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert feats[key]["shape"] == [1]

    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert set(data.column_names) == set(feats)
    assert data.num_rows == result.cycles
    assert data.schema.field("observation.state").type.list_size == 7
    assert data.column("timestamp").to_pylist()[:2] == [0.0, np.float32(1 / 500)]
    np.testing.assert_array_equal(
        np.stack(data.column("observation.state").to_numpy(zero_copy_only=False)),
        result.trace.arrays()["state"].astype(np.float32),
    )

    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert len(episodes) == 1
    ep = episodes[0]
    assert ep["length"] == result.cycles and ep["dataset_to_index"] == result.cycles
    assert (
        ep["data/chunk_index"] == 0
        and ep["data/file_index"] == 0
        and ep["tasks"] == ["Put each part in the nearer bin."]
    )
    assert "stats/action/q99" in ep and "meta/episodes/file_index" in ep

    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.to_pylist() == [{"task_index": 0, "task": "Put each part in the nearer bin."}]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]

    stats = json.loads((root / "meta/stats.json").read_text())
    assert set(stats) == set(feats)
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert (root / "manifest.json").is_file()


def test_recording_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "x").write_text("keep me")
    robot = MujocoRobot(seed=0)
    with pytest.raises(ConfigError, match="not an empty directory"):
        run_episode(robot, lambda s: None, CONFIG, max_cycles=10, seed=0, record=tmp_path / "old")
    assert (tmp_path / "old" / "x").read_text() == "keep me"


def test_rate_must_match_the_robot_and_the_config() -> None:
    with pytest.raises(ConfigError, match="rate_hz"):
        run_episode(MujocoRobot(seed=0), lambda s: None, CONFIG, rate_hz=250, max_cycles=10, seed=0)


def test_supervisor_interventions_are_reported() -> None:
    """A policy that jumps 0.5 rad in one cycle is clamped, and the loop says so with the reasons."""

    def jump(state: RobotState) -> Command | None:
        return None if state.t_s > 0.05 else Command(t_s=state.t_s, q_rad=state.q_rad + [0.5, 0, 0, 0, 0, 0])

    result = run_episode(MujocoRobot(seed=0), jump, CONFIG, max_cycles=1000, seed=0)
    assert result.intervention_counts.get("clamped", 0) > 0
    assert any(r.startswith("joint_jerk_limit:j1") for r in result.interventions[0]["reasons"])
    assert result.success  # a clamp is not a failure (a protective stop or a violation would be) …
    assert result.violations == []  # … and the supervisor kept the physics within the limits


def test_ground_truth_violations_name_the_rule() -> None:
    q = np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0])
    truth = SimpleNamespace(
        q_rad=q,
        qd_peak_rad_s=np.array([0.0, 4.0, 0, 0, 0, 0]),
        links_m=np.array(
            [
                [0, 0, 0],
                [0, 0, 0.16],
                [0.4, 0, 0.2],
                [0.45, 0, 0.1],
                [0, 0, 0.5],
                [0, 0, 0.5],
                [0, 0, 0.5],
                [0, 0, -0.1],
            ]
        ),
        contacts=(("finger_left", "part0"), ("link3", "fixture")),
        person_distance_m=0.5,
    )
    found = ground_truth_violations(truth, CONFIG)
    assert "joint_velocity:j2:4.000rad/s" in found
    assert any(v.startswith("workspace:point7") for v in found)  # the tool below the table top
    assert "keep_out:fixture" in found
    assert "contact:link3:fixture" in found and not any("part0" in v for v in found)


def test_sim_episode_unknown_task_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown task"):
        sim_episode("juggle", 0)
