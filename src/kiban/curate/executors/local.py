"""Run tasks in a local process pool (the embedded default)."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def _call(args: tuple[Callable[[Any], Any], int, Any]) -> tuple[int, Any]:
    fn, i, item = args
    return i, fn(item)


class LocalExecutor:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: Any = None

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        if self.workers == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                yield i, fn(item)
            return
        if self._pool is None:
            # fork keeps start-up cheap; workers load their models lazily on first use
            self._pool = mp.get_context("fork").Pool(self.workers)
        yield from self._pool.imap_unordered(_call, [(fn, i, item) for i, item in enumerate(items)])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
