"""Source readers: from a path the user named to a stream of `Document`s, bad input quarantined.

    >>> tasks, quarantined = resolve_sources(["debian:manpages-ja"], defaults=SourceDefaults())  # doctest: +SKIP
    >>> docs = [d for t in tasks for d in read_task(t, quarantined.append)]                      # doctest: +SKIP

`read_task` never raises for bad data: a malformed line, an undecodable or binary file, a
truncated archive or a corrupt Parquet file becomes a `QuarantineRecord` handed to `quarantine`,
and reading goes on. Only a spec that does not exist fails, in `resolve_sources` (`DataError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from kiban.artifacts import sha256_file
from kiban.curate.readers.quarantine import QuarantineRecord
from kiban.curate.readers.sources import SourceDefaults, SourceTask, resolve_sources
from kiban.records import Document

__all__ = ["QuarantineRecord", "SourceDefaults", "SourceTask", "read_task", "resolve_sources"]


def read_task(
    task: SourceTask, quarantine: Callable[[QuarantineRecord], None], *, text_field: str = "text"
) -> Iterator[Document]:
    """Stream the Documents of one task's file; everything unreadable goes to `quarantine`.

    `text_field` names the field (JSONL) or column (Parquet) holding the text."""
    try:
        # of the raw file, as it is on disk (compressed or not); splitting computed it already
        sha256 = task.sha256 or sha256_file(task.path)
    except OSError as e:
        quarantine(QuarantineRecord(task.path, None, f"unreadable_file: {e.strerror or e}"))
        return
    if task.kind == "jsonl":
        from kiban.curate.readers.jsonl import read_jsonl

        docs = read_jsonl(task, quarantine, sha256, text_field=text_field)
    elif task.kind == "parquet":
        from kiban.curate.readers.parquet import read_parquet

        docs = read_parquet(task, quarantine, sha256, text_field=text_field)
    else:
        from kiban.curate.readers.tree import read_whole_file

        docs = read_whole_file(task, quarantine, sha256)
    try:
        yield from docs
    except OSError as e:  # the file vanished or became unreadable half-way: an I/O problem, not data
        quarantine(QuarantineRecord(task.path, None, f"unreadable_file: {e.strerror or e}"))
