"""Japanese document rules of llm-jp-corpus.

Sources: LLM-jp 2024, "LLM-jp: A Cross-organizational Project for the Research and Development of
Fully Open Japanese LLMs" (arXiv:2407.03963), corpus section, and the filters of
github.com/llm-jp/llm-jp-corpus (`scripts/filters.py`, v2), which build on HojiChar's
`AcceptJapanese` and `DiscardRareKuten`. Defaults are those in that code:

- `is_japanese`: HojiChar `AcceptJapanese` looks for hiragana or katakana (ぁ-ん, ァ-ン) in the
  first 50 characters;
- `has_good_average_sentence_length`: HojiChar `DiscardRareKuten` with a maximum mean length of
  250 characters between 。;
- `is_not_adult_content` (and the discrimination and violence lists): more than 3 keyword hits;
- `has_good_compression_ratio`: zlib (level 9) compressed / raw UTF-8 bytes within [0.3, 0.7].

    >>> llmjp_reason("This page has no kana at all.", LlmJpConfig())
    'llmjp_kana_near_start'
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from kiban.curate.filters.japanese import ng_word_hits

RULES: dict[str, str] = {
    "llmjp_kana_near_start": "no hiragana or katakana in the first 50 characters "
    "(llm-jp-corpus is_japanese, HojiChar AcceptJapanese)",
    "llmjp_avg_sentence_length": "more than 250 characters per 。 "
    "(llm-jp-corpus has_good_average_sentence_length, HojiChar DiscardRareKuten)",
    "llmjp_ng_words": "more than 3 NG-word hits (llm-jp-corpus is_not_adult_content)",
    "llmjp_compression_ratio": "zlib compressed/raw UTF-8 size outside [0.3, 0.7] "
    "(llm-jp-corpus has_good_compression_ratio)",
}

_KANA_RE = re.compile(r"[ぁ-んァ-ン]")  # HojiChar AcceptJapanese's class


@dataclass
class LlmJpConfig:
    """Thresholds of the llm-jp-corpus rules; the defaults are those of its code."""

    enabled: bool = True
    """Apply these rules to Japanese documents."""
    kana_lookup_chars: int = 50
    """llm-jp-corpus `is_japanese` (HojiChar AcceptJapanese, lookup_size=50): the first this-many
    characters must contain a hiragana or katakana character."""
    max_avg_sentence_chars: float = 250.0
    """llm-jp-corpus (HojiChar DiscardRareKuten, max_average_sentence_length=250): characters
    per 。 (len(text) / count of 。) must not exceed this; text without 。 fails."""
    max_ng_word_hits: int = 3
    """llm-jp-corpus `is_not_adult_content` (max_allowed_num=3): drop documents with more hits."""
    ng_words_path: str | None = None
    """NG-word list, one term a line; None uses kiban's starter list (`ngwords_ja.txt`)."""
    min_compression_ratio: float = 0.3
    """llm-jp-corpus `has_good_compression_ratio` (min_score=0.3): below this the text is
    repetitive (zlib level 9 on UTF-8 bytes)."""
    max_compression_ratio: float = 0.7
    """llm-jp-corpus `has_good_compression_ratio` (max_score=0.7): above this the text is
    random or too short to compress."""
    compression_max_chars: int = 100_000
    """kiban: compress at most this many leading characters (speed cap for huge documents)."""

    def __post_init__(self) -> None:
        if self.min_compression_ratio > self.max_compression_ratio:
            raise ValueError(
                f"min_compression_ratio ({self.min_compression_ratio}) must be ≤ "
                f"max_compression_ratio ({self.max_compression_ratio})"
            )
        if self.max_avg_sentence_chars <= 0:
            raise ValueError(f"max_avg_sentence_chars must be > 0, got {self.max_avg_sentence_chars}")
        if self.kana_lookup_chars < 1:
            raise ValueError(f"kana_lookup_chars must be ≥ 1, got {self.kana_lookup_chars}")
        if self.ng_words_path is not None and not Path(self.ng_words_path).is_file():
            raise ValueError(f"ng_words_path: file not found: {self.ng_words_path}")


def llmjp_reason(text: str, cfg: LlmJpConfig) -> str | None:
    """The name of the first llm-jp-corpus rule `text` breaks, or None to keep it.

    >>> llmjp_reason("あああ。" * 200, LlmJpConfig())
    'llmjp_compression_ratio'
    """
    if not cfg.enabled:
        return None
    if not _KANA_RE.search(text, 0, cfg.kana_lookup_chars):
        return "llmjp_kana_near_start"
    # HojiChar DiscardRareKuten: fewer 。 than len(text) / 250, i.e. more than 250 characters per 。.
    if text.count("。") < len(text) / cfg.max_avg_sentence_chars:
        return "llmjp_avg_sentence_length"
    if len(ng_word_hits(text, cfg.ng_words_path)) > cfg.max_ng_word_hits:
        return "llmjp_ng_words"
    if (
        not cfg.min_compression_ratio
        <= compression_ratio(text[: cfg.compression_max_chars])
        <= (cfg.max_compression_ratio)
    ):
        return "llmjp_compression_ratio"
    return None


def compression_ratio(text: str) -> float:
    """len(zlib.compress(utf8, 9)) / len(utf8); 0.0 for empty text.

    >>> round(compression_ratio("a" * 200), 2)
    0.06
    """
    raw = text.encode("utf-8", "surrogatepass")  # lone surrogates (from JSON escapes) must not raise
    return len(zlib.compress(raw, 9)) / len(raw) if raw else 0.0
