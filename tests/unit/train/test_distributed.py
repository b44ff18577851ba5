"""Real `torchrun` on CPU (gloo): 2 processes under DDP and under FSDP2 log the same losses as one
process with the same global batch, and a checkpoint resumes under another parallelism."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kiban.artifacts import read_manifest
from kiban.tokenizer.shards import write_shard, write_tokens_manifest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def write_pattern_shards(directory: Path) -> Path:
    rng = np.random.default_rng(2)
    entries = []
    for s in range(2):
        docs = [
            np.array([3 + (int(rng.integers(0, 60)) + i) % 60 for i in range(60)] + [2]) for _ in range(30)
        ]
        entries.append(write_shard(directory, s, docs, "uint16"))
    write_tokens_manifest(
        directory, entries, vocab_size=512, bos_id=1, eos_id=2, pad_id=0, tokenizer_sha256="0" * 64
    )
    return directory


def train(launcher: list[str], shards: Path, out_dir: Path, *sets: str) -> None:
    args = [*launcher, "-m", "kiban.train.loop", str(EXAMPLES / "train-tiny.yaml")]
    common = [
        f"data.shards={shards}",
        f"out_dir={out_dir}",
        "batch.max_steps=8",
        "batch.micro_batch=4",
        "checkpoint_every=4",
        "keep_checkpoints=0",
        "eval_every=4",
        "eval_batches=3",  # not a multiple of the world size: ranks must still run in step
        "schedule.warmup_steps=2",
        "threads=1",
    ]
    for s in [*common, *sets]:
        args += ["--set", s]
    proc = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]


def curve(out_dir: Path) -> list[tuple[float, float | None]]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    return [(r["loss"], r.get("eval_loss")) for r in rows]


def assert_same_run(a: Path, b: Path) -> None:
    for (la, ea), (lb, eb) in zip(curve(a), curve(b), strict=True):
        assert lb == pytest.approx(la, rel=1e-4)
        assert (ea is None) == (eb is None) and (ea is None or eb == pytest.approx(ea, rel=1e-4))
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dist")
    shards = write_pattern_shards(root / "tokens")
    # One process, 2 micro-batches of 4: the same 8 sequences per step as 2 processes × 1 × 4.
    train([sys.executable], shards, root / "single", "batch.grad_accum=2")
    return shards, root / "single"


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_match_one(single: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    shards, reference = single
    out = tmp_path / mode
    train(TORCHRUN, shards, out, f"parallel={mode}")
    stats = read_manifest(out).stats
    assert stats["world_size"] == 2 and stats["parallel"] == mode
    assert_same_run(reference, out)
    assert curve(out)[0][0] < 6.3 and curve(out)[-1][0] < curve(out)[0][0]


def test_a_single_process_checkpoint_resumes_under_fsdp(single: tuple[Path, Path], tmp_path: Path) -> None:
    """Resume reads the full state on every rank and shards it; the global batch is split anew."""
    shards, reference = single
    out = tmp_path / "moved"  # a run directory may be moved and resumed
    shutil.copytree(reference, out)
    (out / "manifest.json").unlink()
    shutil.rmtree(out / "checkpoints" / "step-000008")
    train(TORCHRUN, shards, out, "parallel=fsdp")
    assert read_manifest(out).stats["parallel"] == "fsdp"
    assert_same_run(reference, out)
