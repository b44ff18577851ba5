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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiban.curate.config import CurateConfig
from kiban.curate.dedup import MinHasher, exact_key
from kiban.curate.filters import c4_reason, gopher_reason, llmjp_reason, swallow_reason
from kiban.curate.language import language_reason
from kiban.curate.readers import QuarantineRecord, SourceTask, read_task
from kiban.curate.shards import docs_table, rejected_table, write_table
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
    """Process one input file; idempotent (a finished task is read back, not redone)."""
    out = task_dir(Path(job.work_dir), job.index)
    if (out / "stats.json").is_file():
        stats = json.loads((out / "stats.json").read_text())
        return TaskResult(job.index, stats.get("out.docs", 0), stats)
    cfg = job.config
    stats = Stats()
    rejected: list[tuple[Document, str, str | None]] = []
    if cfg.output.keep_rejected:
        stats.on_drop = lambda doc, rule: rejected.append((doc, rule, None))
    quarantined: list[QuarantineRecord] = []

    docs = read_task(job.task, quarantined.append)
    docs = counted_in(docs, stats)
    docs = normalized(docs, cfg, stats)
    docs = language_checked(docs, cfg, stats)
    docs = quality_checked(docs, cfg, stats)
    docs = redacted(docs, cfg, stats)
    kept = list(docs)

    hasher = MinHasher(cfg.dedup)
    n_bands = cfg.dedup.num_bands
    exact = np.zeros((len(kept), 2), dtype=np.uint64)  # (n_docs, 2) xxh3-128 of the hash-normalized text
    bands = np.zeros((len(kept), n_bands), dtype=np.uint64)  # (n_docs, num_bands)
    sigs = np.zeros((len(kept), cfg.dedup.num_perm), dtype=np.uint32)  # (n_docs, num_perm), for verification
    for i, doc in enumerate(kept):
        exact[i] = np.frombuffer(
            exact_key(normalize_for_hash(doc.text, normalized=cfg.normalize)), dtype=np.uint64
        )
        sigs[i], bands[i] = hasher.sketch(doc.text)
        stats.add("out.docs")
        stats.add("out.chars", len(doc.text))
    for q in quarantined:
        stats.add(f"quarantine.{q.reason.split(':', 1)[0]}")

    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write_table(docs_table(kept), tmp / "docs.parquet", compression="none")
    np.save(tmp / "exact.npy", exact)
    np.save(tmp / "bands.npy", bands)
    if cfg.dedup.verify:
        np.save(tmp / "sigs.npy", sigs)
    if rejected:
        write_table(rejected_table(rejected), tmp / "rejected.parquet", compression="none")
    with open(tmp / "quarantine.jsonl", "w", encoding="utf-8") as f:
        for q in quarantined:
            f.write(json.dumps(q.to_dict(), ensure_ascii=False) + "\n")
    (tmp / "stats.json").write_text(json.dumps(stats.to_dict(), sort_keys=True))
    if out.exists():  # a crashed earlier attempt cannot leave `out` without stats.json, but be safe
        shutil.rmtree(out)
    os.replace(tmp, out)
    return TaskResult(job.index, len(kept), stats.to_dict())


def counted_in(docs: Iterable[Document], stats: Stats) -> Iterator[Document]:
    for doc in docs:
        stats.add("in.docs")
        stats.add("in.chars", len(doc.text))
        yield doc


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
