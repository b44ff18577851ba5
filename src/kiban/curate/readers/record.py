"""One dict record (a JSONL line, a Parquet row) → one `Document`, or the reason it is not one.

Dolma-style records (`{"id", "text", "source", "added", "created", "metadata": {...}}`) map as:
`id` → id (as str; else `<sha256[:16]>-<n>`), `text` → text, `source`/`license` override the
task's, `metadata` (a dict) is merged into `meta`, every other field goes into `meta` as is.

    >>> doc = to_document({"text": "こんにちは", "url": "u"}, task_source="s", task_license="MIT",
    ...                   sha256="ab" * 32, n=3, meta={"path": "a.jsonl", "line": 3})
    >>> doc.id, doc.license, doc.meta["url"]
    ('abababababababab-3', 'MIT', 'u')
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
from typing import Any

from kiban.records import Document

TEXT_FIELD = "text"
_USED = {"id", TEXT_FIELD, "source", "license", "metadata"}


class NotADocument(Exception):
    """The record cannot become a Document; `str(e)` is the quarantine reason."""


def doc_id(sha256: str, n: int) -> str:
    """The id of the n-th record of a file that brings no id of its own."""
    return f"{sha256[:16]}-{n}"


def to_document(
    record: Any,
    *,
    task_source: str,
    task_license: str,
    sha256: str,
    n: int,
    meta: dict[str, Any],
    text_field: str = TEXT_FIELD,
) -> Document:
    """The Document for `record`; raises `NotADocument` with the quarantine reason."""
    if not isinstance(record, dict):
        raise NotADocument(f"not_an_object: a record must be a JSON object, got {type(record).__name__}")
    text = record.get(text_field)
    if text is None:
        raise NotADocument(f"missing_text: no '{text_field}' field")
    if not isinstance(text, str):
        raise NotADocument(f"missing_text: '{text_field}' is {type(text).__name__}, not a string")
    _check_encodable(text, text_field)
    rid = record.get("id")
    source = record.get("source")
    license_ = record.get("license")
    for name, value in (("id", rid), ("source", source), ("license", license_)):
        if isinstance(value, str):
            _check_encodable(value, name)
    used = _USED | {text_field}
    extra = {jsonable(k): jsonable(v) for k, v in record.items() if k not in used}
    metadata = record.get("metadata")
    if isinstance(metadata, dict):
        extra.update((jsonable(str(k)), jsonable(v)) for k, v in metadata.items())
    elif metadata is not None:
        extra["metadata"] = jsonable(metadata)
    extra.update(meta)  # path and line are ours and win
    return Document(
        id=str(rid) if rid is not None and rid != "" else doc_id(sha256, n),
        text=text,
        source=source if isinstance(source, str) and source else task_source,
        license=license_ if isinstance(license_, str) and license_ else task_license,
        source_sha256=sha256,
        meta=extra,
    )


def _check_encodable(value: str, field: str) -> None:
    """JSON's \\uD83D escapes can make lone surrogates, which no UTF-8 file can hold: such a record
    is quarantined rather than silently altered."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise NotADocument(
            f"invalid_unicode: lone surrogate U+{ord(value[e.start]):04X} at character {e.start} of '{field}'"
        ) from None


def jsonable(value: Any) -> Any:
    """`value` with what JSON cannot hold (Parquet timestamps, decimals, bytes) turned into strings."""
    if isinstance(value, str):
        # metadata is not training text: a lone surrogate there is replaced, not fatal
        return value.encode("utf-8", "replace").decode("utf-8") if not value.isascii() else value
    if value is None or isinstance(value, int | float | bool):
        return value
    if isinstance(value, dict):
        return {jsonable(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return "base64:" + base64.b64encode(value).decode("ascii")
    if isinstance(value, decimal.Decimal | _dt.timedelta):
        return str(value)
    return repr(value)
