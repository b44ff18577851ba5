"""Progress of long work: a bar on a terminal, JSON lines with `--json`, quiet otherwise.

>>> p = Progress("filter", total=2, mode="quiet")
>>> p.update(1); p.update(1); p.close()
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Literal, TextIO

Mode = Literal["bar", "json", "quiet"]


def default_mode(json_lines: bool, stream: TextIO = sys.stderr) -> Mode:
    if json_lines:
        return "json"
    return "bar" if stream.isatty() else "quiet"


class Progress:
    """Counts units of work for one stage; `update(n, **extra)` adds `n` done units."""

    def __init__(self, stage: str, total: int | None, *, mode: Mode = "quiet", unit: str = "tasks") -> None:
        self.stage, self.total, self.mode, self.unit = stage, total, mode, unit
        self.done = 0
        self.extra: dict[str, Any] = {}
        self._t0 = time.monotonic()
        self._last_draw = 0.0
        if mode == "json":
            emit({"event": "stage", "stage": stage, "total": total, "unit": unit})

    def update(self, n: int = 1, **extra: Any) -> None:
        self.done += n
        for k, v in extra.items():
            self.extra[k] = self.extra.get(k, 0) + v if isinstance(v, int | float) else v
        if self.mode == "json":
            emit(
                {
                    "event": "progress",
                    "stage": self.stage,
                    "done": self.done,
                    "total": self.total,
                    "elapsed_s": round(time.monotonic() - self._t0, 3),
                    **self.extra,
                }
            )
        elif self.mode == "bar":
            now = time.monotonic()
            if now - self._last_draw > 0.1 or (self.total is not None and self.done >= self.total):
                self._draw()
                self._last_draw = now

    def _draw(self) -> None:
        elapsed = time.monotonic() - self._t0
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items())
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "█" * int(frac * 30) + "░" * (30 - int(frac * 30))
            line = f"\r{self.stage:>8} {bar} {self.done}/{self.total} {self.unit} {elapsed:6.1f}s {extra}"
        else:
            line = f"\r{self.stage:>8} {self.done} {self.unit} {elapsed:6.1f}s {extra}"
        sys.stderr.write(line[:160])
        sys.stderr.flush()

    def close(self) -> None:
        if self.mode == "bar":
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()
        elif self.mode == "json":
            emit(
                {
                    "event": "stage_done",
                    "stage": self.stage,
                    "done": self.done,
                    "elapsed_s": round(time.monotonic() - self._t0, 3),
                    **self.extra,
                }
            )


def emit(obj: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()
