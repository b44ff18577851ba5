"""Whole-file documents (plain text, Markdown, HTML, man pages; plain or compressed) → one Document each.

A file with NUL bytes in its first 8 KB is `binary_file`. Text that is not UTF-8 is tried as
EUC-JP, then Shift_JIS (cp932), then ISO-2022-JP, since older Japanese documentation is often in
those; the first strict decode that succeeds wins and is recorded in `meta["encoding"]`.
ISO-2022-JP is 7-bit and so also valid UTF-8: its escape sequences are what give it away.

    >>> decode_text("日本語".encode("euc_jp"))
    ('日本語', 'euc_jp')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from kiban.curate.readers.compressed import TruncatedInput, read_all
from kiban.curate.readers.html import html_to_text
from kiban.curate.readers.quarantine import QuarantineRecord, raw_text
from kiban.curate.readers.record import doc_id
from kiban.curate.readers.roff import is_so_link, roff_to_text
from kiban.curate.readers.sources import SourceTask, relative_name
from kiban.records import Document

MAX_DOCUMENT_BYTES = 256 << 20
"""A single text/HTML/man file larger than this (decompressed) is quarantined, not loaded."""
BINARY_SNIFF_BYTES = 8192
FALLBACK_ENCODINGS = ("euc_jp", "cp932", "iso2022_jp")
_ISO2022_ESCAPES = ("\x1b$B", "\x1b$@", "\x1b(J", "\x1b(B", "\x1b$(D")

Quarantine = Callable[[QuarantineRecord], None]


class Undecodable(Exception):
    """The bytes are binary or in no encoding kiban tries; `str(e)` is the quarantine reason."""


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding name) of a document's bytes; raises `Undecodable`."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a BOM: NUL bytes are expected here
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as e:
            raise Undecodable(f"invalid_utf16: {e.reason} at byte {e.start}") from e
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise Undecodable("binary_file: NUL bytes in the first 8 KB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        first_error = e
    else:
        if "\x1b" in text and any(esc in text for esc in _ISO2022_ESCAPES):
            try:
                return data.decode("iso2022_jp"), "iso2022_jp"
            except UnicodeDecodeError:
                pass
        return text, "utf-8"
    for encoding in FALLBACK_ENCODINGS:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    e = first_error
    raise Undecodable(
        f"invalid_utf8: {e.reason} at byte {e.start} (not EUC-JP, Shift_JIS or ISO-2022-JP either)"
    )


def read_whole_file(task: SourceTask, quarantine: Quarantine, sha256: str) -> Iterator[Document]:
    """The one Document of a text, Markdown, HTML or man page file, or its quarantine record."""
    try:
        data = read_all(task.path, max_bytes=MAX_DOCUMENT_BYTES)
    except (TruncatedInput, ValueError) as e:
        # A whole-file document cut short is a broken document: quarantined, not half-kept.
        quarantine(QuarantineRecord(task.path, None, str(e)))
        return
    try:
        src, encoding = decode_text(data)
    except Undecodable as e:
        raw = None if str(e).startswith("binary_file") else raw_text(data)
        quarantine(QuarantineRecord(task.path, None, str(e), raw))
        return
    src = src.replace("\r\n", "\n")
    meta: dict[str, object] = {"path": relative_name(task), "format": task.kind, "encoding": encoding}
    if task.kind == "man":
        target = is_so_link(src)
        if target is not None:
            quarantine(QuarantineRecord(task.path, None, f"man_so_link: {target}"))
            return
        text = roff_to_text(src)
        meta["man_page"] = _man_name(task.path)
    elif task.kind == "html":
        text = html_to_text(src)
    else:
        text = src
    if not text.strip():
        quarantine(
            QuarantineRecord(task.path, None, "empty_document: no text after conversion", raw_text(src))
        )
        return
    yield Document(
        id=doc_id(sha256, 0),
        text=text,
        source=task.source,
        license=task.license,
        source_sha256=sha256,
        meta=meta,
    )


def _man_name(path: str) -> str:
    """`/usr/share/man/ja/man1/ls.1.gz` → `ls(1)`."""
    name = os.path.basename(path)
    for suffix in (".gz", ".zst", ".xz", ".bz2"):
        name = name.removesuffix(suffix)
    stem, _, section = name.rpartition(".")
    return f"{stem}({section})" if stem else name
