"""Executors run independent tasks of a stage: one seam, `map_unordered(fn, items)`.

`local` uses a process pool (in-process when workers == 1); `ray` runs the same function as Ray
tasks on a local or remote cluster. Results come back as `(index, result)` pairs in completion
order; the pipeline orders them by index, so both executors produce identical artifacts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from kiban.errors import ConfigError


class Executor(Protocol):
    workers: int

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...


def make_executor(name: str, workers: int) -> Executor:
    if workers < 1:
        raise ConfigError(f"--workers must be ≥ 1, got {workers}")
    if name == "local":
        from kiban.curate.executors.local import LocalExecutor

        return LocalExecutor(workers)
    if name == "ray":
        from kiban.curate.executors.ray import RayExecutor

        return RayExecutor(workers)
    raise ConfigError(f"--executor must be 'local' or 'ray', got {name!r}")
