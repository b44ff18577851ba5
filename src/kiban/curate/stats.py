"""The curation funnel: documents and characters in, removed by each named rule, out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kiban.records import Document


@dataclass
class Stats:
    """Counters for one task; tasks' stats are merged with `+=`.

    `drop(rule, doc)` counts a removal under its rule name (`swallow_hiragana_fraction`, ...)
    and hands the document to `on_drop` (the rejected-documents writer), so nothing is lost.
    """

    counters: Counter[str] = field(default_factory=Counter)
    on_drop: Callable[[Document, str], None] | None = field(default=None, repr=False, compare=False)

    def add(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def drop(self, rule: str, doc: Document | None = None) -> None:
        self.counters[f"removed.{rule}.docs"] += 1
        if doc is not None:
            self.counters[f"removed.{rule}.chars"] += len(doc.text)
            if self.on_drop is not None:
                self.on_drop(doc, rule)

    def __iadd__(self, other: Stats) -> Stats:
        self.counters.update(other.counters)
        return self

    def to_dict(self) -> dict[str, int]:
        return dict(sorted(self.counters.items()))

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Stats:
        return cls(Counter(d))

    def funnel(self) -> dict[str, Any]:
        """`{"in": {docs, chars}, "removed": {rule: {docs, chars}}, "out": {docs, chars}}`.

        Documents add up (in − removed = out). Characters are counted as each step saw them:
        `in` before normalization, `removed` when the rule fired, `out` after PII placeholders.
        """
        removed: dict[str, dict[str, int]] = {}
        for key, n in self.counters.items():
            if key.startswith("removed."):
                rule, what = key[len("removed.") :].rsplit(".", 1)
                removed.setdefault(rule, {"docs": 0, "chars": 0})[what] += n
        return {
            "in": {"docs": self.counters["in.docs"], "chars": self.counters["in.chars"]},
            "removed": dict(sorted(removed.items(), key=lambda kv: -kv[1]["docs"])),
            "out": {"docs": self.counters["out.docs"], "chars": self.counters["out.chars"]},
        }
