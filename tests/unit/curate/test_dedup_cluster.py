"""Stage 2: near-dup quality on seeded Japanese text, keep-first, determinism, partitioning, edges."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from test_minhash import edit, japanese_doc  # sibling test module: the seeded Japanese generator

from kiban.config import from_dict
from kiban.curate.dedup import (
    DedupConfig,
    DedupResult,
    MinHasher,
    char_ngram_jaccard,
    deduplicate,
    exact_key,
    keys_to_array,
)
from kiban.errors import ConfigError

CFG = DedupConfig()

Arrays = tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]


def stage1(docs: list[str], cuts: list[int], cfg: DedupConfig = CFG) -> Arrays:
    """What stage 1 stores per task (exact.npy, bands.npy, sigs.npy); task t = docs[cuts[t]:cuts[t+1]]."""
    mh = MinHasher(cfg)
    sketches = [mh.sketch(d) for d in docs]
    keys = keys_to_array([exact_key(d) for d in docs]).reshape(-1, 2)  # (n, 2) uint64
    sigs = np.array([s for s, _ in sketches], np.uint32).reshape(-1, cfg.num_perm)  # (n, num_perm)
    bands = np.array([b for _, b in sketches], np.uint64).reshape(-1, cfg.num_bands)  # (n, num_bands)
    bounds = list(zip(cuts[:-1], cuts[1:], strict=True))
    return [keys[a:b] for a, b in bounds], [bands[a:b] for a, b in bounds], [sigs[a:b] for a, b in bounds]


def run(arrays: Arrays, tmp_path: Path, cfg: DedupConfig = CFG) -> DedupResult:
    keys, bands, sigs = arrays
    return deduplicate(keys, bands, cfg=cfg, work_dir=tmp_path, signatures=sigs)


def kept_of(res: DedupResult, n: int) -> np.ndarray:
    """The document each document's cluster keeps.                   # (n,) int64"""
    out = np.arange(n)
    out[res.removed_pairs[:, 0]] = res.removed_pairs[:, 1]
    return out


def _pairs(seed: int = 1) -> list[str]:
    # 1000 families of (base, one edited variant): no transitivity, so each pair is judged alone.
    # Edit rates 0-20% give true char-5-gram Jaccard spread over ~0.2-1.0.
    rng = random.Random(seed)
    docs = []
    for _ in range(1000):
        base = japanese_doc(rng)
        docs += [base, edit(base, rng.uniform(0.0, 0.2), rng)]
    return docs


def test_exact_verification_cuts_sharply_at_the_threshold(tmp_path: Path) -> None:
    docs = _pairs()
    fetch = lambda idx: [docs[i] for i in idx]  # noqa: E731 - what the pipeline reads from docs.parquet
    keys, bands, sigs = stage1(docs, [0, 700, 700, 2000])
    res = deduplicate(keys, bands, cfg=CFG, work_dir=tmp_path, signatures=sigs, fetch_texts=fetch)
    true_j = np.array([char_ngram_jaccard(docs[i], docs[i + 1], 5) for i in range(0, len(docs), 2)])
    merged = ~np.concatenate(res.keep)[1::2]  # variant removed as a duplicate of its base
    assert np.all(res.removed_pairs[:, 0] // 2 == res.removed_pairs[:, 1] // 2), "merged across families"
    tp = np.sum(merged & (true_j >= 0.8))
    recall, precision = tp / np.sum(true_j >= 0.8), tp / merged.sum()  # strict: nothing below 0.8 counts
    assert recall >= 0.95, recall
    assert precision == 1.0, precision
    assert res.near_removed + res.exact_removed == merged.sum()
    assert res.rejected_pairs > 0 and res.candidate_pairs >= res.near_removed


def test_signature_verification_alone_on_japanese_pairs(tmp_path: Path) -> None:
    docs = _pairs()
    cfg = DedupConfig(verify_threshold=0.75, exact_threshold=None)
    res = run(stage1(docs, [0, 700, 700, 2000], cfg), tmp_path, cfg)
    true_j = np.array([char_ngram_jaccard(docs[i], docs[i + 1], 5) for i in range(0, len(docs), 2)])
    merged = ~np.concatenate(res.keep)[1::2]
    tp = np.sum(merged & (true_j >= 0.8))
    fp = np.sum(merged & (true_j < 0.7))  # 0.7-0.8 is the estimate's margin: neither counted
    recall, precision = tp / np.sum(true_j >= 0.8), tp / (tp + fp)
    assert recall >= 0.90, recall
    assert precision >= 0.95, precision
    assert np.sum(merged & (true_j < 0.5)) <= 0.01 * np.sum(true_j < 0.5)


def make_families(seed: int = 0, n_fam: int = 60) -> tuple[list[str], list[int]]:
    """Families of a base, 1-3 light variants (J >= ~0.8) and one exact copy, shuffled."""
    rng = random.Random(seed)
    docs, fam = [], []
    for f in range(n_fam):
        base = japanese_doc(rng, 400)
        members = [base, base] + [edit(base, rng.uniform(0.0, 0.02), rng) for _ in range(rng.randint(1, 3))]
        docs += members
        fam += [f] * len(members)
    order = list(range(len(docs)))
    rng.shuffle(order)
    return [docs[i] for i in order], [fam[i] for i in order]


def test_keeps_first_in_canonical_order(tmp_path: Path) -> None:
    docs, fam = make_families()
    n = len(docs)
    res = run(stage1(docs, [0, 50, 51, 120, n]), tmp_path)
    keep = np.concatenate(res.keep)
    first_of_family = {f: min(i for i in range(n) if fam[i] == f) for f in set(fam)}
    assert np.flatnonzero(keep).tolist() == sorted(first_of_family.values())
    kept = kept_of(res, n)
    assert all(kept[i] == first_of_family[fam[i]] for i in range(n))
    assert np.all(keep[res.removed_pairs[:, 1]]) and np.all(res.removed_pairs[:, 0] > res.removed_pairs[:, 1])
    assert res.clusters == len(first_of_family)
    assert res.exact_removed >= len(first_of_family)  # the copies, and variants that drew no edit
    assert res.exact_removed + res.near_removed == n - keep.sum()
    assert set(res.kind.tolist()) == {1, 2}
    assert np.array_equal(res.removed_pairs[:, 0], np.sort(res.removed_pairs[:, 0]))


def test_exact_duplicate_of_a_near_removed_doc_points_at_the_kept_one(tmp_path: Path) -> None:
    rng = random.Random(5)
    base = japanese_doc(rng, 500)
    variant = edit(base, 0.01, rng)
    docs = [base, variant, "無関係な文書。" * 30, variant]
    res = run(stage1(docs, [0, 2, 4]), tmp_path)
    assert res.removed_pairs.tolist() == [[1, 0], [3, 0]]
    assert res.kind.tolist() == [2, 1]
    assert res.clusters == 1


def test_deterministic(tmp_path: Path) -> None:
    docs, _ = make_families(seed=3)
    arrays = stage1(docs, [0, 40, len(docs)])
    a, b = run(arrays, tmp_path), run(arrays, tmp_path)
    assert np.array_equal(a.removed_pairs, b.removed_pairs) and np.array_equal(a.kind, b.kind)
    assert all(np.array_equal(x, y) for x, y in zip(a.keep, b.keep, strict=True))


def test_memory_mapped_inputs(tmp_path: Path) -> None:
    docs, _ = make_families(seed=4, n_fam=10)
    keys, bands, sigs = stage1(docs, [0, len(docs)])
    loaded = []
    for name, arr in (("exact", keys[0]), ("bands", bands[0]), ("sigs", sigs[0])):
        np.save(tmp_path / f"{name}.npy", arr)
        loaded.append([np.load(tmp_path / f"{name}.npy", mmap_mode="r")])
    work = tmp_path / "work"
    res = deduplicate(loaded[0], loaded[1], cfg=CFG, work_dir=work, signatures=loaded[2])
    ref = run((keys, bands, sigs), work)
    assert np.array_equal(res.removed_pairs, ref.removed_pairs)


def synthetic(n: int, seed: int = 0) -> Arrays:
    """Random stage-1 arrays with planted exact and near duplicates (no text: fast at scale)."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**63, (n, 2), dtype=np.uint64)
    sigs = rng.integers(0, 2**32, (n, CFG.num_perm), dtype=np.uint64)
    src, dst = rng.integers(0, n, n // 10), rng.integers(0, n, n // 10)
    keys[dst[: n // 40]] = keys[src[: n // 40]]  # exact copies
    sigs[dst[: n // 40]] = sigs[src[: n // 40]]
    near = rng.random((n // 10, CFG.num_perm)) < 0.9  # ~90% of slots shared: J ≈ 0.9
    near[: n // 40] = False
    sigs[dst] = np.where(near, sigs[src], sigs[dst])
    bad = rng.random((n // 10, CFG.num_perm)) < 0.5  # J ≈ 0.5: a band may collide, verify rejects
    sigs[src[::7]] = np.where(bad[::7], sigs[dst[::7]], sigs[src[::7]])
    mh = MinHasher(CFG)
    bands = np.stack([mh.bands_of(s) for s in sigs])  # (n, num_bands)
    cuts = [0, n // 3, n // 3, n]
    bounds = list(zip(cuts[:-1], cuts[1:], strict=True))
    return (
        [keys[a:b] for a, b in bounds],
        [bands[a:b] for a, b in bounds],
        [sigs[a:b].astype(np.uint32) for a, b in bounds],
    )


def test_partitioned_equals_in_memory(tmp_path: Path) -> None:
    arrays = synthetic(30_000)
    small = run(arrays, tmp_path, DedupConfig(max_memory_mb=1))
    big = run(arrays, tmp_path)
    assert small.partitions > 1 and big.partitions == 1
    assert np.array_equal(small.removed_pairs, big.removed_pairs) and np.array_equal(small.kind, big.kind)
    assert all(np.array_equal(x, y) for x, y in zip(small.keep, big.keep, strict=True))
    assert (small.candidate_pairs, small.rejected_pairs) == (big.candidate_pairs, big.rejected_pairs)
    assert big.exact_removed > 0 and big.near_removed > 0 and big.rejected_pairs > 0
    assert list(tmp_path.iterdir()) == []


def test_verify_drops_false_candidates(tmp_path: Path) -> None:
    arrays = synthetic(5_000, seed=1)
    keys, bands, sigs = arrays
    loose = deduplicate(keys, bands, cfg=DedupConfig(verify=False), work_dir=tmp_path)
    strict = run(arrays, tmp_path)
    assert strict.rejected_pairs > 0 and loose.near_removed > strict.near_removed


def test_empty_inputs(tmp_path: Path) -> None:
    res = deduplicate([], [], cfg=CFG, work_dir=tmp_path, signatures=[])
    assert res.keep == [] and (res.exact_removed, res.near_removed, res.clusters) == (0, 0, 0)
    assert res.removed_pairs.shape == (0, 2) and res.removed_pairs.dtype == np.int64
    assert res.kind.shape == (0,) and res.kind.dtype == np.uint8


def test_task_with_zero_docs(tmp_path: Path) -> None:
    docs = ["猫が好きです。" * 20, "猫が好きです。" * 20]
    keys, bands, sigs = stage1(docs, [0, 0, 1, 1, 2, 2])
    assert (
        keys[0].shape == (0, 2)
        and bands[0].shape == (0, DedupConfig().num_bands)
        and sigs[0].shape == (0, 112)
    )
    res = deduplicate(keys, bands, cfg=CFG, work_dir=tmp_path, signatures=sigs)
    assert [k.tolist() for k in res.keep] == [[], [True], [], [False], []]
    assert res.removed_pairs.tolist() == [[1, 0]]


def test_input_errors_name_the_task(tmp_path: Path) -> None:
    keys, bands, sigs = stage1(["a", "b"], [0, 1, 2])
    with pytest.raises(ValueError, match="needs signatures"):
        deduplicate(keys, bands, cfg=CFG, work_dir=tmp_path)
    with pytest.raises(ValueError, match=r"band_hashes\[1\]"):
        deduplicate(keys, [bands[0], bands[1][:, :3]], cfg=CFG, work_dir=tmp_path, signatures=sigs)
    with pytest.raises(ValueError, match=r"signatures\[0\]"):
        deduplicate(keys, bands, cfg=CFG, work_dir=tmp_path, signatures=[sigs[0][:, :5], sigs[1]])
    with pytest.raises(ValueError, match="2 tasks"):
        deduplicate(keys, bands[:1], cfg=CFG, work_dir=tmp_path, signatures=sigs)


@pytest.mark.parametrize(
    ("field", "value"),
    [("ngram", 0), ("num_bands", 0), ("rows_per_band", 0), ("max_memory_mb", 0), ("verify_threshold", 0.0)],
)
def test_config_checks_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        DedupConfig(**{field: value})
    with pytest.raises(ConfigError, match=field):
        from_dict(DedupConfig, {field: value}, where="curate.yaml")


def test_components_match_a_reference_union_find() -> None:
    from kiban.curate.dedup.cluster import _components

    rng = np.random.default_rng(7)
    n = 3000
    u = rng.integers(0, n, 2500)
    v = rng.integers(0, n, 2500)
    chain = np.arange(1, 500)  # a long path needs pointer jumping, not one hook per round
    u, v = np.concatenate([u, chain]), np.concatenate([v, chain - 1])
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(u.tolist(), v.tolist(), strict=True):
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    nodes, root = _components(u, v)
    assert nodes.tolist() == sorted(set(u.tolist()) | set(v.tolist()))
    assert root.tolist() == [find(x) for x in nodes.tolist()]


def test_runs_need_equal_band_and_hash() -> None:
    from kiban.curate.dedup.cluster import _REC, _runs

    rec = np.zeros(7, _REC)
    rec["k0"] = [0, 1, 0, 0, 2, 2, 1]  # band
    rec["k1"] = [5, 5, 9, 5, 7, 7, 3]  # hash: 5 in bands 0 and 1 is no collision across bands
    rec["i"] = [40, 41, 42, 12, 30, 20, 10]
    member, first, prev = _runs(rec)
    assert member.tolist() == [40, 30]  # (band 0, hash 5): 12 < 40; (band 2, hash 7): 20 < 30
    assert first.tolist() == [12, 20] and prev.tolist() == [12, 20]
    rec3 = np.zeros(4, _REC)
    rec3["k1"] = 8
    rec3["i"] = [9, 3, 6, 1]
    member, first, prev = _runs(rec3)
    assert member.tolist() == [3, 6, 9] and first.tolist() == [1, 1, 1] and prev.tolist() == [1, 3, 6]
