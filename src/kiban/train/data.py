"""Training batches from memory-mapped token shards, as pure functions of (step, micro, rank).

A batch is never drawn from a stateful iterator: sample `j` of optimizer step `s` is the window
starting at a position drawn by a generator seeded with `(seed, s, j)`. So a resumed run reads
exactly the batches it would have read, and the global batch is the same however it is split
over processes and micro-batches (rank `r`'s micro-batch `m` holds samples
`(m × world + r) × micro_batch …`, disjoint from every other rank's).

    >>> import numpy as np
    >>> w = Windows([np.arange(100, dtype=np.uint16)], [Segment(0, 0, 50)], seq_len=8)
    >>> w.n_windows
    42
    >>> x, y = train_batch(w, step=3, micro=0, rank=0, micro_batch=2, world_size=1, seed=0)
    >>> x.shape, x.dtype, bool((y[:, :-1] == x[:, 1:]).all())
    (torch.Size([2, 8]), torch.int64, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from kiban.errors import ConfigError, DataError
from kiban.tokenizer.shards import TokenShards

_TRAIN, _EVAL = 0, 1  # first key word: train and eval draws never share a generator
_REPLAY = 2  # appended to a sample's key for its replay-or-not draw


@dataclass(frozen=True)
class Segment:
    """Tokens [start, end) of shard `shard`."""

    shard: int
    start: int
    end: int


def split_heldout(shards: TokenShards, eval_fraction: float) -> tuple[list[Segment], list[Segment]]:
    """(train, eval) segments: the last `eval_fraction` of each shard's documents is held out.

    At least one document of a shard stays in training. Held-out documents are a contiguous tail,
    so no training window (which may cross document boundaries) reads a held-out token.
    """
    train, held = [], []
    for i in range(len(shards)):
        n_tokens = int(shards.shard(i).shape[0])
        starts = shards.documents(i)
        n_docs = int(starts.shape[0])
        n_eval = min(math.ceil(n_docs * eval_fraction), max(0, n_docs - 1)) if eval_fraction > 0 else 0
        cut = int(starts[n_docs - n_eval]) if n_eval else n_tokens
        if cut > 0:
            train.append(Segment(i, 0, cut))
        if cut < n_tokens:
            held.append(Segment(i, cut, n_tokens))
    return train, held


def whole(shards: TokenShards) -> list[Segment]:
    return [Segment(i, 0, int(shards.shard(i).shape[0])) for i in range(len(shards))]


class Windows:
    """All windows of seq_len + 1 tokens lying inside the given segments, numbered 0 … n_windows-1."""

    def __init__(self, tokens: list[np.ndarray], segments: list[Segment], seq_len: int) -> None:
        self.tokens, self.seq_len = tokens, seq_len
        self.segments = [s for s in segments if s.end - s.start > seq_len]
        counts = np.array([s.end - s.start - seq_len for s in self.segments], dtype=np.int64)
        self._cum = np.cumsum(counts)
        self.n_windows = int(self._cum[-1]) if len(counts) else 0

    @classmethod
    def from_shards(cls, shards: TokenShards, segments: list[Segment], seq_len: int, *, what: str) -> Windows:
        w = cls([shards.shard(i) for i in range(len(shards))], segments, seq_len)
        if w.n_windows == 0:
            n = sum(s.end - s.start for s in segments)
            raise DataError(
                f"{shards.directory}: the {what} data ({n} tokens) has no window of data.seq_len + 1 = "
                f"{seq_len + 1} tokens inside one shard; use a shorter data.seq_len or more data"
            )
        return w

    def window(self, k: int) -> np.ndarray:
        """Window `k`: seq_len + 1 tokens as int64."""
        seg_i = int(np.searchsorted(self._cum, k, side="right"))
        seg = self.segments[seg_i]
        offset = k - (int(self._cum[seg_i - 1]) if seg_i else 0)
        start = seg.start + offset
        return np.asarray(self.tokens[seg.shard][start : start + self.seq_len + 1], dtype=np.int64)

    def draw(self, key: tuple[int, ...]) -> np.ndarray:
        """The window a generator seeded with `key` picks (uniform over all windows)."""
        k = int(np.random.default_rng(list(key)).integers(0, self.n_windows))
        return self.window(k)


class Mixture:
    """Continual pre-training with replay: each sample comes from `replay` with probability `ratio`
    (its own seeded draw, so the mix is a pure function of the sample's key), else from `primary`.

        >>> a = Windows([np.zeros(50, dtype=np.uint16)], [Segment(0, 0, 50)], seq_len=8)
        >>> b = Windows([np.ones(50, dtype=np.uint16)], [Segment(0, 0, 50)], seq_len=8)
        >>> m = Mixture(a, b, 0.25)
        >>> abs(sum(int(m.draw((0, 0, 0, j))[0]) for j in range(4000)) / 4000 - 0.25) < 0.02
        True
    """

    def __init__(self, primary: Windows, replay: Windows, ratio: float) -> None:
        self.primary, self.replay, self.ratio = primary, replay, ratio
        self.seq_len = primary.seq_len

    def draw(self, key: tuple[int, ...]) -> np.ndarray:
        from_replay = np.random.default_rng([*key, _REPLAY]).random() < self.ratio
        return (self.replay if from_replay else self.primary).draw(key)


def _stack(rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    xy = torch.from_numpy(np.stack(rows))  # (B, T + 1)
    return xy[:, :-1].contiguous(), xy[:, 1:].contiguous()  # (B, T), (B, T)


def train_batch(
    windows: Windows | Mixture,
    *,
    step: int,
    micro: int,
    rank: int,
    micro_batch: int,
    world_size: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), int64 (micro_batch, seq_len): micro-batch `micro` of `rank` at `step`."""
    first = (micro * world_size + rank) * micro_batch
    return _stack([windows.draw((seed, _TRAIN, step, first + b)) for b in range(micro_batch)])


def eval_batch(
    windows: Windows, *, index: int, micro_batch: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out micro-batch `index`: the same windows at every evaluation."""
    return _stack([windows.draw((seed, _EVAL, index, b)) for b in range(micro_batch)])


def check_compatible(train: TokenShards, held: TokenShards) -> None:
    """Refuse held-out shards made with another tokenizer than the training shards."""
    if (held.tokenizer_sha256, held.vocab_size) != (train.tokenizer_sha256, train.vocab_size):
        raise ConfigError(
            f"data.eval_shards ({held.directory}) was made with another tokenizer than data.shards "
            f"({train.directory}): tokenizer_sha256 {held.tokenizer_sha256[:12]}… vs "
            f"{train.tokenizer_sha256[:12]}…, vocab_size {held.vocab_size} vs {train.vocab_size}"
        )
