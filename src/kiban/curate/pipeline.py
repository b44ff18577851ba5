"""`kiban curate`: sources → corpus directory, in three resumable stages.

    1. process   one task per input file, in parallel: read, normalize, identify the language,
                 filter for quality, redact PII, compute dedup keys     → work/tasks/task-NNNNN/
    2. dedup     once, over every task's keys: exact, then MinHash LSH  → work/dedup.npz
    3. write     one task per output shard, in parallel                 → part-NNNNN.parquet
    finally      rejected/, quarantine/, dedup/, manifest.json, datacard.md; work/ is removed.

Everything each stage writes is a pure function of the inputs and the config, and the canonical
order of documents is (input file, position in file), so a killed run started again with the same
arguments, or a run on another executor, produces the same bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kiban import __version__
from kiban.artifacts import (
    MANIFEST,
    Manifest,
    atomic_path,
    input_record,
    write_json_atomic,
    write_manifest,
    write_text_atomic,
)
from kiban.config import to_dict
from kiban.curate.config import CurateConfig, OutputConfig
from kiban.curate.datacard import render_datacard
from kiban.curate.dedup import DedupResult, deduplicate
from kiban.curate.executors import Executor, make_executor
from kiban.curate.process import TaskJob, TaskResult, load_keys, run_task, task_dir
from kiban.curate.readers import QuarantineRecord, SourceDefaults, SourceTask, resolve_sources
from kiban.curate.readers.split import split_tasks
from kiban.curate.shards import REJECTED_SCHEMA, write_table
from kiban.curate.stats import Stats
from kiban.errors import ConfigError, DataError
from kiban.progress import Mode, Progress, emit

WORK = ".kiban-work"


@dataclass(frozen=True)
class ShardJob:
    index: int
    out_path: str
    compression: str
    pieces: tuple[tuple[str, np.ndarray], ...]  # (task docs.parquet, kept row indices (k,) int64)


@dataclass
class CurateSummary:
    out_dir: Path
    manifest: dict[str, Any]
    resumed: bool


def run(
    sources: list[str],
    out_dir: Path,
    config: CurateConfig | None = None,
    *,
    executor: str = "local",
    workers: int = 1,
    source_label: str | None = None,
    progress: Mode = "quiet",
    overwrite: bool = False,
) -> CurateSummary:
    """Curate `sources` (files, trees, `debian:PKG`) into the corpus directory `out_dir`."""
    cfg = config or CurateConfig()
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST).is_file() and not overwrite:
        manifest = json.loads((out_dir / MANIFEST).read_text())
        if manifest.get("kind") != "corpus":
            raise ConfigError(f"{out_dir} holds a '{manifest.get('kind')}' artifact, not a corpus")
        if manifest.get("extra_fingerprint") == _fingerprint_of(sources, cfg, source_label):
            _say(progress, f"{out_dir} is already complete; nothing to do (pass --overwrite to redo)")
            shutil.rmtree(out_dir / WORK, ignore_errors=True)
            return CurateSummary(out_dir, manifest, resumed=True)
        raise ConfigError(
            f"{out_dir} already holds a corpus made with other arguments; pass --overwrite or "
            "choose another --out"
        )
    if overwrite and out_dir.exists():
        _clear_outputs(out_dir)

    specs = list(sources) + [s.path for s in cfg.sources]
    if not specs:
        raise ConfigError("no sources: name files, directories or debian:PKG, or list them under 'sources:'")
    tasks, quarantined = _resolve(sources, cfg, source_label)
    if not tasks and not quarantined:
        raise DataError(f"no readable documents found in {', '.join(specs)}")
    if cfg.split_mb:
        tasks = split_tasks(tasks, part_bytes=_part_bytes(tasks, cfg.split_mb, workers))

    work = out_dir / WORK
    fingerprint = _fingerprint_of(sources, cfg, source_label)
    resumed = _prepare_work(work, fingerprint, tasks)
    _remove_partial_files(out_dir)
    if resumed:
        _say(progress, f"resuming the unfinished run in {work}")

    ex = make_executor(executor, workers)
    try:
        results = _stage_process(ex, tasks, cfg, work, progress)
        dedup = _stage_dedup(len(tasks), cfg, work, progress)
        shard_jobs = _plan_shards(results, dedup, cfg, work, out_dir)
        _stage_write(ex, shard_jobs, progress)
    finally:
        ex.close()

    stats = Stats()
    for r in results:
        stats += Stats.from_dict(r.stats)
    _write_rejected_and_dedup(results, dedup, cfg, work, out_dir, stats)
    n_quarantined = _write_quarantine(quarantined, len(tasks), work, out_dir, stats)
    manifest = _write_manifest(
        sources, cfg, tasks, stats, dedup, shard_jobs, n_quarantined, out_dir, fingerprint
    )
    write_text_atomic(out_dir / "datacard.md", render_datacard(manifest))
    shutil.rmtree(work, ignore_errors=True)
    if progress == "json":
        emit({"event": "done", "out_dir": str(out_dir), "stats": manifest["stats"]["funnel"]})
    return CurateSummary(out_dir, manifest, resumed)


# ---------------------------------------------------------------------------------------------- setup


def _resolve(
    sources: list[str], cfg: CurateConfig, source_label: str | None
) -> tuple[list[SourceTask], list[QuarantineRecord]]:
    tasks, quarantined = [], []
    if sources:
        t, q = resolve_sources(
            list(sources), defaults=SourceDefaults(license=cfg.license, source=source_label)
        )
        tasks += t
        quarantined += q
    for s in cfg.sources:
        t, q = resolve_sources(
            [s.path], defaults=SourceDefaults(license=s.license or cfg.license, source=s.source)
        )
        tasks += t
        quarantined += q
    return tasks, quarantined


def _part_bytes(tasks: list[SourceTask], split_mb: int, workers: int) -> int:
    """Parts of at most `split_mb`, and small enough that even one small file gives every worker
    about four tasks (the corpus does not depend on the split, so this costs nothing)."""
    total = 0
    for t in tasks:
        try:
            total += Path(t.path).stat().st_size
        except OSError:
            pass
    return max(1 << 20, min(split_mb << 20, -(-total // (4 * workers))))


def _fingerprint_of(sources: list[str], cfg: CurateConfig, source_label: str | None) -> str:
    blob = json.dumps(
        {"v": __version__, "sources": list(sources), "label": source_label, "config": to_dict(cfg)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _prepare_work(work: Path, fingerprint: str, tasks: list[SourceTask]) -> bool:
    """Create the work directory, or check that an existing one belongs to this very run."""
    tasks_blob = [[t.path, t.kind, t.source, t.license, t.start, t.end, _stat(t.path)] for t in tasks]
    run_file = work / "run.json"
    if run_file.is_file():
        previous = json.loads(run_file.read_text())
        if previous.get("fingerprint") == fingerprint and previous.get("tasks") == tasks_blob:
            return True
        shutil.rmtree(work)  # another run's leftovers: inputs or arguments changed, start clean
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_file, {"fingerprint": fingerprint, "tasks": tasks_blob})
    return False


def _remove_partial_files(out_dir: Path) -> None:
    """A killed run can leave `.tmp-*` files of atomic writes behind; they are never complete."""
    for pattern in (".tmp-*", "*/.tmp-*"):
        for p in out_dir.glob(pattern):
            if p.is_file():
                p.unlink()


def _stat(path: str) -> list[int]:
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns]


def _clear_outputs(out_dir: Path) -> None:
    for p in out_dir.iterdir():
        if p.name.startswith("part-") or p.name in (
            MANIFEST,
            "datacard.md",
            "rejected",
            "quarantine",
            "dedup",
            WORK,
        ):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _say(mode: Mode, message: str) -> None:
    if mode == "json":
        emit({"event": "info", "message": message})
    else:
        print(message, file=sys.stderr)


# ---------------------------------------------------------------------------------------------- stages


def _stage_process(
    ex: Executor, tasks: list[SourceTask], cfg: CurateConfig, work: Path, mode: Mode
) -> list[TaskResult]:
    jobs = [TaskJob(i, t, cfg, str(work)) for i, t in enumerate(tasks)]
    bar = Progress("process", len(jobs), mode=mode, unit="tasks")
    results: list[TaskResult | None] = [None] * len(jobs)
    for i, result in ex.map_unordered(run_task, jobs):
        results[i] = result
        bar.update(1, docs_in=result.stats.get("in.docs", 0), docs_kept=result.kept)
    bar.close()
    return [r for r in results if r is not None]


def _stage_dedup(n_tasks: int, cfg: CurateConfig, work: Path, mode: Mode) -> DedupResult | None:
    d = cfg.dedup
    if not (d.exact or d.near):
        return None
    exact = [load_keys(task_dir(work, i), "exact", 2) for i in range(n_tasks)]
    bands = [load_keys(task_dir(work, i), "bands", d.num_bands) for i in range(n_tasks)]
    sigs = [load_keys(task_dir(work, i), "sigs", d.num_perm) for i in range(n_tasks)] if d.verify else None
    bar = Progress("dedup", 1, mode=mode, unit="passes")
    offsets = np.cumsum([0] + [len(e) for e in exact])

    def fetch_texts(indices: np.ndarray) -> list[str]:
        """Texts of global document indices (sorted), read back from the tasks' docs.parquet."""
        texts: list[str] = []
        for t, rows in by_task(offsets, indices):
            texts += (
                take_rows(task_dir(work, t) / "docs.parquet", rows, columns=["text"]).column(0).to_pylist()
            )
        return texts

    result = deduplicate(
        exact, bands, signatures=sigs, cfg=cfg.dedup, work_dir=work / "dedup", fetch_texts=fetch_texts
    )
    bar.update(1, exact_removed=int(result.exact_removed), near_removed=int(result.near_removed))
    bar.close()
    return result


def _plan_shards(
    results: list[TaskResult], dedup: DedupResult | None, cfg: CurateConfig, work: Path, out_dir: Path
) -> list[ShardJob]:
    """Cut the kept documents, in canonical order, into shards of `output.shard_docs`."""
    size = cfg.output.shard_docs
    jobs: list[ShardJob] = []
    pieces: list[tuple[str, np.ndarray]] = []
    filled = 0

    def flush() -> None:
        nonlocal pieces, filled
        if filled:
            path = out_dir / f"part-{len(jobs):05d}.parquet"
            jobs.append(ShardJob(len(jobs), str(path), cfg.output.compression, tuple(pieces)))
        pieces, filled = [], 0

    for r in results:
        rows = np.arange(r.kept) if dedup is None else np.flatnonzero(dedup.keep[r.index])
        start = 0
        while start < len(rows):
            take = rows[start : start + size - filled]
            pieces.append((str(task_dir(work, r.index) / "docs.parquet"), take.astype(np.int64)))
            filled += len(take)
            start += len(take)
            if filled == size:
                flush()
    flush()
    return jobs


def write_shard(job: ShardJob) -> int:
    path = Path(job.out_path)
    tables = [take_rows(docs_path, rows) for docs_path, rows in job.pieces]
    table = pa.concat_tables(tables)
    if not path.exists():  # resumed runs keep finished shards: same inputs, same bytes
        write_table(table, path, compression=job.compression)
    return table.num_rows


def by_task(offsets: np.ndarray, indices: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Global document indices (sorted) grouped by task: (task, rows within the task's docs)."""
    task_of = np.searchsorted(offsets, indices, side="right") - 1
    for t in np.unique(task_of):
        yield int(t), indices[task_of == t] - offsets[t]


def take_rows(path: str | Path, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
    """Rows `rows` (sorted) of a Parquet file, reading only the row groups that hold them."""
    pf = pq.ParquetFile(path)
    starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
    groups = np.unique(np.searchsorted(starts, rows, side="right") - 1)
    if len(groups) == 0:
        return pf.schema_arrow.empty_table().select(columns) if columns else pf.schema_arrow.empty_table()
    table = pf.read_row_groups([int(g) for g in groups], columns=columns)
    # row index within the concatenation of the chosen groups
    base = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups])
    local = np.searchsorted(base, rows)
    return table.take(pa.array(local, type=pa.int64()))


def _stage_write(ex: Executor, jobs: list[ShardJob], mode: Mode) -> None:
    bar = Progress("write", len(jobs), mode=mode, unit="shards")
    for _, n in ex.map_unordered(write_shard, jobs):
        bar.update(1, docs=n)
    bar.close()


# ---------------------------------------------------------------------------------------------- outputs


def _write_rejected_and_dedup(
    results: list[TaskResult],
    dedup: DedupResult | None,
    cfg: CurateConfig,
    work: Path,
    out_dir: Path,
    stats: Stats,
) -> None:
    """rejected/ holds every dropped document with its rule; dedup/duplicates.parquet maps each
    removed duplicate to the document kept in its place."""
    dup_rows: dict[int, list[tuple[int, str, str]]] = {}
    if dedup is not None and len(dedup.removed_pairs):
        offsets = np.cumsum([0] + [r.kept for r in results])
        pairs = np.asarray(dedup.removed_pairs, dtype=np.int64)  # (k, 2) global (removed, kept)
        wanted = np.unique(pairs)
        # only the ids of documents named in a pair are read: memory grows with duplicates, not corpus
        ids: dict[int, str] = {}
        chars: dict[int, int] = {}
        for t, local in by_task(offsets, wanted):
            table = take_rows(task_dir(work, t) / "docs.parquet", local, columns=["id", "text"])
            glob = (local + offsets[t]).tolist()
            ids.update(zip(glob, table.column("id").to_pylist(), strict=True))
            chars.update(zip(glob, pc.utf8_length(table.column("text")).to_pylist(), strict=True))
        kinds = {1: "dedup_exact", 2: "dedup_near"}
        victim_task = np.searchsorted(offsets, pairs[:, 0], side="right") - 1
        for (victim, keeper), kind, t in zip(
            pairs.tolist(), dedup.kind.tolist(), victim_task.tolist(), strict=True
        ):
            dup_rows.setdefault(t, []).append((victim - int(offsets[t]), kinds[kind], ids[keeper]))
            # the funnel's `out` is what reaches the corpus: duplicates leave it here
            stats.add(f"removed.{kinds[kind]}.docs")
            stats.add(f"removed.{kinds[kind]}.chars", chars[victim])
            stats.add("out.docs", -1)
            stats.add("out.chars", -chars[victim])
        table = pa.table(
            {
                "id": [ids[v] for v in pairs[:, 0].tolist()],
                "duplicate_of": [ids[k] for k in pairs[:, 1].tolist()],
                "kind": [kinds[k][6:] for k in dedup.kind.tolist()],
            }
        )
        write_table(table, out_dir / "dedup" / "duplicates.parquet", compression="zstd")
    if dedup is not None:
        stats.add("dedup.clusters", int(dedup.clusters))

    if not cfg.output.keep_rejected:
        return
    _write_rolling(_rejected_tables(results, dup_rows, work), out_dir / "rejected", cfg.output)


def _rejected_tables(
    results: list[TaskResult], dup_rows: dict[int, list[tuple[int, str, str]]], work: Path
) -> Iterator[pa.Table]:
    """Every dropped document: first the filters' drops, then the duplicates, each in canonical
    order (so the order does not depend on how input files were split into tasks)."""
    for r in results:
        tdir = task_dir(work, r.index)
        if (tdir / "rejected.parquet").is_file():
            for batch in pq.ParquetFile(tdir / "rejected.parquet").iter_batches(batch_size=4096):
                yield pa.Table.from_batches([batch]).cast(REJECTED_SCHEMA)
    for r in results:
        if r.index in dup_rows:
            rows = sorted(dup_rows[r.index])
            t = take_rows(
                task_dir(work, r.index) / "docs.parquet",
                np.array([row for row, _, _ in rows], dtype=np.int64),
            )
            t = t.append_column("reason", pa.array([k for _, k, _ in rows], pa.string()))
            t = t.append_column("duplicate_of", pa.array([d for _, _, d in rows], pa.string()))
            yield t.cast(REJECTED_SCHEMA)


def _write_rolling(tables: Iterable[pa.Table], directory: Path, output: OutputConfig) -> None:
    """Stream tables into `directory/part-NNNNN.parquet` files of `output.shard_docs` rows each, so
    the layout depends on the documents alone, not on how the inputs were split into tasks."""
    compression = None if output.compression == "none" else output.compression
    for part, pieces in itertools.groupby(_cut(tables, output.shard_docs), key=lambda p: p[0]):
        # one table per part, as for the corpus shards: row groups then do not depend on tasks
        table = pa.concat_tables([piece for _, piece in pieces]).combine_chunks()
        with atomic_path(directory / f"part-{part:05d}.parquet") as tmp:
            pq.write_table(table, tmp, compression=compression)


def _cut(tables: Iterable[pa.Table], size: int) -> Iterator[tuple[int, pa.Table]]:
    """(part number, slice) for consecutive parts of `size` rows."""
    part, filled = 0, 0
    for table in tables:
        while table.num_rows:
            piece = table.slice(0, size - filled)
            yield part, piece
            filled += piece.num_rows
            table = table.slice(piece.num_rows)
            if filled == size:
                part, filled = part + 1, 0


def _write_quarantine(
    resolved: list[QuarantineRecord], n_tasks: int, work: Path, out_dir: Path, stats: Stats
) -> int:
    lines = [json.dumps(q.to_dict(), ensure_ascii=False) for q in resolved]
    for q in resolved:
        stats.add(f"quarantine.{q.reason.split(':', 1)[0]}")
    for i in range(n_tasks):
        text = (task_dir(work, i) / "quarantine.jsonl").read_text(encoding="utf-8")
        lines.extend(line for line in text.splitlines() if line)
    if lines:
        write_text_atomic(out_dir / "quarantine" / "quarantine.jsonl", "\n".join(lines) + "\n")
    return len(lines)


def _write_manifest(
    sources: list[str],
    cfg: CurateConfig,
    tasks: list[SourceTask],
    stats: Stats,
    dedup: DedupResult | None,
    shards: list[ShardJob],
    n_quarantined: int,
    out_dir: Path,
    fingerprint: str,
) -> dict[str, Any]:
    licenses: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    by_lang: Counter[str] = Counter()
    n_docs = 0
    for job in shards:
        t = pq.read_table(job.out_path, columns=["license", "source", "meta"])
        licenses.update(t.column("license").to_pylist())
        by_source.update(t.column("source").to_pylist())
        by_lang.update(json.loads(m).get("lang", "?") for m in t.column("meta").to_pylist())
        n_docs += t.num_rows
    specs = list(sources) + [s.path for s in cfg.sources]
    inputs = [
        input_record(
            s if s.startswith("debian:") else Path(s),
            "debian-package" if s.startswith("debian:") else "sources",
            relative_to=out_dir,
        )
        for s in specs
    ]
    counters = stats.to_dict()
    manifest = Manifest(
        kind="corpus",
        config=to_dict(cfg),
        inputs=inputs,
        stats={
            "documents": n_docs,
            "shards": [Path(j.out_path).name for j in shards],
            "funnel": stats.funnel(),
            "languages": dict(sorted(by_lang.items())),
            "sources": dict(sorted(by_source.items())),
            "input_files": len({t.path for t in tasks}),
            "tasks": len(tasks),
            "quarantined": n_quarantined,
            "quarantine_reasons": {k[11:]: v for k, v in counters.items() if k.startswith("quarantine.")},
            "pii": {k[4:]: v for k, v in counters.items() if k.startswith("pii.")},
            "dedup": {
                "exact_removed": int(dedup.exact_removed) if dedup else 0,
                "near_removed": int(dedup.near_removed) if dedup else 0,
                "clusters": int(dedup.clusters) if dedup else 0,
                "report": "dedup/duplicates.parquet" if dedup else None,
            },
        },
        licenses=dict(sorted(licenses.items(), key=lambda kv: (-kv[1], kv[0]))),
        extra={"extra_fingerprint": fingerprint, "license_sources": _license_sources(specs)},
    )
    write_manifest(out_dir, manifest)
    return manifest.to_dict()


def _license_sources(specs: list[str]) -> dict[str, Any]:
    """For Debian packages: where each licence came from (the copyright file and its format)."""
    from kiban.curate.readers.debian import debian_copyright_info

    return {s: debian_copyright_info(s[len("debian:") :]) for s in specs if s.startswith("debian:")}
