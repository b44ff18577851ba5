"""Streaming reads of plain and compressed files, with truncation reported, never swallowed.

`iter_chunks(path)` yields decompressed byte chunks for `.gz`, `.zst`, `.xz`, `.bz2` or plain
files and raises `TruncatedInput` when a compressed stream stops before its end marker (a
half-copied download), after yielding everything that was readable. The zstandard
`stream_reader` returns a short read silently on a truncated frame, so `.zst` is driven through
`decompressobj`, whose `eof` flag tells a finished frame from a cut one.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Iterator

CHUNK_BYTES = 1 << 18
COMPRESSED_SUFFIXES = (".gz", ".zst", ".xz", ".bz2")


class TruncatedInput(Exception):
    """A compressed stream ended early or is corrupt; `str(e)` is the reason detail."""


def compression_of(name: str) -> str | None:
    """The compression suffix of a file name, or None.

    >>> compression_of("ls.1.gz"), compression_of("a.jsonl")
    ('.gz', None)
    """
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def strip_compression(name: str) -> str:
    """The name without its compression suffix.

    >>> strip_compression("docs.jsonl.zst")
    'docs.jsonl'
    """
    suffix = compression_of(name)
    return name[: -len(suffix)] if suffix else name


def iter_chunks(path: str) -> Iterator[bytes]:
    """Decompressed chunks of `path`; raises `TruncatedInput` after the last readable chunk."""
    suffix = compression_of(path)
    if suffix == ".zst":
        yield from _zstd_chunks(path)
        return
    opener = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}.get(suffix or "", open)
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk
    except EOFError as e:  # gzip/lzma/bz2: "Compressed file ended before the end-of-stream marker"
        raise TruncatedInput(f"truncated_archive: {e}") from e
    except (gzip.BadGzipFile, zlib.error, lzma.LZMAError, OSError) as e:
        if isinstance(e, OSError) and not isinstance(e, gzip.BadGzipFile) and e.errno is not None:
            raise  # a real I/O error (permission, disk), not corrupt data
        raise TruncatedInput(f"corrupt_archive: {e}") from e


def iter_range(path: str, start: int, end: int | None) -> Iterator[bytes]:
    """Chunks of the bytes [start, end) of an uncompressed file (a part of a split file)."""
    with open(path, "rb") as f:
        f.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            chunk = f.read(CHUNK_BYTES if left is None else min(CHUNK_BYTES, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def _zstd_chunks(path: str) -> Iterator[bytes]:
    import zstandard  # lazy: only .zst inputs need it

    dctx = zstandard.ZstdDecompressor()
    obj = dctx.decompressobj()
    in_frame = False
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            while chunk:  # one chunk may finish a frame and start the next (concatenated frames)
                try:
                    out = obj.decompress(chunk)
                except zstandard.ZstdError as e:
                    raise TruncatedInput(f"corrupt_archive: {e}") from e
                in_frame = True
                if out:
                    yield out
                if obj.eof:
                    chunk = obj.unused_data
                    obj = dctx.decompressobj()
                    in_frame = False
                else:
                    chunk = b""
    if in_frame:
        raise TruncatedInput("truncated_archive: zstd frame ended before its end marker")


def read_all(path: str, *, max_bytes: int) -> bytes:
    """The whole decompressed content of `path`; raises `TruncatedInput` or `ValueError` (too large)."""
    parts: list[bytes] = []
    size = 0
    for chunk in iter_chunks(path):
        size += len(chunk)
        if size > max_bytes:
            raise ValueError(f"file_too_large: more than {max_bytes} bytes decompressed")
        parts.append(chunk)
    return b"".join(parts)
