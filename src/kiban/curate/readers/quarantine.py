"""Quarantine records: what a reader could not turn into a `Document`, and why.

Nothing a user hands to `kiban curate` is silently lost: every file, line or row a reader
skips becomes a `QuarantineRecord` (path, line, reason, raw content) that the pipeline writes
under the corpus's `quarantine/` directory.

    >>> QuarantineRecord("/data/a.jsonl", 3, "invalid_json: Expecting value: line 1 column 1").to_dict()["line"]
    3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RAW_CAP_BYTES = 1 << 20
"""The most raw content kept per quarantine record (1 MB); longer content is cut and marked."""


@dataclass
class QuarantineRecord:
    """One input that could not be read.

    `reason` is a short name, then a colon and the detail: `"invalid_utf8: line 7"`;
    the name before the colon is what the pipeline counts (`reason_name`).
    """

    path: str
    line: int | None
    reason: str
    raw: str | None = None

    @property
    def reason_name(self) -> str:
        """The short name of the reason, e.g. `invalid_json`."""
        return self.reason.split(":", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "reason": self.reason, "raw": self.raw}


def raw_text(data: bytes | str | None) -> str | None:
    """Offending content as text for the quarantine: capped at 1 MB, undecodable bytes escaped.

    >>> raw_text(b"ok \\xff")
    'ok \\\\xff'
    """
    if data is None:
        return None
    if isinstance(data, str):
        if len(data) <= RAW_CAP_BYTES // 4:  # cheap check before encoding a long string
            return data
        data = data.encode("utf-8", errors="surrogatepass")
    cut = len(data) > RAW_CAP_BYTES
    text = data[:RAW_CAP_BYTES].decode("utf-8", errors="backslashreplace")
    return text + "…[truncated]" if cut else text
