"""English document quality rules of Gopher (MassiveWeb) and C4, on whitespace-split words.

Sources:
- Gopher: Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training
  Gopher" (arXiv:2112.11446), App. A.1.1 quality filters and Table A1 repetition thresholds.
- C4: Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
  Transformer" (JMLR 21), §2.2. C4 edits pages line by line; kiban keeps text intact, so C4's
  line removals become document drops: a page is dropped when the lines C4 would delete dominate
  it, or when fewer than 3 sentences survive C4's line rules.

    >>> gopher_reason("too short", GopherConfig())
    'gopher_word_count'
    >>> c4_reason("Lorem ipsum dolor sit amet.", C4Config())
    'c4_lorem_ipsum'
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

_TOP = {2: 0.20, 3: 0.18, 4: 0.16}
_DUP = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}

GOPHER_RULES: dict[str, str] = {
    "gopher_word_count": "fewer than 50 or more than 100,000 words (Gopher, Rae et al. 2021 App. A)",
    "gopher_mean_word_length": "mean word length outside 3–10 characters (Gopher App. A)",
    "gopher_symbol_word_ratio": "'#' or ellipses per word > 0.1 (Gopher App. A)",
    "gopher_bullet_lines": "> 90% of lines start with a bullet (Gopher App. A)",
    "gopher_ellipsis_lines": "> 30% of lines end with an ellipsis (Gopher App. A)",
    "gopher_alpha_words": "< 80% of words contain an alphabetic character (Gopher App. A)",
    "gopher_stop_words": "fewer than 2 of the, be, to, of, and, that, have, with (Gopher App. A)",
    "gopher_dup_line_fraction": "duplicate lines > 30% of lines (Gopher Table A1)",
    "gopher_dup_paragraph_fraction": "duplicate paragraphs > 30% of paragraphs (Gopher Table A1)",
    "gopher_dup_line_char_fraction": "characters in duplicate lines > 20% (Gopher Table A1)",
    "gopher_dup_paragraph_char_fraction": "characters in duplicate paragraphs > 20% (Gopher Table A1)",
    **{
        f"gopher_top_{n}gram_fraction": f"characters in the most frequent word {n}-gram > {t:.0%} "
        "(Gopher Table A1)"
        for n, t in _TOP.items()
    },
    **{
        f"gopher_dup_{n}gram_fraction": f"characters in repeated word {n}-grams > {t:.0%} (Gopher Table A1)"
        for n, t in _DUP.items()
    },
}

C4_RULES: dict[str, str] = {
    "c4_lorem_ipsum": "contains 'lorem ipsum' (C4, Raffel et al. 2020 §2.2)",
    "c4_curly_bracket": "contains '{', a sign of code (C4 §2.2)",
    "c4_javascript": "more than half the lines mention JavaScript (C4 §2.2 removes such lines; kiban drops "
    "the page when they dominate)",
    "c4_policy": "more than half the lines are policy/cookie notices (C4 §2.2 removes such lines; kiban "
    "drops the page when they dominate)",
    "c4_too_few_sentences": "fewer than 3 sentences in lines that end in terminal punctuation and have "
    "≥ 5 words (C4 §2.2)",
}

RULES: dict[str, str] = {**GOPHER_RULES, **C4_RULES}

_BULLETS = ("•", "‣", "◦", "●", "○", "■", "□", "▪", "▫", "-", "*", "–", "—", "·")
_ELLIPSES = ("...", "…")
_ALPHA_RE = re.compile(r"[^\W\d_]")  # a letter of any script
_LOWER_WORD_RE = re.compile(r"[a-z]+")
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


def _int_keys(d: dict[int, float], name: str) -> dict[int, float]:
    """YAML and JSON round trips may turn `{2: 0.2}` into `{"2": 0.2}`; accept both."""
    out: dict[int, float] = {}
    for k, v in d.items():
        try:
            n = int(k)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: keys must be n-gram sizes (integers ≥ 1), got {k!r}") from None
        if n < 1:
            raise ValueError(f"{name}: keys must be n-gram sizes (integers ≥ 1), got {k!r}")
        out[n] = float(v)
    return out


@dataclass
class GopherConfig:
    """Thresholds of Gopher's MassiveWeb rules; the defaults are the published ones."""

    enabled: bool = True
    """Apply these rules to English documents."""
    min_words: int = 50
    """Gopher App. A: drop documents with fewer whitespace-separated words."""
    max_words: int = 100_000
    """Gopher App. A: drop documents with more words."""
    min_mean_word_chars: float = 3.0
    """Gopher App. A: mean word length ≥ this."""
    max_mean_word_chars: float = 10.0
    """Gopher App. A: mean word length ≤ this."""
    max_symbol_word_ratio: float = 0.1
    """Gopher App. A: '#' per word and ellipses ('...', '…') per word each ≤ this."""
    max_bullet_line_fraction: float = 0.9
    """Gopher App. A: lines starting with a bullet (•, -, *, ...) / non-empty lines ≤ this."""
    max_ellipsis_line_fraction: float = 0.3
    """Gopher App. A: lines ending with an ellipsis / non-empty lines ≤ this."""
    min_alpha_word_fraction: float = 0.8
    """Gopher App. A: words containing at least one letter / words ≥ this."""
    stop_words: list[str] = field(
        default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"]
    )
    """Gopher App. A: the English stop words a document must use."""
    min_stop_words: int = 2
    """Gopher App. A: at least this many *different* stop words must occur (our reading of
    "at least two of the following English words")."""
    max_dup_line_fraction: float = 0.30
    """Gopher Table A1: repeated copies of lines / non-empty lines ≤ this."""
    max_dup_paragraph_fraction: float = 0.30
    """Gopher Table A1: repeated copies of paragraphs (split at blank lines) / paragraphs ≤ this."""
    max_dup_line_char_fraction: float = 0.20
    """Gopher Table A1: characters in repeated copies of lines / characters in lines ≤ this."""
    max_dup_paragraph_char_fraction: float = 0.20
    """Gopher Table A1: characters in repeated copies of paragraphs / characters ≤ this."""
    max_top_ngram_fraction: dict[int, float] = field(default_factory=lambda: dict(_TOP))
    """Gopher Table A1: characters in all occurrences of the most frequent word n-gram /
    characters in words ≤ this, for each n."""
    max_dup_ngram_fraction: dict[int, float] = field(default_factory=lambda: dict(_DUP))
    """Gopher Table A1: characters in words covered by any word n-gram that occurs more than
    once / characters in words ≤ this, for each n."""
    ngram_max_chars: int = 20_000
    """kiban: the n-gram rules look at the words in the first this-many characters (speed cap)."""

    def __post_init__(self) -> None:
        self.max_top_ngram_fraction = _int_keys(self.max_top_ngram_fraction, "max_top_ngram_fraction")
        self.max_dup_ngram_fraction = _int_keys(self.max_dup_ngram_fraction, "max_dup_ngram_fraction")
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) must be ≤ max_words ({self.max_words})")
        if self.min_mean_word_chars > self.max_mean_word_chars:
            raise ValueError(
                f"min_mean_word_chars ({self.min_mean_word_chars}) must be ≤ "
                f"max_mean_word_chars ({self.max_mean_word_chars})"
            )
        self.stop_words = [w.lower() for w in self.stop_words]


@dataclass
class C4Config:
    """C4's page rules as document drops; thresholds marked kiban are not from the paper."""

    enabled: bool = True
    """Apply these rules to English documents."""
    drop_lorem_ipsum: bool = True
    """C4 §2.2: drop any page containing "lorem ipsum" (any case)."""
    drop_curly_bracket: bool = True
    """C4 §2.2: drop any page containing "{" (code). Turn off for corpora that should keep code."""
    max_javascript_line_fraction: float = 0.5
    """kiban: lines mentioning "javascript" (which C4 §2.2 deletes) / non-empty lines ≤ this."""
    max_policy_line_fraction: float = 0.5
    """kiban: lines with C4's policy strings ("terms of use", "privacy policy", "cookie policy",
    "uses cookies", "use of cookies", "use cookies"), which C4 §2.2 deletes / lines ≤ this."""
    min_sentences: int = 3
    """C4 §2.2: at least this many sentences in the lines C4 keeps."""
    min_words_per_line: int = 5
    """C4 §2.2: lines with fewer words are not kept (so their sentences do not count)."""


def gopher_reason(text: str, cfg: GopherConfig) -> str | None:
    """The name of the first Gopher rule `text` breaks, or None to keep it.

    Quality rules run before repetition rules, in the paper's order.
    """
    if not cfg.enabled:
        return None
    words = text.split()
    n_words = len(words)
    if n_words == 0 or not cfg.min_words <= n_words <= cfg.max_words:
        return "gopher_word_count"
    word_chars = sum(map(len, words))
    if not cfg.min_mean_word_chars <= word_chars / n_words <= cfg.max_mean_word_chars:
        return "gopher_mean_word_length"
    ellipses = text.count("...") + text.count("…")
    if max(text.count("#"), ellipses) / n_words > cfg.max_symbol_word_ratio:
        return "gopher_symbol_word_ratio"
    lines = [s for s in (raw.strip() for raw in text.split("\n")) if s]
    if lines and sum(1 for s in lines if s.startswith(_BULLETS)) / len(lines) > cfg.max_bullet_line_fraction:
        return "gopher_bullet_lines"
    if lines and sum(1 for s in lines if s.endswith(_ELLIPSES)) / len(lines) > cfg.max_ellipsis_line_fraction:
        return "gopher_ellipsis_lines"
    if sum(1 for w in words if _ALPHA_RE.search(w)) / n_words < cfg.min_alpha_word_fraction:
        return "gopher_alpha_words"
    used = set(_LOWER_WORD_RE.findall(text.lower()))
    if len(used.intersection(cfg.stop_words)) < cfg.min_stop_words:
        return "gopher_stop_words"

    frac, char_frac = _duplicate_fractions(lines)
    if frac > cfg.max_dup_line_fraction:
        return "gopher_dup_line_fraction"
    paragraphs = [p for p in (raw.strip() for raw in re.split(r"\n\s*\n", text)) if p]
    p_frac, p_char_frac = _duplicate_fractions(paragraphs)
    if p_frac > cfg.max_dup_paragraph_fraction:
        return "gopher_dup_paragraph_fraction"
    if char_frac > cfg.max_dup_line_char_fraction:
        return "gopher_dup_line_char_fraction"
    if p_char_frac > cfg.max_dup_paragraph_char_fraction:
        return "gopher_dup_paragraph_char_fraction"

    head = words if len(text) <= cfg.ngram_max_chars else text[: cfg.ngram_max_chars].split()
    return _word_ngram_reason(head, cfg.max_top_ngram_fraction, cfg.max_dup_ngram_fraction)


def _duplicate_fractions(items: list[str]) -> tuple[float, float]:
    """(repeated copies / items, characters in repeated copies / characters)."""
    if not items:
        return 0.0, 0.0
    counts = Counter(items)
    if len(counts) == len(items):
        return 0.0, 0.0
    dup_chars = sum(len(s) * (c - 1) for s, c in counts.items() if c > 1)
    total_chars = sum(map(len, items))
    return (len(items) - len(counts)) / len(items), dup_chars / total_chars if total_chars else 0.0


def _word_ngram_reason(words: list[str], top_max: dict[int, float], dup_max: dict[int, float]) -> str | None:
    """Gopher's n-gram rules over word ids; each n-gram is reduced to a 64-bit polynomial hash."""
    limits = sorted({*top_max, *dup_max})
    if not limits or len(words) < 2:
        return None
    vocab: dict[str, int] = {}
    ids = np.array([vocab.setdefault(w, len(vocab)) for w in words], dtype=np.uint64)  # (W,)
    lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))  # (W,)
    total = int(lens.sum())
    csum = np.concatenate(([0], np.cumsum(lens)))  # (W+1,) chars before word i
    h = ids.copy()
    with np.errstate(over="ignore"):
        for n in range(2, limits[-1] + 1):
            if len(h) <= 1:
                return None
            h = h[:-1] * _HASH_MUL + ids[n - 1 :]  # (W-n+1,) hashes of word n-grams
            if n not in top_max and n not in dup_max:
                continue
            _, first, inverse, counts = np.unique(
                h, return_index=True, return_inverse=True, return_counts=True
            )
            if n in top_max:
                top = int(np.argmax(counts))
                start = int(first[top])
                top_chars = int(counts[top]) * int(csum[start + n] - csum[start])
                if top_chars / total > top_max[n]:
                    return f"gopher_top_{n}gram_fraction"
            if n in dup_max:
                starts = np.flatnonzero(counts[inverse] > 1)
                if len(starts):
                    # Mark words covered by any repeated n-gram: +1 at each start, -1 n words later.
                    delta = np.zeros(len(words) + 1, dtype=np.int64)
                    np.add.at(delta, starts, 1)
                    np.add.at(delta, starts + n, -1)
                    covered = np.cumsum(delta[:-1]) > 0
                    if int(lens[covered].sum()) / total > dup_max[n]:
                        return f"gopher_dup_{n}gram_fraction"
    return None


_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_TERMINAL = (".", "!", "?", '"', "”")  # C4 §2.2: period, exclamation mark, question mark, end quote
_SENTENCE_END_RE = re.compile(r"[.!?]+[\"”’')\]]*(?=\s|$)")


def c4_reason(text: str, cfg: C4Config) -> str | None:
    """The name of the first C4 rule `text` breaks, or None to keep it.

    Sentences are counted as runs of . ! ? followed by a space or the line's end (C4 used a
    sentence tokenizer; this is a cheap stand-in).
    """
    if not cfg.enabled:
        return None
    lower = text.lower()
    if cfg.drop_lorem_ipsum and "lorem ipsum" in lower:
        return "c4_lorem_ipsum"
    if cfg.drop_curly_bracket and "{" in text:
        return "c4_curly_bracket"
    lines = [s for s in (raw.strip() for raw in lower.split("\n")) if s]
    if not lines:
        return "c4_too_few_sentences"
    js = [("javascript" in s) for s in lines]
    if sum(js) / len(lines) > cfg.max_javascript_line_fraction:
        return "c4_javascript"
    policy = [any(p in s for p in _POLICY) for s in lines]
    if sum(policy) / len(lines) > cfg.max_policy_line_fraction:
        return "c4_policy"
    sentences = 0
    for s, is_js, is_policy in zip(lines, js, policy, strict=True):
        if is_js or is_policy or not s.endswith(_TERMINAL) or len(s.split()) < cfg.min_words_per_line:
            continue
        sentences += max(1, len(_SENTENCE_END_RE.findall(s)))
    if sentences < cfg.min_sentences:
        return "c4_too_few_sentences"
    return None
