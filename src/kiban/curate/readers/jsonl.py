"""JSON Lines (`.jsonl`, `.ndjson`, `.json`, compressed `.gz`/`.zst`/`.xz`/`.bz2`) → Documents, streaming.

Bytes are split into lines first and each line is decoded on its own, so one bad line (invalid
UTF-8, malformed JSON, no `text`) goes to quarantine with its line number and the rest of the
file is still read. A truncated archive yields every complete line before the cut, then one
quarantine record with the line number reached and the partial line.

A `.json` file may also hold one JSON array of records (or one object); it is parsed whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from kiban.curate.readers.compressed import (
    TruncatedInput,
    iter_chunks,
    iter_range,
    read_all,
    strip_compression,
)
from kiban.curate.readers.quarantine import QuarantineRecord, raw_text
from kiban.curate.readers.record import TEXT_FIELD, NotADocument, to_document
from kiban.curate.readers.sources import SourceTask, relative_name
from kiban.records import Document

MAX_JSON_FILE_BYTES = 1 << 31
"""A `.json` file is parsed whole; larger ones should be JSON Lines."""

Quarantine = Callable[[QuarantineRecord], None]


def read_jsonl(
    task: SourceTask, quarantine: Quarantine, sha256: str, *, text_field: str = TEXT_FIELD
) -> Iterator[Document]:
    """Documents from one JSON Lines file; bad lines and truncation go to `quarantine`."""
    if strip_compression(task.path).endswith(".json"):
        yield from _read_json(task, quarantine, sha256, text_field=text_field)
        return
    if task.start or task.end is not None:  # one part of a split file: plain bytes [start, end)
        chunks = iter_range(task.path, task.start, task.end)
    else:
        chunks = iter_chunks(task.path)
    yield from _records_from_lines(
        task, quarantine, sha256, _lines(chunks, first=task.first), text_field=text_field
    )


def _lines(chunks: Iterator[bytes], *, first: int = 1) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its newline), numbered from `first`; on truncation re-raises
    with the partial line."""
    pending = b""
    n = first - 1
    try:
        for chunk in chunks:
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            for line in parts:
                n += 1
                yield n, line
    except TruncatedInput as e:
        raise _Cut(str(e), n + 1, pending) from e
    if pending:
        yield n + 1, pending


class _Cut(Exception):
    def __init__(self, reason: str, line: int, partial: bytes) -> None:
        super().__init__(reason)
        self.reason, self.line, self.partial = reason, line, partial


def _records_from_lines(
    task: SourceTask,
    quarantine: Quarantine,
    sha256: str,
    lines: Iterator[tuple[int, bytes]],
    *,
    text_field: str = TEXT_FIELD,
) -> Iterator[Document]:
    rel = relative_name(task)
    try:
        for n, raw in lines:
            if not raw.strip():
                continue  # blank lines (often a trailing one) carry nothing
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                quarantine(
                    QuarantineRecord(
                        task.path, n, f"invalid_utf8: {e.reason} at byte {e.start}", raw_text(raw)
                    )
                )
                continue
            try:
                record = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as e:
                quarantine(QuarantineRecord(task.path, n, f"invalid_json: {e}", raw_text(text)))
                continue
            try:
                yield to_document(
                    record,
                    task_source=task.source,
                    task_license=task.license,
                    text_field=text_field,
                    sha256=sha256,
                    n=n,
                    meta={"path": rel, "line": n},
                )
            except NotADocument as e:
                quarantine(QuarantineRecord(task.path, n, str(e), raw_text(text)))
    except _Cut as cut:
        quarantine(
            QuarantineRecord(
                task.path,
                cut.line,
                f"{cut.reason} (stopped at line {cut.line})",
                raw_text(cut.partial or None),
            )
        )


def _read_json(
    task: SourceTask, quarantine: Quarantine, sha256: str, *, text_field: str
) -> Iterator[Document]:
    """A `.json` file: a JSON array of records, one object, or (most often) JSON Lines after all."""
    try:
        data = read_all(task.path, max_bytes=MAX_JSON_FILE_BYTES)
    except (TruncatedInput, ValueError) as e:  # cut archive, or larger than MAX_JSON_FILE_BYTES
        quarantine(QuarantineRecord(task.path, None, str(e)))
        return
    try:
        whole = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        lines = enumerate(data.split(b"\n"), start=1)
        yield from _records_from_lines(task, quarantine, sha256, lines, text_field=text_field)
        return
    rel = relative_name(task)
    records = whole if isinstance(whole, list) else [whole]
    for n, record in enumerate(records):
        try:
            yield to_document(
                record,
                task_source=task.source,
                task_license=task.license,
                text_field=text_field,
                sha256=sha256,
                n=n,
                meta={"path": rel, "index": n},
            )
        except NotADocument as e:
            quarantine(
                QuarantineRecord(task.path, None, f"{e} (array index {n})", raw_text(json.dumps(record)))
            )
