"""Few-shot examples drawn with a seeded sampler: same seed and document, same examples, everywhere.

Each document gets its own generator, seeded from (run seed, document id), so the examples shown
before a document do not depend on which other documents were evaluated (`--limit`), on their
order, or on the Python version: the draw uses only `random.Random(int)` (Mersenne Twister, seeded
the same way since Python 3.2) and `getrandbits`, with our own rejection sampling and a lazy
Fisher–Yates shuffle instead of `random.sample`/`randrange`, whose internals CPython may change.

    >>> from kiban.evaluate.tasks.base import Doc
    >>> pool = [Doc(str(i), {}) for i in range(10)]
    >>> [d.id for d in sample_fewshot(pool, 3, seed=0, exclude_id="4")]  # never "4" itself
    ['6', '0', '8']
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # base.py imports this module, so Doc is imported for type checking only
    from kiban.evaluate.tasks.base import Doc

__all__ = ["SAMPLER", "sample_fewshot"]

# Recorded in each task's template hash; change it with the algorithm below.
SAMPLER = "kiban.sample_fewshot/1 (sha256(seed, doc id) -> MT19937 getrandbits, lazy Fisher-Yates)"


def sample_fewshot(pool: Sequence[Doc], k: int, *, seed: int, exclude_id: str) -> list[Doc]:
    """k documents from `pool` in sampled order, none with id `exclude_id`; fewer if the pool is
    smaller. Deterministic in (pool order, k, seed, exclude_id)."""
    if k <= 0 or not pool:
        return []
    rng = random.Random(_doc_seed(seed, exclude_id))
    n = len(pool)
    moved: dict[int, int] = {}  # lazy Fisher–Yates: position -> index now there, only where swapped
    shots: list[Doc] = []
    for i in range(n):
        j = i + _below(rng, n - i)
        picked = moved.get(j, j)
        moved[j] = moved.get(i, i)
        doc = pool[picked]
        if doc.id != exclude_id:
            shots.append(doc)
            if len(shots) == k:
                break
    return shots


def _doc_seed(seed: int, doc_id: str) -> int:
    """A 64-bit seed from the run seed and the document id (sha256: stable, unlike hash())."""
    digest = hashlib.sha256(f"{seed}\x00{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _below(rng: random.Random, n: int) -> int:
    """Uniform in [0, n) by rejection from getrandbits (no modulo bias)."""
    if n <= 1:
        return 0
    bits = (n - 1).bit_length()
    while True:
        r = rng.getrandbits(bits)
        if r < n:
            return r
