"""Exact dedup: identical (normalised) texts share a key; stage 2 keeps the first of each group."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from kiban.curate.dedup import DedupConfig, MinHasher, deduplicate, exact_key, keys_to_array

EXACT_ONLY = DedupConfig(near=False)


def normalize(text: str) -> str:
    # Stand-in for kiban.text.normalize_for_hash (written elsewhere): NFKC + collapsed whitespace.
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def stage1(
    tasks: list[list[str]], cfg: DedupConfig = EXACT_ONLY
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    mh = MinHasher(cfg)
    keys = [keys_to_array([exact_key(normalize(t)) for t in docs]).reshape(-1, 2) for docs in tasks]
    bands = [
        np.array([mh.band_hashes(t) for t in docs], np.uint64).reshape(-1, cfg.num_bands) for docs in tasks
    ]
    return keys, bands


def test_exact_key_is_16_bytes_and_stable() -> None:
    assert len(exact_key("吾輩は猫である")) == 16
    assert exact_key("吾輩は猫である") == exact_key("吾輩は猫である") != exact_key("吾輩は犬である")
    # golden: xxh3-128 must not drift between releases, or stored exact.npy files are invalid
    assert exact_key("").hex() == "99aa06d3014798d86001c324468d497f"


def test_keys_to_array() -> None:
    arr = keys_to_array([exact_key("a"), exact_key("b")])
    assert arr.shape == (2, 2) and arr.dtype == np.uint64
    assert arr[0].tobytes() == exact_key("a")
    assert keys_to_array([]).shape == (0, 2)
    with pytest.raises(ValueError, match="16 bytes"):
        keys_to_array([b"short"])


def test_groups_identical_after_normalization_and_keeps_first(tmp_path: Path) -> None:
    tasks = [
        ["ＡＢＣ１２３です。", "別の文書です。", "abc"],  # 0 1 2
        ["ABC123です。", "  別の文書です。 ", "ｱｲｳ"],  # 3 4 5
        ["アイウ", "ABC123です。"],  # 6 7
    ]
    keys, bands = stage1(tasks)
    res = deduplicate(keys, bands, cfg=EXACT_ONLY, work_dir=tmp_path)
    assert [k.tolist() for k in res.keep] == [[True, True, True], [False, False, True], [False, False]]
    assert res.removed_pairs.tolist() == [[3, 0], [4, 1], [6, 5], [7, 0]]
    assert res.kind.tolist() == [1, 1, 1, 1]
    assert (res.exact_removed, res.near_removed, res.clusters) == (4, 0, 3)
    assert res.removed_pairs.dtype == np.int64 and res.kind.dtype == np.uint8


def test_exact_disabled(tmp_path: Path) -> None:
    keys, bands = stage1([["同じ", "同じ"]])
    res = deduplicate(keys, bands, cfg=DedupConfig(exact=False, near=False), work_dir=tmp_path)
    assert res.keep[0].tolist() == [True, True] and res.exact_removed == 0


def test_exact_partitioned_equals_in_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 60_000  # 60k x 56 bytes > 1 MiB, so max_memory_mb=1 partitions the exact pass
    keys = rng.integers(0, 2**63, (n, 2), dtype=np.uint64)
    dup_from = rng.integers(0, n, 5_000)
    dup_to = rng.integers(0, n, 5_000)
    keys[dup_to] = keys[dup_from]
    split = [keys[:20_000], keys[20_000:20_000], keys[20_000:]]
    bands = [np.zeros((len(k), DedupConfig().num_bands), np.uint64) for k in split]
    small = deduplicate(split, bands, cfg=DedupConfig(near=False, max_memory_mb=1), work_dir=tmp_path)
    big = deduplicate(split, bands, cfg=EXACT_ONLY, work_dir=tmp_path)
    assert np.array_equal(small.removed_pairs, big.removed_pairs)
    assert all(np.array_equal(a, b) for a, b in zip(small.keep, big.keep, strict=True))
    # the kept document of every group is the smallest index holding that key
    _, first = np.unique(keys, axis=0, return_index=True)
    assert np.array_equal(np.sort(first), np.flatnonzero(np.concatenate(big.keep)))
    assert list(tmp_path.iterdir()) == []  # partition files are cleaned up
