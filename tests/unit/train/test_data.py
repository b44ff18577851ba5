"""Batches are pure functions of (seed, step, micro, rank): deterministic, disjoint across ranks,
independent of how the global batch is split, and never read held-out tokens."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import torch

from kiban.errors import ConfigError, DataError
from kiban.tokenizer.shards import TokenShards, write_shard, write_tokens_manifest
from kiban.train import data as data_module
from kiban.train.data import Windows, check_compatible, eval_batch, split_heldout, train_batch, whole

EOS = 2


def write_shards(
    directory: Path, n_shards: int = 2, n_docs: int = 30, tokenizer_sha256: str = "0" * 64
) -> Path:
    """Documents of consecutive ids (document k of shard s starts at 3 + 7·s + k), each ending in EOS."""
    rng = np.random.default_rng(0)
    entries = []
    for s in range(n_shards):
        docs = [
            np.array([3 + (7 * s + k + i) % 500 for i in range(int(rng.integers(10, 60)))] + [EOS])
            for k in range(n_docs)
        ]
        entries.append(write_shard(directory, s, docs, "uint16"))
    write_tokens_manifest(
        directory, entries, vocab_size=512, bos_id=1, eos_id=EOS, pad_id=0, tokenizer_sha256=tokenizer_sha256
    )
    return directory


@pytest.fixture
def shards(tmp_path: Path) -> TokenShards:
    return TokenShards.open(write_shards(tmp_path / "tokens"))


def test_doctests() -> None:
    assert doctest.testmod(data_module).failed == 0


def _batch(
    w: Windows, step: int, micro: int = 0, rank: int = 0, world: int = 1, seed: int = 0
) -> torch.Tensor:
    x, y = train_batch(w, step=step, micro=micro, rank=rank, micro_batch=4, world_size=world, seed=seed)
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    return torch.cat([x, y[:, -1:]], dim=1)


def test_same_step_same_batch_other_step_other_batch(shards: TokenShards) -> None:
    w = Windows.from_shards(shards, whole(shards), 16, what="training")
    assert torch.equal(_batch(w, 5), _batch(w, 5))
    assert not torch.equal(_batch(w, 5), _batch(w, 6))
    assert not torch.equal(_batch(w, 5, seed=0), _batch(w, 5, seed=1))
    # Order of calls does not matter: nothing is consumed from an iterator.
    later_first = [_batch(w, s) for s in (9, 3, 7)]
    assert all(torch.equal(a, _batch(w, s)) for a, s in zip(later_first, (9, 3, 7), strict=True))


def test_ranks_disjoint_and_global_batch_independent_of_split(shards: TokenShards) -> None:
    w = Windows.from_shards(shards, whole(shards), 16, what="training")
    # 2 ranks × 1 micro-batch == 1 rank × 2 micro-batches, sample for sample.
    r0, r1 = _batch(w, 4, rank=0, world=2), _batch(w, 4, rank=1, world=2)
    m0, m1 = _batch(w, 4, micro=0), _batch(w, 4, micro=1)
    assert torch.equal(r0, m0) and torch.equal(r1, m1)
    assert not torch.equal(r0, r1)
    rows = {tuple(r.tolist()) for r in torch.cat([r0, r1])}
    assert len(rows) == 8  # eight distinct windows


def test_windows_stay_inside_one_shard(shards: TokenShards) -> None:
    w = Windows.from_shards(shards, whole(shards), 16, what="training")
    lengths = [int(shards.shard(i).shape[0]) for i in range(len(shards))]
    assert w.n_windows == sum(n - 16 for n in lengths)
    last_of_shard0 = w.window(lengths[0] - 17)
    assert np.array_equal(last_of_shard0, np.asarray(shards.shard(0)[-17:], dtype=np.int64))
    assert np.array_equal(w.window(lengths[0] - 16), np.asarray(shards.shard(1)[:17], dtype=np.int64))


def test_heldout_tail_is_never_trained_on(shards: TokenShards) -> None:
    train, held = split_heldout(shards, 0.1)
    for i, (t, h) in enumerate(zip(train, held, strict=True)):
        starts = shards.documents(i)
        assert t.shard == h.shard == i and t.start == 0 and t.end == h.start
        assert h.start == int(starts[-3])  # ceil(30 × 0.1) = 3 documents held out
        assert h.end == shards.shard(i).shape[0]
    w = Windows.from_shards(shards, train, 16, what="training")
    for k in range(w.n_windows):
        seg_i = int(np.searchsorted(w._cum, k, side="right"))
        start = train[seg_i].start + k - (int(w._cum[seg_i - 1]) if seg_i else 0)
        assert start + 17 <= held[seg_i].start
    assert split_heldout(shards, 0.0)[1] == []


def test_eval_batches_are_fixed_and_distinct_from_training(shards: TokenShards) -> None:
    train, held = split_heldout(shards, 0.2)
    w = Windows.from_shards(shards, held, 8, what="held-out")
    a, b = eval_batch(w, index=0, micro_batch=2, seed=0), eval_batch(w, index=0, micro_batch=2, seed=0)
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], eval_batch(w, index=1, micro_batch=2, seed=0)[0])


def test_data_shorter_than_a_window_is_refused(shards: TokenShards) -> None:
    with pytest.raises(DataError, match=r"data\.seq_len"):
        Windows.from_shards(shards, whole(shards), 100_000, what="training")


def test_eval_shards_of_another_tokenizer_are_refused(tmp_path: Path, shards: TokenShards) -> None:
    other = TokenShards.open(write_shards(tmp_path / "other", tokenizer_sha256="f" * 64))
    with pytest.raises(ConfigError, match=r"data\.eval_shards"):
        check_compatible(shards, other)
    check_compatible(shards, shards)
