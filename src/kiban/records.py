"""The typed records that cross module boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Document:
    """One document flowing through a stage.

    `id` is stable across runs (derived from the source file's hash and the record's position
    unless the record brings its own). `meta` holds what only one stage needs: `path`, `line`,
    `lang`, `lang_score`, `pii` counts, ...
    """

    id: str
    text: str
    source: str
    license: str
    source_sha256: str
    meta: dict[str, Any] = field(default_factory=dict)
