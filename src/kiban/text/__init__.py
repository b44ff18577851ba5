"""Japanese-aware text primitives shared by stages: normalization, character classes, PII.

Pure functions over `str`, cheap enough to run on every document of a corpus.
"""

from __future__ import annotations

from kiban.text.charclass import CharCounts, count_classes
from kiban.text.normalize import normalize, normalize_for_hash
from kiban.text.pii import PiiConfig, PiiMatch, Redaction, find_pii, redact

__all__ = [
    "CharCounts",
    "PiiConfig",
    "PiiMatch",
    "Redaction",
    "count_classes",
    "find_pii",
    "normalize",
    "normalize_for_hash",
    "redact",
]
