"""Training metrics: `metrics.jsonl` (one JSON object per logged step), the loss-curve PNG, MFU.

    {"step": 10, "loss": 5.91, "lr": 0.001, "grad_norm": 0.84, "tokens": 20480,
     "tokens_per_s": 51200.0, "elapsed_s": 0.4, "eval_loss": 5.87}

`step` counts optimizer steps taken (1 after the first). `mfu` is logged on GPUs whose peak the
planner knows (`kiban.train.plan.DEVICES`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from kiban.artifacts import atomic_path

METRICS = "metrics.jsonl"
LOSS_PNG = "loss.png"


class MetricsLog:
    """Append-only metrics file; every record is also kept in memory for the checkpoint and the plot."""

    def __init__(self, out_dir: Path, records: list[dict[str, Any]] | None = None) -> None:
        self.path = Path(out_dir) / METRICS
        self.records: list[dict[str, Any]] = list(records or [])
        # Rewrite from `records`: lines a killed run logged after its last checkpoint are dropped,
        # so a resumed run's file has each step once.
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for r in self.records:
                f.write(json.dumps(r) + "\n")
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def mfu(tokens_per_s: float, flops_per_token: int, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the device peak (PaLM, Chowdhery et al. 2022, §B)."""
    return tokens_per_s * flops_per_token / (peak_tflops * 1e12)


def gpu_peak_tflops(device_name: str) -> tuple[str, float] | None:
    """(planner device, dense bf16 peak) for a CUDA device name like 'NVIDIA H200', else None."""
    from kiban.train.plan import DEVICES

    upper = device_name.upper()
    for key, dev in DEVICES.items():
        if key != "cpu" and key.upper() in upper and dev.peak_bf16_tflops:
            return key, dev.peak_bf16_tflops
    return None


def plot_loss(records: list[dict[str, Any]], path: Path, *, title: str = "") -> None:
    """Train and held-out loss against step, as a PNG (matplotlib's Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if math.isfinite(r.get("loss", math.nan))]
    held = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if held:
        ax.plot(*zip(*held, strict=True), "o-", label="held-out", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
