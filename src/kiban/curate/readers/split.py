"""Split large input files into several tasks, so that one big file still keeps every worker busy.

A plain JSONL file larger than `part_bytes` is cut at line boundaries near every `part_bytes`
offset; a Parquet file, at row-group boundaries. Each part is a `SourceTask` with the byte or
row-group range, the number of its first line or row in the whole file, and the file's sha256
(computed once, while finding the cuts). Documents keep the ids and line numbers they would have
unsplit, and the parts follow each other in the canonical order, so the curated corpus is the same
bytes whatever `part_bytes` is. Compressed JSONL (.gz, .zst, ...) cannot be entered mid-stream and
stays one task, as in datatrove; split such files before compressing them to use every worker.

    >>> # a 1 GB dump.jsonl becomes 32 tasks of ~32 MiB each
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from kiban.curate.readers.compressed import compression_of, strip_compression
from kiban.curate.readers.sources import SourceTask

_READ = 1 << 22


def split_tasks(tasks: list[SourceTask], *, part_bytes: int) -> list[SourceTask]:
    """`tasks` with every large plain JSONL or Parquet file replaced by its parts, in order."""
    out: list[SourceTask] = []
    for task in tasks:
        try:
            size = os.path.getsize(task.path)
        except OSError:
            out.append(task)  # the reader will quarantine it with the reason
            continue
        if size <= part_bytes:
            out.append(task)
        elif task.kind == "jsonl" and compression_of(task.path) is None and not _is_whole_json(task.path):
            out.extend(_split_jsonl(task, part_bytes))
        elif task.kind == "parquet":
            out.extend(_split_parquet(task, part_bytes))
        else:
            out.append(task)
    return out


def _is_whole_json(path: str) -> bool:
    return strip_compression(path).endswith(".json")


def _split_jsonl(task: SourceTask, part_bytes: int) -> list[SourceTask]:
    """One pass over the file: its sha256, and a cut after the first newline past each multiple of
    `part_bytes`, with the number of lines before it."""
    h = hashlib.sha256()
    cuts: list[tuple[int, int]] = [(0, 1)]  # (byte offset, number of the first line there)
    lines = 0
    pos = 0
    next_cut = part_bytes
    with open(task.path, "rb") as f:
        while chunk := f.read(_READ):
            h.update(chunk)
            start = 0
            while pos + len(chunk) > next_cut:
                i = chunk.find(b"\n", max(next_cut - pos, start))
                if i < 0:
                    break  # the line runs into the next chunk: cut there
                lines += chunk.count(b"\n", start, i + 1)
                start = i + 1
                if pos + start < os.fstat(f.fileno()).st_size:
                    cuts.append((pos + start, lines + 1))
                next_cut = pos + start + part_bytes
            lines += chunk.count(b"\n", start)
            pos += len(chunk)
    digest = h.hexdigest()
    bounds = [c[0] for c in cuts] + [None]
    return [
        dataclasses.replace(task, start=off, end=bounds[k + 1], first=first, sha256=digest)
        for k, (off, first) in enumerate(cuts)
    ]


def _split_parquet(task: SourceTask, part_bytes: int) -> list[SourceTask]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(task.path).metadata
    except (pa.ArrowException, OSError):
        return [task]  # corrupt: the reader quarantines it
    parts: list[SourceTask] = []
    group, row, size, first_group, first_row = 0, 0, 0, 0, 0
    for group in range(meta.num_row_groups):
        rg = meta.row_group(group)
        if size and size + rg.total_byte_size > part_bytes:
            parts.append(dataclasses.replace(task, start=first_group, end=group, first=first_row))
            first_group, first_row, size = group, row, 0
        size += rg.total_byte_size
        row += rg.num_rows
    parts.append(dataclasses.replace(task, start=first_group, end=None, first=first_row))
    return parts
