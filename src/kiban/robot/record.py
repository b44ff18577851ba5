"""Write an episode as a LeRobot v3.0 dataset, so LeRobot's tools (and policies trained with them) read it.

    DIR/
      meta/info.json                               codebase_version "v3.0", fps, features, totals, path templates
      meta/stats.json                              per feature: min, max, mean, std, count, q01 .. q99
      meta/tasks.parquet                           task_index, indexed by the task's text
      meta/episodes/chunk-000/file-000.parquet     one row per episode: length, tasks, data file, stats/...
      data/chunk-000/file-000.parquet              one row per frame: observation.state, action, timestamp,
                                                   frame_index, episode_index, index, task_index
      manifest.json                                kiban's artifact record (LeRobot ignores it)

Layout after huggingface/lerobot `src/lerobot/datasets/utils.py` (DEFAULT_DATA_PATH, DEFAULT_EPISODES_PATH,
DEFAULT_TASKS_PATH, DatasetInfo), `dataset_writer.py` (episode metadata columns), `compute_stats.py`
(DEFAULT_QUANTILES) and `utils/constants.py` (DEFAULT_FEATURES). Vectors are fixed-size float32 lists,
as `datasets.Sequence(length=n)` stores them. The frames are every control cycle (fps = the rate).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kiban.artifacts import Manifest, write_manifest
from kiban.errors import ConfigError

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE, DATA_FILES_SIZE_IN_MB, VIDEO_FILES_SIZE_IN_MB = 1000, 100, 200  # LeRobot's defaults
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
DEFAULT_FEATURES = {  # LeRobot fills these itself for every frame
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def features(joint_names: tuple[str, ...]) -> dict:
    """The dataset's features: 6 joint positions (rad) and the gripper (0 open .. 1 closed), observed and sent."""
    names = [*joint_names, "gripper"]
    vector = {"dtype": "float32", "shape": [len(names)], "names": names}
    return {"observation.state": dict(vector), "action": dict(vector), **DEFAULT_FEATURES}


def feature_stats(x: np.ndarray) -> dict[str, list]:
    """LeRobot's per-feature statistics over frames (axis 0). x # (N, D)"""
    x = x.astype(np.float64)
    out = {
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "count": [len(x)],
    }
    for q in QUANTILES:
        out[f"q{round(q * 100):02d}"] = np.quantile(x, q, axis=0).tolist()
    return out


def _vectors(x: np.ndarray) -> pa.Array:
    """(N, D) float32 → fixed_size_list<float>[D] (what datasets.Sequence(length=D) writes)."""
    flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, x.shape[1])


def _write_table(path: Path, columns: dict[str, pa.Array], metadata: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata({k: json.dumps(v) for k, v in metadata.items()})
    pq.write_table(table, path, compression="snappy")


def check_target(directory: Path) -> None:
    """ConfigError unless `directory` is absent or an empty directory (a recording never overwrites)."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(f"--record {directory}: exists and is not an empty directory")


def write_episode(
    directory: Path,
    trace: object,
    *,
    fps: int,
    task: str,
    joint_names: tuple[str, ...],
    robot_type: str = "ur5e",
    stats: dict | None = None,
) -> Path:
    """Write one episode (`loop.EpisodeTrace`) as a new LeRobot v3.0 dataset at `directory`.

    Atomic: written beside it and renamed into place. Refuses a directory that exists and is not
    empty (one dataset per recording; LeRobot's `aggregate_datasets` merges several)."""
    directory = Path(directory)
    check_target(directory)
    arrays = trace.arrays()
    state, action = arrays["state"], arrays["action"]  # (N, 7) each
    n = len(state)
    feats = features(tuple(joint_names))
    frame_index = np.arange(n, dtype=np.int64)
    timestamp = (frame_index / fps).astype(np.float32)  # LeRobot: frame_index / fps, float32
    zeros = np.zeros(n, dtype=np.int64)
    data = {
        "observation.state": _vectors(state),
        "action": _vectors(action),
        "timestamp": pa.array(timestamp),
        "frame_index": pa.array(frame_index),
        "episode_index": pa.array(zeros),
        "index": pa.array(frame_index),
        "task_index": pa.array(zeros),
    }
    ep_stats = {
        "observation.state": feature_stats(state),
        "action": feature_stats(action),
        **{k: feature_stats(np.asarray(data[k]).reshape(n, 1)) for k in DEFAULT_FEATURES},
    }
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": 1,
        "total_frames": n,
        "total_tasks": 1,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": fps,
        "splits": {"train": "0:1"},
        "data_path": DATA_PATH,
        "video_path": None,  # no cameras recorded
        "features": feats,
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{directory.name}.", dir=directory.parent))
    try:
        _write_table(tmp / DATA_PATH.format(chunk_index=0, file_index=0), data)
        episode = {
            "episode_index": pa.array([0], pa.int64()),
            "tasks": pa.array([[task]], pa.list_(pa.string())),
            "length": pa.array([n], pa.int64()),
            "data/chunk_index": pa.array([0], pa.int64()),
            "data/file_index": pa.array([0], pa.int64()),
            "dataset_from_index": pa.array([0], pa.int64()),
            "dataset_to_index": pa.array([n], pa.int64()),
        }
        for key, st in ep_stats.items():
            for name, value in st.items():
                dtype = pa.int64() if name == "count" else pa.float64()
                episode[f"stats/{key}/{name}"] = pa.array([value], pa.list_(dtype))
        episode["meta/episodes/chunk_index"] = pa.array([0], pa.int64())
        episode["meta/episodes/file_index"] = pa.array([0], pa.int64())
        _write_table(tmp / EPISODES_PATH.format(chunk_index=0, file_index=0), episode)
        # pandas writes the index ("task", the text) as a column and says so in its metadata, so that
        # LeRobot's pd.read_parquet(...) gets the task text back as the index
        _write_table(
            tmp / "meta/tasks.parquet",
            {"task_index": pa.array([0], pa.int64()), "task": pa.array([task], pa.string())},
            {"pandas": _pandas_index_metadata()},
        )
        (tmp / "meta/info.json").write_text(json.dumps(info, indent=4) + "\n", encoding="utf-8")
        (tmp / "meta/stats.json").write_text(json.dumps(ep_stats, indent=4) + "\n", encoding="utf-8")
        write_manifest(
            tmp,
            Manifest(
                kind="robot-episodes",
                config={"task": task, "fps": fps, "robot_type": robot_type},
                stats={"episodes": 1, "frames": n, **(stats or {})},
            ),
        )
        if directory.exists():
            directory.rmdir()  # empty (checked above)
        tmp.rename(directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return directory


def _pandas_index_metadata() -> dict:
    """The `pandas` schema metadata of a frame with column task_index and index "task" (strings)."""
    return {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
