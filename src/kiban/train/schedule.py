"""Learning-rate schedules: pure functions of the step, so a resumed run needs no scheduler state.

    >>> [round(lr_at(s, peak_lr=1.0, max_steps=10, warmup_steps=2, min_lr_ratio=0.0), 3) for s in range(10)]
    [0.5, 1.0, 1.0, 0.962, 0.854, 0.691, 0.5, 0.309, 0.146, 0.038]
    >>> [lr_at(s, peak_lr=1.0, max_steps=10, warmup_steps=2, kind="wsd", decay_fraction=0.4,
    ...        min_lr_ratio=0.0) for s in range(10)]
    [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]

Step `s` is the optimizer step about to be taken (0-based); the rate reaches its floor only after
the last step, so no step is spent at a learning rate of zero.
"""

from __future__ import annotations

import math
from typing import Literal


def lr_at(
    step: int,
    *,
    peak_lr: float,
    max_steps: int,
    warmup_steps: int = 0,
    kind: Literal["cosine", "wsd"] = "cosine",
    decay_fraction: float = 0.2,
    min_lr_ratio: float = 0.1,
) -> float:
    """Learning rate for optimizer step `step` of `max_steps`.

    Warmup: linear, (step + 1) / warmup_steps × peak (GPT-3, Brown et al. 2020, §B).
    `cosine`: peak → min over the remaining steps (Loshchilov & Hutter 2017, SGDR).
    `wsd`: warmup-stable-decay; constant at peak, then linear to min over the last
    `decay_fraction` of the steps (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
    Beyond Fixed Training Durations", §3: linear or 1-sqrt cooldown over 10–20% of the run).
    """
    if step < 0:
        raise ValueError(f"step must be ≥ 0, got {step}")
    min_lr = peak_lr * min_lr_ratio
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if kind == "cosine":
        span = max(1, max_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * progress))
    if kind == "wsd":
        decay_steps = max(1, round(max_steps * decay_fraction))
        decay_start = max(warmup_steps, max_steps - decay_steps)
        if step < decay_start:
            return peak_lr
        progress = min(1.0, (step - decay_start) / max(1, max_steps - decay_start))
        return peak_lr - (peak_lr - min_lr) * progress
    raise ValueError(f"unknown schedule kind {kind!r} (known: cosine, wsd)")
