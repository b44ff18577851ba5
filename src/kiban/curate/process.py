"""Stage 1 of a curate run, one task per input file: read → normalize → language → quality →
PII redaction → dedup keys. Each step is a function over an iterator; every drop names its rule.

A task writes `work/tasks/task-NNNNN/` (kept documents, dedup keys, rejected documents, quarantine
records, stats) into a temporary directory and renames it into place when complete, so a killed
run resumes by skipping the tasks whose directory exists.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from kiban.curate.config import CurateConfig
from kiban.curate.dedup import MinHasher, exact_key
from kiban.curate.filters import c4_reason, gopher_reason, llmjp_reason, swallow_reason
from kiban.curate.language import language_reason
from kiban.curate.readers import QuarantineRecord, SourceTask, read_task
from kiban.curate.readers.quarantine import raw_text
from kiban.curate.shards import REJECTED_SCHEMA, SCHEMA, docs_table, rejected_table
from kiban.curate.stats import Stats
from kiban.records import Document
from kiban.text import normalize, normalize_for_hash
from kiban.text.pii import redact


@dataclass(frozen=True)
class TaskJob:
    index: int
    task: SourceTask
    config: CurateConfig
    work_dir: str


@dataclass
class TaskResult:
    index: int
    kept: int
    stats: dict[str, int]


def task_dir(work_dir: Path, index: int) -> Path:
    return Path(work_dir) / "tasks" / f"task-{index:05d}"


def run_task(job: TaskJob) -> TaskResult:
    """Process one input file; idempotent (a finished task is read back, not redone).

    Documents stream through in batches, so memory does not grow with the size of the file.
    """
    out = task_dir(Path(job.work_dir), job.index)
    if (out / "stats.json").is_file():
        stats = json.loads((out / "stats.json").read_text())
        return TaskResult(job.index, stats.get("out.docs", 0), stats)
    cfg = job.config
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)

    stats = Stats()
    outputs = TaskOutputs(tmp, cfg)
    if cfg.output.keep_rejected:
        stats.on_drop = outputs.reject
    hasher = MinHasher(cfg.dedup)
    with open(tmp / "quarantine.jsonl", "w", encoding="utf-8") as qfile:

        def quarantine(q: QuarantineRecord) -> None:
            stats.add(f"quarantine.{q.reason.split(':', 1)[0]}")
            qfile.write(json.dumps(q.to_dict(), ensure_ascii=False) + "\n")

        for doc in _read_guarded(job.task, quarantine, cfg.text_field, stats):
            try:
                for kept in process_document(doc, cfg, stats):
                    key = exact_key(normalize_for_hash(kept.text, normalized=cfg.normalize))
                    sig, bands = hasher.sketch(kept.text)
                    outputs.add(kept, key, sig, bands)
                    stats.add("out.docs")
                    stats.add("out.chars", len(kept.text))
            except Exception as e:  # noqa: BLE001 - one pathological document must not sink its file
                line = doc.meta.get("line")
                reason = f"processing_error: {type(e).__name__}: {e}"
                quarantine(QuarantineRecord(job.task.path, line, reason, raw_text(doc.text)))
    outputs.close()
    (tmp / "stats.json").write_text(json.dumps(stats.to_dict(), sort_keys=True))
    if out.exists():  # a crashed earlier attempt cannot leave `out` without stats.json, but be safe
        shutil.rmtree(out)
    os.replace(tmp, out)
    return TaskResult(job.index, outputs.n_kept, stats.to_dict())


class TaskOutputs:
    """One task's outputs, written in batches of `BATCH` documents (one Parquet row group each):

    docs.parquet       kept documents, in input order
    exact.u64          (n, 2) uint64     xxh3-128 of the hash-normalized text
    bands.u64          (n, num_bands) uint64
    sigs.u32           (n, num_perm) uint32, when dedup.verify
    rejected.parquet   dropped documents with their rule, when output.keep_rejected
    """

    BATCH = 1024

    def __init__(self, directory: Path, cfg: CurateConfig) -> None:
        self.dir, self.cfg = directory, cfg
        self.n_kept = 0
        self._docs: list[Document] = []
        self._keys: list[tuple[bytes, np.ndarray, np.ndarray]] = []
        self._rejected: list[tuple[Document, str, str | None]] = []
        self._docs_writer = pq.ParquetWriter(directory / "docs.parquet", SCHEMA, compression="none")
        self._rejected_writer: pq.ParquetWriter | None = None
        self._exact = open(directory / "exact.u64", "wb")  # noqa: SIM115 - closed in close()
        self._bands = open(directory / "bands.u64", "wb")  # noqa: SIM115
        self._sigs = open(directory / "sigs.u32", "wb") if cfg.dedup.verify else None  # noqa: SIM115

    def add(self, doc: Document, key: bytes, sig: np.ndarray, bands: np.ndarray) -> None:
        self._docs.append(doc)
        self._keys.append((key, sig, bands))
        self.n_kept += 1
        if len(self._docs) >= self.BATCH:
            self._flush_docs()

    def reject(self, doc: Document, rule: str) -> None:
        self._rejected.append((doc, rule, None))
        if len(self._rejected) >= self.BATCH:
            self._flush_rejected()

    def _flush_docs(self) -> None:
        if not self._docs:
            return
        self._docs_writer.write_table(docs_table(self._docs))
        self._exact.write(b"".join(k for k, _, _ in self._keys))
        self._bands.write(np.stack([b for _, _, b in self._keys]).astype("<u8").tobytes())
        if self._sigs is not None:
            self._sigs.write(np.stack([s for _, s, _ in self._keys]).astype("<u4").tobytes())
        self._docs, self._keys = [], []

    def _flush_rejected(self) -> None:
        if not self._rejected:
            return
        if self._rejected_writer is None:
            self._rejected_writer = pq.ParquetWriter(
                self.dir / "rejected.parquet", REJECTED_SCHEMA, compression="none"
            )
        self._rejected_writer.write_table(rejected_table(self._rejected))
        self._rejected = []

    def close(self) -> None:
        self._flush_docs()
        self._flush_rejected()
        self._docs_writer.close()
        if self._rejected_writer is not None:
            self._rejected_writer.close()
        for f in (self._exact, self._bands, self._sigs):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
                f.close()


def load_keys(directory: Path, name: str, width: int) -> np.ndarray:
    """A task's key array, memory-mapped: `exact` (n, 2) uint64, `bands` (n, num_bands) uint64,
    `sigs` (n, num_perm) uint32."""
    dtype = np.dtype("<u4") if name == "sigs" else np.dtype("<u8")
    path = Path(directory) / f"{name}.{'u32' if name == 'sigs' else 'u64'}"
    n = path.stat().st_size // (dtype.itemsize * width)
    if n == 0:
        return np.zeros((0, width), dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(n, width))


def process_document(doc: Document, cfg: CurateConfig, stats: Stats) -> Iterator[Document]:
    """The steps one document goes through; yields it if it survives them all."""
    docs: Iterable[Document] = (doc,)
    docs = normalized(docs, cfg, stats)
    docs = language_checked(docs, cfg, stats)
    docs = quality_checked(docs, cfg, stats)
    return redacted(docs, cfg, stats)


def _read_guarded(
    task: SourceTask, quarantine: Callable[[QuarantineRecord], None], text_field: str, stats: Stats
) -> Iterator[Document]:
    """The task's documents, counted; a reader that fails half-way keeps what it read and
    quarantines the rest of the file with the reason."""
    n = 0
    try:
        for doc in read_task(task, quarantine, text_field=text_field):
            n += 1
            stats.add("in.docs")
            stats.add("in.chars", len(doc.text))
            yield doc
    except Exception as e:  # noqa: BLE001 - a reader bug on one file must not sink the run
        quarantine(
            QuarantineRecord(task.path, None, f"reader_error: {type(e).__name__}: {e} (after {n} documents)")
        )


def normalized(docs: Iterable[Document], cfg: CurateConfig, stats: Stats) -> Iterator[Document]:
    for doc in docs:
        if cfg.normalize:
            doc.text = normalize(doc.text)
        if len(doc.text.strip()) < max(cfg.min_chars, 1):
            stats.drop("empty_document", doc)
            continue
        yield doc


def language_checked(docs: Iterable[Document], cfg: CurateConfig, stats: Stats) -> Iterator[Document]:
    for doc in docs:
        rule, lang, score = language_reason(doc.text, cfg.language)
        doc.meta["lang"] = lang
        doc.meta["lang_score"] = round(float(score), 4)
        if rule:
            stats.drop(rule, doc)
            continue
        stats.add(f"lang.{lang}.docs")
        yield doc


def quality_checked(docs: Iterable[Document], cfg: CurateConfig, stats: Stats) -> Iterator[Document]:
    f = cfg.filters
    checks = {
        "ja": [(swallow_reason, f.japanese), (llmjp_reason, f.llmjp)],
        "en": [(gopher_reason, f.gopher), (c4_reason, f.c4)],
    }
    for doc in docs:
        rule = None
        for check, family_cfg in checks.get(doc.meta.get("lang", ""), []):
            if getattr(family_cfg, "enabled", True):
                rule = check(doc.text, family_cfg)
                if rule:
                    break
        if rule:
            stats.drop(rule, doc)
            continue
        yield doc


def redacted(docs: Iterable[Document], cfg: CurateConfig, stats: Stats) -> Iterator[Document]:
    for doc in docs:
        if cfg.pii.enabled:
            r = redact(doc.text, cfg.pii)
            doc.text = r.text
            if r.counts:
                doc.meta["pii_redacted"] = dict(sorted(r.counts.items()))
                for kind, n in r.counts.items():
                    stats.add(f"pii.redacted.{kind}", n)
            if r.tagged:
                doc.meta["pii_tagged"] = dict(sorted(r.tagged.items()))
                for kind, n in r.tagged.items():
                    stats.add(f"pii.tagged.{kind}", n)
        yield doc
