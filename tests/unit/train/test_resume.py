"""Exact resumption: a real training process killed with SIGKILL after a checkpoint, then started
again, logs the same losses, step for step, and ends with the same weights, bit for bit, as a run
that was never interrupted (CPU, one thread, deterministic algorithms)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from kiban.artifacts import sha256_file
from kiban.tokenizer.shards import write_shard, write_tokens_manifest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
STEPS, EVERY = 60, 10


def write_pattern_shards(directory: Path) -> Path:
    rng = np.random.default_rng(1)
    docs = [np.array([3 + (int(rng.integers(0, 60)) + i) % 60 for i in range(200)] + [2]) for _ in range(40)]
    write_tokens_manifest(
        directory,
        [write_shard(directory, 0, docs, "uint16")],
        vocab_size=512,
        bos_id=1,
        eos_id=2,
        pad_id=0,
        tokenizer_sha256="0" * 64,
    )
    return directory


def command(shards: Path, out_dir: Path) -> list[str]:
    sets = [
        f"data.shards={shards}",
        f"out_dir={out_dir}",
        "data.seq_len=64",
        "batch.micro_batch=16",
        "batch.grad_accum=2",
        f"batch.max_steps={STEPS}",
        f"checkpoint_every={EVERY}",
        "eval_every=7",
        "keep_checkpoints=0",
        "threads=1",
        "deterministic=true",
    ]
    args = [sys.executable, "-m", "kiban.train.loop", str(EXAMPLES / "train-tiny.yaml"), "--json"]
    for s in sets:
        args += ["--set", s]
    return args


def losses(out_dir: Path) -> list[tuple[int, float, float | None]]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("eval_loss")) for r in rows]


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    shards = write_pattern_shards(tmp_path / "tokens")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    reference = tmp_path / "reference"
    subprocess.run(command(shards, reference), check=True, capture_output=True, env=env, timeout=300)

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        command(shards, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    killed_at = None
    for line in proc.stdout:
        event = json.loads(line)
        # "done" is printed before that step's checkpoint is written: once step EVERY + 2 is
        # reported, step-000010 has been renamed into place.
        if event.get("event") == "progress" and event["done"] >= EVERY + 2:
            proc.send_signal(signal.SIGKILL)
            killed_at = event["done"]
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert killed_at is not None and not (out / "manifest.json").exists(), "the run finished before the kill"
    saved = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert saved and saved[-1] < f"step-{STEPS:06d}"
    logged_before_kill = len(losses(out))
    # A checkpoint directory that a kill interrupted is never taken for a complete one.
    junk = out / "checkpoints" / ".tmp-step-000999-1"
    (junk / "training_state").mkdir(parents=True)
    (junk / "model.safetensors").write_bytes(b"half")

    resumed = subprocess.run(
        command(shards, out), check=True, capture_output=True, text=True, env=env, timeout=300
    )
    assert "'resumed_from': " + str(int(saved[-1].removeprefix("step-"))) in resumed.stderr
    assert not junk.exists()

    assert logged_before_kill >= int(saved[-1].removeprefix("step-"))
    assert losses(out) == losses(reference)  # every step once, same floats
    assert len(losses(out)) == STEPS
    assert sha256_file(out / "model.safetensors") == sha256_file(reference / "model.safetensors")
    assert (out / "training_state" / "optimizer.pt").is_file()  # the final artifact resumes too
