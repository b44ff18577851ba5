"""Stage 2 of dedup: find duplicate clusters across the whole corpus and keep the first of each.

Input: per stage-1 task t, arrays whose row r is document (t, r); the canonical order is
(task, row), and global index = offsets[t] + r.

1. exact: records (key_hi, key_lo, idx) are sorted; in every run of equal keys the first
   (smallest idx) is kept and the rest are removed.
2. near, among exact survivors: per band, records (band, hash, idx) are sorted; every run of equal
   (band, hash) gives candidate edges member -> run's first and member -> previous member.
   With `verify`, an edge survives only if its two full MinHash signatures agree on at least
   `verify_threshold` of their slots. The surviving edges' connected components (min-label
   propagation with pointer jumping, in numpy) each keep their smallest idx.

Everything is sorts and array ops on numbers, so the result depends only on the input arrays.
When the records do not fit `max_memory_mb`, they are first spread by hash over partition files in
`work_dir` and one partition is sorted at a time; equal keys always land in the same partition,
so both paths find the same runs. Memory per document: see docs/dedup.md.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiban.curate.dedup.verify import FetchTexts, exact_pairs_at_least

# One sortable record: two 64-bit key words and the global document index.
_REC = np.dtype([("k0", "<u8"), ("k1", "<u8"), ("i", "<i8")])
# Finding the runs in m records holds the records (24 bytes each) and, at the peak, the argsort
# permutation, a sorted copy of k1 and two masks: ~26 bytes more per record, plus the colliding
# subset. We plan with 72 for slack.
_SORT_BYTES_PER_REC = 72
_MAX_PARTS = 512  # open partition files at once; beyond this the budget is exceeded, not the fd limit
_EMPTY_I64 = np.empty(0, np.int64)
_EMPTY_I64.flags.writeable = False


@dataclass
class DedupConfig:
    exact: bool = True
    """Remove documents whose normalised text is identical to an earlier one."""
    near: bool = True
    """Remove near-duplicates (MinHash LSH) among the exact survivors."""
    ngram: int = 5
    """Shingle length in characters. Japanese has no spaces, so word n-grams (datatrove's default,
    5 words) would need a segmenter; 5 characters is about 2-3 Japanese words, long enough that
    unrelated Japanese text shares few shingles and short enough that one edit breaks only 5."""
    num_bands: int = 16
    """LSH bands b. Two documents become candidates if all rows of any one band agree."""
    rows_per_band: int = 7
    """Rows per band r; b*r = 112 permutations. Threshold ≈ (1/b)^(1/r) ≈ 0.67; candidates are then
    verified on the full signature, so a lower LSH threshold buys recall without losing precision
    (16×7 measured recall 0.98–1.00 at J ≥ 0.8 against 14×8's 0.93–1.00; docs/dedup.md)."""
    seed: int = 1
    """Seed of the permutations and band hashes: stage 1 and stage 2 must use the same one."""
    max_memory_mb: int = 1024
    """Memory budget for stage 2's sorts; beyond it records are partitioned to files in work_dir."""
    verify: bool = True
    """Drop LSH candidate edges whose full signatures estimate Jaccard < verify_threshold. Needs
    stage 1 to store `sigs.npy` (n, num_perm) uint32 = 448 bytes/doc at the default 112 perms."""
    verify_threshold: float = 0.7
    """Minimum estimated Jaccard for a verified edge (0 < t <= 1). With `exact_threshold` set this is
    a cheap pre-filter, placed ~2.5 standard errors (0.04 at 112 slots) below it so that it loses
    almost no true pair; without it, this is the cut itself (0.75 then balances recall at 0.8
    against merges at 0.7, docs/dedup.md)."""
    exact_threshold: float | None = 0.8
    """Candidates that pass are checked on the exact character n-gram Jaccard of their texts, read
    back from stage 1's output; a near-duplicate is a pair with Jaccard ≥ this. None skips the
    check (faster; the cut is then as fuzzy as the MinHash estimate)."""

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        if self.num_bands < 1:
            raise ValueError(f"num_bands must be >= 1, got {self.num_bands}")
        if self.rows_per_band < 1:
            raise ValueError(f"rows_per_band must be >= 1, got {self.rows_per_band}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")
        if self.max_memory_mb < 1:
            raise ValueError(f"max_memory_mb must be >= 1, got {self.max_memory_mb}")
        if not 0.0 < self.verify_threshold <= 1.0:
            raise ValueError(f"verify_threshold must be in (0, 1], got {self.verify_threshold}")
        if self.exact_threshold is not None and not 0.0 < self.exact_threshold <= 1.0:
            raise ValueError(f"exact_threshold must be in (0, 1] or null, got {self.exact_threshold}")

    @property
    def num_perm(self) -> int:
        return self.num_bands * self.rows_per_band


@dataclass
class DedupResult:
    keep: list[np.ndarray]
    """Per task: True for documents to keep.                          # (n_t,) bool"""
    exact_removed: int
    near_removed: int
    clusters: int
    """Clusters (exact and near merged) with at least two members; each keeps one document."""
    removed_pairs: np.ndarray
    """(removed_doc, kept_doc) global indices, sorted; kept_doc is the document its cluster keeps
    (always keep=True), which for kind 1 is the identical text unless that text was itself
    near-removed.                                                      # (k, 2) int64"""
    kind: np.ndarray
    """Why removed_pairs[j] was removed: 1 = exact, 2 = near.         # (k,) uint8"""
    candidate_pairs: int = 0
    """Distinct LSH candidate edges before verification."""
    rejected_pairs: int = 0
    """Candidate edges dropped by verification."""
    partitions: int = 1
    """Partitions of the near pass (1 = sorted in memory)."""


def deduplicate(
    exact_keys: Sequence[np.ndarray],
    band_hashes: Sequence[np.ndarray],
    *,
    cfg: DedupConfig,
    work_dir: Path,
    signatures: Sequence[np.ndarray] | None = None,
    fetch_texts: FetchTexts | None = None,
) -> DedupResult:
    """Decide which documents to keep. Per task t: exact_keys[t] (n_t, 2) uint64, band_hashes[t]
    (n_t, num_bands) uint64, signatures[t] (n_t, num_perm) uint32 (needed when cfg.verify and
    cfg.near). Arrays may be memory-mapped; they are read in chunks. `fetch_texts` (global indices
    → texts) enables the exact check of `cfg.exact_threshold`; without it that check is skipped."""
    sizes = _check_inputs(exact_keys, band_hashes, signatures, cfg)
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)  # (T+1,)
    n = int(offsets[-1])
    keep = np.ones(n, bool)  # (N,)
    budget = cfg.max_memory_mb * 2**20
    work_dir = Path(work_dir)

    ex_member, ex_root = _EMPTY_I64, _EMPTY_I64
    if cfg.exact and n:
        ex_member, ex_root = _exact_pass(exact_keys, offsets, budget, work_dir)
        keep[ex_member] = False

    near_member, near_root = _EMPTY_I64, _EMPTY_I64
    candidates = rejected = 0
    near_parts = 1
    if cfg.near and n:
        near_parts = _num_parts(int(keep.sum()), cfg.num_bands, budget)
        records = _near_records(band_hashes, offsets, keep, cfg.num_bands, budget, near_parts, work_dir)
        u, v = _candidate_edges(records, budget)  # (E,) each, u > v
        candidates = len(u)
        if cfg.verify and len(u):
            assert signatures is not None  # _check_inputs
            ok = _verify(u, v, signatures, offsets, cfg.verify_threshold, budget)
            rejected = int(len(u) - ok.sum())
            u, v = u[ok], v[ok]
        if cfg.exact_threshold is not None and fetch_texts is not None and len(u):
            ok = exact_pairs_at_least(u, v, fetch_texts, ngram=cfg.ngram, threshold=cfg.exact_threshold)
            rejected += int(len(u) - ok.sum())
            u, v = u[ok], v[ok]
        nodes, root = _components(u, v)
        removed = nodes != root
        near_member, near_root = nodes[removed], root[removed]  # near_member sorted
        keep[near_member] = False

    # An exact duplicate's kept document is its identical text's, or that text's near cluster's.
    ex_kept = ex_root.copy()
    if len(near_member) and len(ex_root):
        pos = np.minimum(np.searchsorted(near_member, ex_root), len(near_member) - 1)
        hit = near_member[pos] == ex_root
        ex_kept[hit] = near_root[pos[hit]]

    removed_doc = np.concatenate([ex_member, near_member])
    kept_doc = np.concatenate([ex_kept, near_root])
    kind = np.concatenate([np.full(len(ex_member), 1, np.uint8), np.full(len(near_member), 2, np.uint8)])
    order = np.argsort(removed_doc, kind="stable")  # every removed doc appears once
    pairs = np.stack([removed_doc[order], kept_doc[order]], axis=1).astype(np.int64).reshape(-1, 2)
    return DedupResult(
        keep=[keep[offsets[t] : offsets[t + 1]].copy() for t in range(len(sizes))],
        exact_removed=len(ex_member),
        near_removed=len(near_member),
        clusters=len(np.unique(kept_doc)),
        removed_pairs=pairs,
        kind=kind[order],
        candidate_pairs=candidates,
        rejected_pairs=rejected,
        partitions=near_parts,
    )


def _check_inputs(
    exact_keys: Sequence[np.ndarray],
    band_hashes: Sequence[np.ndarray],
    signatures: Sequence[np.ndarray] | None,
    cfg: DedupConfig,
) -> list[int]:
    if len(exact_keys) != len(band_hashes):
        raise ValueError(f"exact_keys has {len(exact_keys)} tasks but band_hashes has {len(band_hashes)}")
    need_sigs = cfg.near and cfg.verify
    if need_sigs and signatures is None:
        raise ValueError("verify=True needs signatures (stage 1's sigs.npy); pass them or set verify=False")
    if signatures is not None and len(signatures) != len(exact_keys):
        raise ValueError(f"signatures has {len(signatures)} tasks but exact_keys has {len(exact_keys)}")
    sizes = []
    for t, (ek, bh) in enumerate(zip(exact_keys, band_hashes, strict=True)):
        n = ek.shape[0]
        if ek.ndim != 2 or ek.shape[1] != 2:
            raise ValueError(f"exact_keys[{t}] must have shape (n, 2), got {ek.shape}")
        if bh.ndim != 2 or bh.shape != (n, cfg.num_bands):
            raise ValueError(
                f"band_hashes[{t}] must have shape ({n}, num_bands={cfg.num_bands}), got {bh.shape}"
            )
        if need_sigs and signatures is not None and signatures[t].shape != (n, cfg.num_perm):
            raise ValueError(
                f"signatures[{t}] must have shape ({n}, num_perm={cfg.num_perm}), got {signatures[t].shape}"
            )
        sizes.append(int(n))
    return sizes


def _num_parts(n_docs: int, records_per_doc: int, budget_bytes: int) -> int:
    """1 when one sort of n_docs records fits half the budget, else enough partitions that one
    does. The other half is for the keep mask, candidate edges and the chunks being spilled."""
    half = budget_bytes // 2
    if n_docs * _SORT_BYTES_PER_REC <= half:
        return 1
    return min(_MAX_PARTS, math.ceil(n_docs * records_per_doc * _SORT_BYTES_PER_REC / half))


def _chunk_rows(budget_bytes: int, records_per_row: int) -> int:
    return max(1024, budget_bytes // (8 * _REC.itemsize * records_per_row))


def _exact_pass(
    exact_keys: Sequence[np.ndarray], offsets: np.ndarray, budget: int, work_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Every document whose key an earlier one has, and that earlier first one.  # (k,), (k,)"""
    parts = _num_parts(int(offsets[-1]), 1, budget)
    members, firsts = [_EMPTY_I64], [_EMPTY_I64]
    for rec in _exact_records(exact_keys, offsets, budget, parts, work_dir):
        member, first, _ = _runs(rec)
        del rec  # before the next partition is read
        members.append(member)
        firsts.append(first)
    return np.concatenate(members), np.concatenate(firsts)


def _candidate_edges(records: Iterator[np.ndarray], budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct LSH candidate edges (member, run's first) and (member, previous member) over
    every band's runs. A pair recurs in each band it collides in, so the list is compacted
    whenever it grows past 1/8 of the budget.                                # (E,), (E,)"""
    u, v = _EMPTY_I64, _EMPTY_I64
    u_list, v_list, pending = [], [], 0
    for rec in records:
        member, first, prev = _runs(rec)
        del rec  # before the next partition is read
        u_list += [member, member]
        v_list += [first, prev]
        pending += 2 * len(member)
        if pending * 16 * 8 > budget:
            u, v = _unique_edges(np.concatenate([u, *u_list]), np.concatenate([v, *v_list]))
            u_list, v_list, pending = [], [], 0
    return _unique_edges(np.concatenate([u, *u_list]), np.concatenate([v, *v_list]))


def _exact_records(
    exact_keys: Sequence[np.ndarray], offsets: np.ndarray, budget: int, parts: int, work_dir: Path
) -> Iterator[np.ndarray]:
    """Records (key_hi, key_lo, idx) of every document: one array, or one per partition."""

    def chunks() -> Iterator[np.ndarray]:
        step = _chunk_rows(budget, 1)
        for t, keys in enumerate(exact_keys):
            for a in range(0, keys.shape[0], step):
                k = np.asarray(keys[a : a + step])  # (m, 2) uint64
                rec = np.empty(len(k), _REC)
                rec["k0"], rec["k1"] = k[:, 0], k[:, 1]
                rec["i"] = offsets[t] + np.arange(a, a + len(k))
                yield rec

    if parts == 1:
        yield _collect(chunks(), int(offsets[-1]))
    else:
        yield from _partitioned(chunks(), parts, work_dir)


def _near_records(
    band_hashes: Sequence[np.ndarray],
    offsets: np.ndarray,
    alive: np.ndarray,
    num_bands: int,
    budget: int,
    parts: int,
    work_dir: Path,
) -> Iterator[np.ndarray]:
    """Records (band, hash, idx) of the alive documents: one array per band, or one per partition."""

    def chunks(b0: int, b1: int) -> Iterator[np.ndarray]:
        step = _chunk_rows(budget, b1 - b0)
        for t, bands in enumerate(band_hashes):
            for a in range(0, bands.shape[0], step):
                h = np.asarray(bands[a : a + step, b0:b1])  # (m, b1-b0) uint64
                live = np.flatnonzero(alive[offsets[t] + a : offsets[t] + a + len(h)])  # (m',)
                rec = np.empty((len(live), b1 - b0), _REC)
                rec["k0"] = np.arange(b0, b1, dtype=np.uint64)
                rec["k1"] = h[live]
                rec["i"] = (offsets[t] + a + live)[:, None]
                yield rec.reshape(-1)  # row-major: each band's records stay in idx order

    if parts == 1:
        n_alive = int(alive.sum())
        for b in range(num_bands):
            yield _collect(chunks(b, b + 1), n_alive)
    else:
        yield from _partitioned(chunks(0, num_bands), parts, work_dir)


def _collect(chunks: Iterator[np.ndarray], total: int) -> np.ndarray:
    """Concatenate into one preallocated array (np.concatenate would hold every chunk too)."""
    out = np.empty(total, _REC)
    at = 0
    for rec in chunks:
        out[at : at + len(rec)] = rec
        at += len(rec)
    assert at == total
    return out


def _partitioned(chunks: Iterator[np.ndarray], parts: int, work_dir: Path) -> Iterator[np.ndarray]:
    """Spread records over `parts` files by the top bits of k1, then yield one file at a time."""
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="dedup-", dir=work_dir))
    try:
        paths = [tmp / f"part-{p:04d}.bin" for p in range(parts)]
        files = [p.open("wb") for p in paths]
        try:
            for rec in chunks:
                _spill(rec, files)
        finally:
            for f in files:
                f.close()
        for path in paths:
            yield np.fromfile(path, _REC)
            path.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _spill(rec: np.ndarray, files: list) -> None:
    """Append each record to the file of its partition, chosen by the top bits of k1."""
    parts = len(files)
    # Lemire's fast range reduction: a uniform 32-bit prefix times parts, top 32 bits.
    part = ((rec["k1"] >> np.uint64(32)) * np.uint64(parts)) >> np.uint64(32)  # (m,)
    order = np.argsort(part, kind="stable")  # stable: each band's records stay in idx order
    counts = np.bincount(part.astype(np.int64), minlength=parts)
    for p, piece in enumerate(np.split(rec[order], np.cumsum(counts)[:-1])):
        if len(piece):
            piece.tofile(files[p])


def _runs(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each record that is not the first of its run of equal (k0, k1), in (k0, k1, i) order:
    its idx, the idx of its run's first (smallest) member, and the idx of the member before it."""
    if len(rec) < 2:
        return _EMPTY_I64, _EMPTY_I64, _EMPTY_I64
    # k1 is a uniform hash and collisions are rare, so sort k1 alone (unstable introsort: 3x faster
    # than a 3-key lexsort), then fully sort only the records that share their k1 with another.
    # The result is the same whatever order the unstable sort leaves ties in.
    k1 = np.ascontiguousarray(rec["k1"])  # (m,)
    order = np.argsort(k1)
    k1 = k1[order]
    shared = np.zeros(len(rec), bool)  # (m,) in sorted order
    eq = k1[1:] == k1[:-1]
    del k1
    shared[1:] = eq
    shared[:-1] |= eq
    del eq
    sub = rec[order[shared]]  # (c,) c << m unless the corpus is mostly duplicates
    del order, shared
    sub = sub[np.lexsort((sub["i"], sub["k1"], sub["k0"]))]
    same = (sub["k0"][1:] == sub["k0"][:-1]) & (sub["k1"][1:] == sub["k1"][:-1])  # (c-1,)
    pos = np.flatnonzero(same) + 1  # positions that are not a run's first
    if not len(pos):
        return _EMPTY_I64, _EMPTY_I64, _EMPTY_I64
    # consecutive positions form one run, which starts just before its first continuing position
    new_run = np.ones(len(pos), bool)
    new_run[1:] = pos[1:] != pos[:-1] + 1
    first = np.maximum.accumulate(np.where(new_run, pos - 1, 0))  # (k,)
    idx = sub["i"].astype(np.int64)
    return idx[pos], idx[first], idx[pos - 1]


def _unique_edges(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (u, v) edges, sorted by (u, v)."""
    if not len(u):
        return u, v
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    new = np.ones(len(u), bool)
    new[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    return u[new], v[new]


def _gather(arrays: Sequence[np.ndarray], offsets: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows of per-task arrays at global indices.                     # (len(idx), width)"""
    task = np.searchsorted(offsets, idx, side="right") - 1  # (k,)
    order = np.argsort(task, kind="stable")
    bounds = np.searchsorted(task[order], np.arange(len(arrays) + 1))
    out = np.empty((len(idx), arrays[0].shape[1]), arrays[0].dtype)
    for t in np.flatnonzero(np.diff(bounds)):
        sel = order[bounds[t] : bounds[t + 1]]
        out[sel] = arrays[t][idx[sel] - offsets[t]]
    return out


def _verify(
    u: np.ndarray,
    v: np.ndarray,
    signatures: Sequence[np.ndarray],
    offsets: np.ndarray,
    threshold: float,
    budget_bytes: int,
) -> np.ndarray:
    """True for edges whose signatures agree on >= threshold of their slots.   # (E,) bool"""
    ok = np.empty(len(u), bool)
    width = signatures[0].shape[1] * signatures[0].itemsize
    step = max(1024, budget_bytes // (6 * width))  # two gathered blocks + a temporary: < budget/2
    for a in range(0, len(u), step):
        su = _gather(signatures, offsets, u[a : a + step])  # (e, num_perm)
        sv = _gather(signatures, offsets, v[a : a + step])
        # integer compare: estimated J >= t  <=>  equal slots >= ceil(t * num_perm - 1e-9)
        need = math.ceil(threshold * su.shape[1] - 1e-9)
        ok[a : a + step] = (su == sv).sum(axis=1) >= need
    return ok


def _components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the edges: every node (sorted) and its component's smallest node."""
    nodes = np.unique(np.concatenate([u, v]))  # (k,) sorted
    cu, cv = np.searchsorted(nodes, u), np.searchsorted(nodes, v)
    label = np.arange(len(nodes))  # (k,) a forest pointing to smaller ids; roots label themselves
    while True:
        lu, lv = label[cu], label[cv]  # roots of the two ends (label is fully compressed here)
        if np.array_equal(lu, lv):
            break
        m = np.minimum(lu, lv)
        np.minimum.at(label, lu, m)  # hook the larger root under the smaller
        np.minimum.at(label, lv, m)
        while True:  # pointer jumping until every node points at its root
            nxt = label[label]
            if np.array_equal(nxt, label):
                break
            label = nxt
    return nodes, nodes[label]
