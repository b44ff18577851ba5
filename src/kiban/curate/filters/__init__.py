"""Document quality rules by language: each family is a config and a `..._reason(text, cfg)`
that returns None to keep a document or the name of the first rule it breaks.

    >>> swallow_reason("短い。", SwallowConfig())
    'swallow_min_length'

`ALL_RULES` maps every rule name (the language step's two included) to a one-line description
with its source, for the data card; docs/filters.md tabulates the thresholds.
"""

from __future__ import annotations

from kiban.curate.filters.english import RULES as _ENGLISH_RULES
from kiban.curate.filters.english import C4Config, GopherConfig, c4_reason, gopher_reason
from kiban.curate.filters.japanese import RULES as _SWALLOW_RULES
from kiban.curate.filters.japanese import SwallowConfig, swallow_reason
from kiban.curate.filters.llmjp import RULES as _LLMJP_RULES
from kiban.curate.filters.llmjp import LlmJpConfig, llmjp_reason
from kiban.curate.language import RULES as _LANGUAGE_RULES

ALL_RULES: dict[str, str] = {**_LANGUAGE_RULES, **_SWALLOW_RULES, **_LLMJP_RULES, **_ENGLISH_RULES}

__all__ = [
    "ALL_RULES",
    "C4Config",
    "GopherConfig",
    "LlmJpConfig",
    "SwallowConfig",
    "c4_reason",
    "gopher_reason",
    "llmjp_reason",
    "swallow_reason",
]
