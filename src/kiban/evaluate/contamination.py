"""Contamination: how much of each task's items appears verbatim in the model's training corpus.

    model dir ─manifest inputs─▶ token shards ─manifest inputs─▶ corpus dirs (part-*.parquet)
        ─▶ NgramIndex (sorted uint64 hashes of character 13-grams) ◀─ check(task items) ─▶ per-task counts

The method is GPT-3's (Brown et al. 2020, appendix C) as lm-evaluation-harness runs it
(`lm_eval/decontamination/`): an item is contaminated when at least one of its 13-grams occurs in
the training data. lm-eval's 13-grams are of *words* (lowercased, ASCII punctuation deleted,
split on whitespace); Japanese has no spaces between words, so ours are 13-grams of *characters*
after kiban's `normalize` (NFKC with the Japanese fixes), lowercasing, and removing everything
that is not a letter or digit (whitespace, 「」、。 and other punctuation, symbols). A question
reflowed or re-bracketed by a dataset's formatting still matches its source; digits are kept, so
two arithmetic problems that differ only in their numbers do not. 13 characters of Japanese are
about 6-8 words, a weaker signal than 13 English words: the report therefore also gives the
largest fraction of an item's 13-grams found (`max_overlap`) and how many items have at least half
of theirs in the corpus (`items_over_half`), which separates shared boilerplate from copied items.

Memory. A full index costs 8 bytes per distinct 13-gram of the corpus (about 8 bytes per
character: ~8 GB for 1 G characters), so it stops at `max_ngrams` distinct hashes (default 50 M:
400 MB, up to about four times that while merging) and says it is partial. `check_tasks`, what `kiban eval` calls,
avoids the bound: it indexes only the corpus 13-grams that also occur in the tasks' items, which
is exact for those items and costs 8 bytes per item 13-gram; the corpus is streamed once.
Speed: about 4 M characters a second on one core (one xxh3 call per 13-gram dominates), so a
1 G-character corpus takes some four minutes.

>>> ngram_text("「東京都」は、日本の首都です。 Tokyo!")
'東京都は日本の首都ですtokyo'
>>> index = NgramIndex.from_texts(["吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"], n=5)
>>> r = check([("q1", "名前はまだ無い"), ("q2", "今日は晴れです。明日も晴れ"), ("q3", "猫")], index)
>>> r["contaminated"], r["checked"], r["too_short"], r["examples"]
(1, 2, 1, ['q1'])
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from kiban.artifacts import MANIFEST, LineageNode, walk_lineage
from kiban.errors import DataError
from kiban.text.normalize import normalize

DEFAULT_N = 13  # GPT-3 / lm-eval's n
DEFAULT_MAX_NGRAMS = 50_000_000  # 400 MB of uint64
MAX_EXAMPLES = 5
CORPUS_KIND = "corpus"
NO_LINEAGE = "no lineage: contamination not checked"

_NOT_WORD = re.compile(r"[\W_]+")  # not a letter or digit of any script (as normalize_for_hash)
_EMPTY = np.zeros(0, dtype=np.uint64)
_MERGE_MIN = 4_000_000  # hashes buffered before the first merge into the sorted array


def ngram_text(text: str) -> str:
    """The text 13-grams are taken from: normalized, lowercased, letters and digits only.

    >>> ngram_text("ＡＢＣ　１２３！ です。")
    'abc123です'
    """
    return _NOT_WORD.sub("", normalize(text).lower())


def ngram_hashes(text: str, n: int = DEFAULT_N) -> np.ndarray:
    """xxh3-64 hashes of every character n-gram of `ngram_text(text)`, distinct and sorted.

    Empty when the text has fewer than `n` characters after normalization.

    >>> ngram_hashes("あいうえおか", n=5).shape
    (2,)
    >>> ngram_hashes("あいう", n=5).shape
    (0,)
    """
    key = ngram_text(text)
    if len(key) < n:
        return _EMPTY
    # UTF-32 gives every character 4 bytes, so window i is the byte slice [4i, 4i + 4n).
    data = memoryview(key.encode("utf-32-le"))
    h = xxhash.xxh3_64_intdigest
    width = 4 * n
    hashes = np.fromiter(
        (h(data[i : i + width]) for i in range(0, len(data) - width + 1, 4)),
        dtype=np.uint64,
        count=len(key) - n + 1,
    )
    return np.unique(hashes)


def _member(sorted_hashes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Boolean mask: which of `hashes` are in `sorted_hashes` (sorted, distinct)."""
    if sorted_hashes.size == 0 or hashes.size == 0:
        return np.zeros(hashes.shape, dtype=bool)
    idx = np.searchsorted(sorted_hashes, hashes)
    return sorted_hashes[np.minimum(idx, sorted_hashes.size - 1)] == hashes


class NgramIndex:
    """A set of n-gram hashes of a training corpus, held as one sorted uint64 numpy array.

    Build it with `from_texts` or `from_corpora`. `restrict_to` (sorted uint64 hashes, e.g. those
    of the task items) keeps only the n-grams in that set: exact for those items, and small.

    >>> idx = NgramIndex.from_texts(["あいうえおかきくけこ"], n=5)
    >>> len(idx), idx.partial
    (6, False)
    >>> idx.contains(ngram_hashes("えおかきく", n=5)).tolist()
    [True]
    """

    def __init__(
        self,
        hashes: np.ndarray,
        *,
        n: int,
        partial: bool = False,
        docs_indexed: int = 0,
        docs_total: int | None = None,
        restricted: bool = False,
    ) -> None:
        self.hashes = hashes  # (N,) uint64, sorted, distinct
        self.n = n
        self.partial = partial  # stopped at max_ngrams before reading every document
        self.docs_indexed = docs_indexed
        self.docs_total = docs_total
        self.restricted = restricted

    def __len__(self) -> int:
        return int(self.hashes.size)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Boolean mask over `hashes`: present in the index."""
        return _member(self.hashes, hashes)

    def describe(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "ngrams": len(self),
            "memory_bytes": int(self.hashes.nbytes),
            "partial": self.partial,
            "docs_indexed": self.docs_indexed,
            "docs_total": self.docs_total,
            "restricted_to_items": self.restricted,
        }

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        *,
        n: int = DEFAULT_N,
        max_ngrams: int = DEFAULT_MAX_NGRAMS,
        restrict_to: np.ndarray | None = None,
        docs_total: int | None = None,
    ) -> NgramIndex:
        """Index `texts` in order, stopping (partial) once `max_ngrams` distinct hashes are held."""
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        held, buffer, buffered, docs, partial = _EMPTY, [], 0, 0, False
        for text in texts:
            if held.size >= max_ngrams:  # full, and a document is left unread
                partial = True
                break
            hashes = ngram_hashes(text, n)
            if restrict_to is not None:
                hashes = hashes[_member(restrict_to, hashes)]
            if hashes.size:
                buffer.append(hashes)
                buffered += hashes.size
            docs += 1
            # Merge when the buffer is as large as what is held (at least _MERGE_MIN): each hash is
            # sorted O(log N) times in all; and merge early when the bound may have been reached.
            if buffered >= max(_MERGE_MIN, held.size) or held.size + buffered >= max_ngrams:
                held, buffer, buffered = np.union1d(held, np.concatenate(buffer)), [], 0
        if buffer:
            held = np.union1d(held, np.concatenate(buffer))
        if docs_total is None and not partial:
            docs_total = docs
        return cls(
            held.astype(np.uint64, copy=False),
            n=n,
            partial=partial,
            docs_indexed=docs,
            docs_total=docs_total,
            restricted=restrict_to is not None,
        )

    @classmethod
    def from_corpora(
        cls,
        corpus_dirs: Sequence[Path],
        *,
        n: int = DEFAULT_N,
        max_ngrams: int = DEFAULT_MAX_NGRAMS,
        restrict_to: np.ndarray | None = None,
    ) -> NgramIndex:
        """Index the `text` column of every `part-*.parquet` of `corpus_dirs`, in sorted order."""
        import pyarrow.parquet as pq

        parts = [p for d in corpus_dirs for p in corpus_parts(Path(d))]
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        return cls.from_texts(
            _corpus_texts(parts), n=n, max_ngrams=max_ngrams, restrict_to=restrict_to, docs_total=total
        )


def corpus_parts(corpus_dir: Path) -> list[Path]:
    """The `part-*.parquet` files of a corpus directory, sorted."""
    parts = sorted(Path(corpus_dir).glob("part-*.parquet"))
    if not parts:
        raise DataError(f"{corpus_dir}: no part-*.parquet files (not a kiban corpus)")
    return parts


def _corpus_texts(parts: Sequence[Path]) -> Iterator[str]:
    import pyarrow.parquet as pq

    for part in parts:
        for batch in pq.ParquetFile(part).iter_batches(columns=["text"], batch_size=1024):
            yield from (t or "" for t in batch.column(0).to_pylist())


# ---------------------------------------------------------------------------------------------
# lineage: which corpora a model was trained on


def training_corpus_nodes(model_dir: Path) -> list[LineageNode]:
    """The nearest corpus nodes of the model's lineage (a corpus made from a corpus stops the walk)."""
    if not (Path(model_dir) / MANIFEST).is_file():
        return []
    found: list[LineageNode] = []

    def visit(node: LineageNode) -> None:
        for child in node.children:
            if child.kind == CORPUS_KIND and child.status != "missing":
                if all(f.path != child.path for f in found):
                    found.append(child)
            else:
                visit(child)

    visit(walk_lineage(Path(model_dir), verify_sources=False))
    return found


def find_training_corpora(model_dir: Path) -> list[Path]:
    """Corpus directories named in the model's lineage: checkpoint → token shards → corpus.

    A model without a manifest (a plain Hugging Face directory) has no lineage: [].
    """
    return [Path(node.path) for node in training_corpus_nodes(model_dir)]


# ---------------------------------------------------------------------------------------------
# checking items


def check(items: Iterable[tuple[str, str]], index: NgramIndex) -> dict[str, Any]:
    """Overlap of one task's items `(doc_id, text)` with `index`.

    `contaminated`: items with at least one n-gram in the index (GPT-3 / lm-eval's rule);
    `items_over_half`: items with at least half of their distinct n-grams in it; `examples`: up to
    five doc ids, most overlapping first; items shorter than n after normalization are
    `too_short` and not checked.
    """
    total = too_short = contaminated = over_half = 0
    max_overlap = 0.0
    hits: list[tuple[float, int, str]] = []
    for i, (doc_id, text) in enumerate(items):
        total += 1
        hashes = ngram_hashes(text, index.n)
        if hashes.size == 0:
            too_short += 1
            continue
        overlap = float(index.contains(hashes).mean())
        if overlap > 0:
            contaminated += 1
            over_half += overlap >= 0.5
            hits.append((-overlap, i, str(doc_id)))
            max_overlap = max(max_overlap, overlap)
    checked = total - too_short
    return {
        "n": index.n,
        "items": total,
        "checked": checked,
        "too_short": too_short,
        "contaminated": contaminated,
        "fraction": round(contaminated / checked, 6) if checked else 0.0,
        "items_over_half": int(over_half),
        "max_overlap": round(max_overlap, 6),
        "examples": [doc_id for _, _, doc_id in sorted(hits)[:MAX_EXAMPLES]],
        "partial_index": index.partial,
    }


def check_tasks(
    model_dir: Path | None,
    items_by_task: Mapping[str, Sequence[tuple[str, str]]],
    *,
    n: int = DEFAULT_N,
    max_ngrams: int = DEFAULT_MAX_NGRAMS,
) -> dict[str, Any]:
    """The contamination section of a report: find the corpora, index them, check every task.

    The index holds only corpus n-grams that occur in some item (exact; see the module docstring).
    Without lineage the result says so and checks nothing:

    >>> check_tasks(None, {"jcqa": [("0", "問題文")]})["note"]
    'no lineage: contamination not checked'
    """
    method = {"n": n, "unit": "character", "normalization": "kiban normalize, lowercase, letters and digits"}
    nodes = training_corpus_nodes(Path(model_dir)) if model_dir is not None else []
    if not nodes:
        return {"status": "not_checked", "note": NO_LINEAGE, "method": method, "corpora": [], "tasks": {}}
    corpora = [
        {"path": node.path, "sha256": node.recorded_sha256, "lineage_status": node.status} for node in nodes
    ]
    wanted = [ngram_hashes(text, n) for items in items_by_task.values() for _, text in items]
    restrict = np.unique(np.concatenate(wanted)) if wanted else _EMPTY
    index = NgramIndex.from_corpora(
        [Path(node.path) for node in nodes], n=n, max_ngrams=max_ngrams, restrict_to=restrict
    )
    tasks = {task: check(items, index) for task, items in sorted(items_by_task.items())}
    status = "partial" if index.partial else "checked"
    note = (
        f"index stopped at {len(index)} n-grams after {index.docs_indexed} of {index.docs_total} documents"
        if index.partial
        else f"{index.docs_indexed} documents of {len(corpora)} corpus(es) checked"
    )
    return {
        "status": status,
        "note": note,
        "method": method,
        "corpora": corpora,
        "index": index.describe(),
        "tasks": tasks,
    }
