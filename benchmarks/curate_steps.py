"""Per-document cost of each `kiban curate` step, one core, on the benchmark corpus.

    .venv/bin/python benchmarks/curate_steps.py        # after curate_vs_datatrove.py built the corpus

Not a claim against a peer (curate_vs_datatrove.py is): it shows where kiban's time goes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kiban.curate.dedup import DedupConfig, MinHasher, exact_key
from kiban.curate.filters import LlmJpConfig, SwallowConfig, llmjp_reason, swallow_reason
from kiban.curate.language import LanguageConfig, language_reason
from kiban.text import normalize, normalize_for_hash
from kiban.text.pii import PiiConfig, redact

CORPUS = Path(__file__).parent / ".work" / "corpus" / "corpus"


def main() -> int:
    files = sorted(CORPUS.glob("*.jsonl"))
    if not files:
        print(f"no corpus under {CORPUS}: run benchmarks/curate_vs_datatrove.py first", file=sys.stderr)
        return 2
    raw = [json.loads(line)["text"] for line in files[0].read_text(encoding="utf-8").splitlines()]
    texts = [normalize(t) for t in raw]
    hasher = MinHasher(DedupConfig())
    steps: dict[str, Callable[[str], object]] = {
        "normalize": normalize,
        "language id": lambda t: language_reason(t, LanguageConfig()),
        "Swallow rules": lambda t: swallow_reason(t, SwallowConfig()),
        "llm-jp rules": lambda t: llmjp_reason(t, LlmJpConfig()),
        "PII redaction": lambda t: redact(t, PiiConfig()),
        "exact key": lambda t: exact_key(normalize_for_hash(t, normalized=True)),
        "MinHash": hasher.sketch,
    }
    print(f"{len(texts)} documents, {sum(map(len, texts)) / len(texts):.0f} characters on average")
    total = 0.0
    for name, step in steps.items():
        step(texts[0])  # warm caches and lazy model loads
        t0 = time.perf_counter()
        for t in texts:
            step(t)
        ms = (time.perf_counter() - t0) / len(texts) * 1e3
        total += ms
        print(f"{name:14s} {ms:6.3f} ms/doc")
    print(f"{'all steps':14s} {total:6.3f} ms/doc = {1e3 / total:,.0f} docs/s per core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
