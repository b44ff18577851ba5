"""Japanese document quality rules of the Swallow corpus, computed on characters.

Source: Okazaki et al. 2024, "Building a Large Japanese Web Corpus for Large Language Models"
(arXiv:2404.17733), §3 quality filtering, and the quality-annotation script published with it
(github.com/swallow-llm/swallow-corpus, `apply_v1`), whose definitions we follow where the paper
is terse: Swallow calls each line a *paragraph* and splits lines into *sentences* at 。．！？!?;
its character classes exclude the prolonged-sound mark ー from katakana; the hiragana and
katakana fractions are taken over Japanese characters, the Japanese fraction over all characters.
The repetition rules are Gopher's (Rae et al. 2021, Table A1) on characters instead of words.

    >>> swallow_reason("短い文書です。", SwallowConfig())
    'swallow_min_length'

No word segmenter is needed. Character n-gram rules look at the first `ngram_max_chars`
characters only, so a 1 MB page costs what a 20 kB page does.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_NG_WORDS_DEFAULT = Path(__file__).with_name("ngwords_ja.txt")

RULES: dict[str, str] = {
    "swallow_min_length": "fewer than 400 characters (Swallow, Okazaki et al. 2024 §3)",
    "swallow_japanese_fraction": "Japanese characters (kana, kanji, 。、) < 50% of all characters (Swallow §3)",
    "swallow_min_japanese_chars": "fewer than 400 Japanese characters (Swallow quality script)",
    "swallow_hiragana_fraction": "hiragana < 20% of Japanese characters (Swallow §3)",
    "swallow_katakana_fraction": "katakana > 50% of Japanese characters (Swallow §3)",
    "swallow_dup_paragraph_fraction": "duplicate lines > 30% of lines (Swallow §3, from Gopher Table A1)",
    "swallow_dup_paragraph_char_fraction": "characters in duplicate lines > 20% (Swallow §3, Gopher Table A1)",
    "swallow_dup_sentence_fraction": "duplicate sentences > 30% of sentences (Swallow §3, Gopher Table A1)",
    "swallow_dup_sentence_char_fraction": "characters in duplicate sentences > 20% (Swallow §3, Gopher Table A1)",
    "swallow_avg_sentence_length": "mean sentence length outside 20–90 characters (Swallow §3)",
    "swallow_max_sentence_length": "a sentence longer than 200 characters (Swallow §3)",
    "swallow_ellipsis_fraction": "sentences ending in an ellipsis > 20% (Swallow §3)",
    "swallow_ng_word_fraction": "characters covered by NG words > 5% (Swallow §3 NG expressions)",
    **{
        f"swallow_top_{n}gram_fraction": f"most frequent character {n}-gram > {t:.0%} of {n}-grams "
        "(Swallow §3, Gopher Table A1)"
        for n, t in {2: 0.20, 3: 0.18, 4: 0.16}.items()
    },
    **{
        f"swallow_dup_{n}gram_fraction": f"distinct character {n}-grams seen twice or more > {t:.0%} "
        "(Swallow §3, Gopher Table A1)"
        for n, t in {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}.items()
    },
}


@dataclass
class SwallowConfig:
    """Thresholds of the Swallow corpus rules; the defaults are the published ones."""

    enabled: bool = True
    """Apply these rules to Japanese documents."""
    min_chars: int = 400
    """Swallow §3: drop documents with fewer characters than this (all characters, newlines included)."""
    min_japanese_chars: int = 400
    """Swallow's quality script: drop documents with fewer Japanese characters than this."""
    min_japanese_fraction: float = 0.5
    """Swallow §3: Japanese characters (hiragana, katakana, kanji, 。．！？、，) / all characters ≥ this."""
    min_hiragana_fraction: float = 0.2
    """Swallow §3: hiragana / Japanese characters ≥ this (text without hiragana is rarely prose)."""
    max_katakana_fraction: float = 0.5
    """Swallow §3: katakana / Japanese characters ≤ this (product lists, tag clouds)."""
    max_dup_paragraph_fraction: float = 0.30
    """Swallow §3 (Gopher Table A1): duplicate lines / lines ≤ this. Empty lines are not counted."""
    max_dup_paragraph_char_fraction: float = 0.20
    """Swallow §3 (Gopher Table A1): characters in repeated copies of lines / characters in lines ≤ this."""
    max_dup_sentence_fraction: float = 0.30
    """Swallow §3 (Gopher's line rule applied to sentences): duplicate sentences / sentences ≤ this."""
    max_dup_sentence_char_fraction: float = 0.20
    """Swallow §3: characters in repeated copies of sentences / characters in sentences ≤ this."""
    min_avg_sentence_chars: float = 20.0
    """Swallow §3: mean sentence length ≥ this many characters (menus, lists of short items)."""
    max_avg_sentence_chars: float = 90.0
    """Swallow §3: mean sentence length ≤ this many characters (text without 。)."""
    max_sentence_chars: int = 200
    """Swallow §3: no sentence longer than this many characters."""
    max_ellipsis_sentence_fraction: float = 0.2
    """Swallow §3: sentences ending in …, ‥, .. (or ...) or ・・・ / sentences ≤ this (truncated snippets)."""
    max_ng_word_char_fraction: float = 0.05
    """Swallow §3: characters covered by NG-word matches / all characters ≤ this."""
    ng_words_path: str | None = None
    """NG-word list, one term a line, `#` comments; None uses kiban's small starter list
    (`ngwords_ja.txt`), which you are expected to replace with your own."""
    max_top_ngram_fraction: dict[int, float] = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    """Swallow §3 (Gopher Table A1 on characters): count of the most frequent character n-gram /
    count of all n-grams ≤ this, for each n."""
    max_dup_ngram_fraction: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    """Swallow §3 (Gopher Table A1 on characters): distinct character n-grams occurring more than
    once / distinct n-grams ≤ this, for each n (Swallow's script counts distinct n-grams; Gopher
    counts covered characters)."""
    ngram_max_chars: int = 20_000
    """kiban: the n-gram rules look at the first this-many characters only (speed cap)."""

    def __post_init__(self) -> None:
        self.max_top_ngram_fraction = _int_keys(self.max_top_ngram_fraction, "max_top_ngram_fraction")
        self.max_dup_ngram_fraction = _int_keys(self.max_dup_ngram_fraction, "max_dup_ngram_fraction")
        if self.min_avg_sentence_chars > self.max_avg_sentence_chars:
            raise ValueError(
                f"min_avg_sentence_chars ({self.min_avg_sentence_chars}) must be ≤ "
                f"max_avg_sentence_chars ({self.max_avg_sentence_chars})"
            )
        if self.ngram_max_chars < 1:
            raise ValueError(f"ngram_max_chars must be ≥ 1, got {self.ngram_max_chars}")
        if self.ng_words_path is not None and not Path(self.ng_words_path).is_file():
            raise ValueError(f"ng_words_path: file not found: {self.ng_words_path}")


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


# Swallow's quality script, character classes (code points):
_HIRAGANA = (0x3041, 0x3096)  # ぁ..ゖ
_KATAKANA = (0x30A1, 0x30FA)  # ァ..ヺ (ー U+30FC is not counted, as in Swallow)
_KANJI = ((0x3400, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))
_KANJI_EXTRA = np.array([ord("々"), ord("〇"), ord("〻")], dtype=np.uint32)
_PUNCT = np.array([ord(c) for c in "。．！？、，"], dtype=np.uint32)

# A sentence runs to 。．！？!? (closing brackets after it stay with it) or to the end of its line.
_SENTENCE_RE = re.compile(r"[^。．！？!?\n]+(?:[。．！？!?]+[」』）)]*)?")
# kiban normalizes with NFKC before filtering, which turns ．into "." and … into "...": a lone "."
# before a space, a non-ASCII character or the end ends a sentence too (not "3.14", "a.com", "...").
_LONE_DOT_RE = re.compile(r"(?<!\.)\.(?!\.)(?=\s|[^\x00-\x7f]|$)")
_ELLIPSES = ("…", "‥", "..", "・・・")  # ".." also matches "..." (NFKC of …) and NFKC of ‥
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio); any odd value works


def swallow_reason(text: str, cfg: SwallowConfig) -> str | None:
    """The name of the first Swallow rule `text` breaks, or None to keep it.

    Rules run cheap first; the order decides only which name a bad document is counted under.

    >>> doc = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。" * 20
    >>> swallow_reason(doc, SwallowConfig())  # the same 3 sentences, 20 times
    'swallow_dup_sentence_fraction'
    """
    if not cfg.enabled:
        return None
    n_chars = len(text)
    if n_chars < cfg.min_chars:
        return "swallow_min_length"

    cps = _codepoints(text)
    hira = _count_range(cps, *_HIRAGANA)
    kata = _count_range(cps, *_KATAKANA)
    kanji = sum(_count_range(cps, lo, hi) for lo, hi in _KANJI) + int(np.isin(cps, _KANJI_EXTRA).sum())
    japanese = hira + kata + kanji + int(np.isin(cps, _PUNCT).sum())
    if japanese / max(n_chars, 1) < cfg.min_japanese_fraction:
        return "swallow_japanese_fraction"
    if japanese < cfg.min_japanese_chars:
        return "swallow_min_japanese_chars"
    if hira / max(japanese, 1) < cfg.min_hiragana_fraction:
        return "swallow_hiragana_fraction"
    if kata / max(japanese, 1) > cfg.max_katakana_fraction:
        return "swallow_katakana_fraction"

    paragraphs = [line for line in (raw.strip() for raw in text.split("\n")) if line]
    split_text = _LONE_DOT_RE.sub("．", text) if "." in text else text  # same length, same offsets
    sentences = [s for s in (m.strip() for m in _SENTENCE_RE.findall(split_text)) if s]
    frac, char_frac = _duplicate_fractions(paragraphs)
    if frac > cfg.max_dup_paragraph_fraction:
        return "swallow_dup_paragraph_fraction"
    if char_frac > cfg.max_dup_paragraph_char_fraction:
        return "swallow_dup_paragraph_char_fraction"
    frac, char_frac = _duplicate_fractions(sentences)
    if frac > cfg.max_dup_sentence_fraction:
        return "swallow_dup_sentence_fraction"
    if char_frac > cfg.max_dup_sentence_char_fraction:
        return "swallow_dup_sentence_char_fraction"

    lengths = [len(s) for s in sentences]
    avg = sum(lengths) / len(lengths) if lengths else 0.0
    if not cfg.min_avg_sentence_chars <= avg <= cfg.max_avg_sentence_chars:
        return "swallow_avg_sentence_length"
    if max(lengths, default=0) > cfg.max_sentence_chars:
        return "swallow_max_sentence_length"
    ellipses = sum(1 for s in sentences if s.endswith(_ELLIPSES))
    if sentences and ellipses / len(sentences) > cfg.max_ellipsis_sentence_fraction:
        return "swallow_ellipsis_fraction"

    if ng_word_chars(text, cfg.ng_words_path) / max(n_chars, 1) > cfg.max_ng_word_char_fraction:
        return "swallow_ng_word_fraction"

    head = cps[: cfg.ngram_max_chars]
    return _ngram_reason(head, cfg.max_top_ngram_fraction, cfg.max_dup_ngram_fraction)


def _codepoints(text: str) -> np.ndarray:
    # surrogatepass: a lone surrogate (valid in a Python str, e.g. from JSON "\\ud83d") is one code point.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # (n_chars,)


def _count_range(cps: np.ndarray, lo: int, hi: int) -> int:
    # One unsigned compare: values below `lo` wrap around to huge numbers.
    return int(np.count_nonzero((cps - np.uint32(lo)) <= np.uint32(hi - lo)))


def _duplicate_fractions(items: list[str]) -> tuple[float, float]:
    """(repeated copies / items, characters in repeated copies / characters), as in Gopher."""
    if not items:
        return 0.0, 0.0
    counts = Counter(items)
    if len(counts) == len(items):
        return 0.0, 0.0
    dup_items = len(items) - len(counts)
    dup_chars = sum(len(s) * (c - 1) for s, c in counts.items() if c > 1)
    total_chars = sum(len(s) for s in items)
    return dup_items / len(items), dup_chars / total_chars if total_chars else 0.0


def _ngram_reason(cps: np.ndarray, top_max: dict[int, float], dup_max: dict[int, float]) -> str | None:
    """Character n-gram rules over code points, each n-gram reduced to a 64-bit polynomial hash.

    A hash collision could only merge two n-grams' counts; at 2^64 values and documents of
    20k characters that is negligible next to the thresholds' precision.
    """
    limits = sorted({*top_max, *dup_max})
    if not limits:
        return None
    a = cps.astype(np.uint64)
    h = a.copy()  # hash of the 1-gram starting at each position
    with np.errstate(over="ignore"):
        for n in range(2, limits[-1] + 1):
            if len(h) <= 1:
                return None
            h = h[:-1] * _HASH_MUL + a[n - 1 :]  # (n_chars - n + 1,) hashes of n-grams
            if n not in top_max and n not in dup_max:
                continue
            s = np.sort(h)
            new = s[1:] != s[:-1]  # (m-1,) True where a new distinct n-gram starts
            if n in top_max and _top_count(new) / len(h) > top_max[n]:
                return f"swallow_top_{n}gram_fraction"
            if n in dup_max:
                repeat = ~new
                # distinct n-grams seen twice or more = runs of `repeat`
                seen_twice = np.count_nonzero(repeat[1:] & new[:-1]) + (int(repeat[0]) if len(repeat) else 0)
                if seen_twice / (np.count_nonzero(new) + 1) > dup_max[n]:
                    return f"swallow_dup_{n}gram_fraction"
    return None


def _top_count(new: np.ndarray) -> int:
    """Occurrences of the most frequent value, from the sorted array's run starts."""
    bounds = np.flatnonzero(new)
    if len(bounds) == 0:
        return len(new) + 1
    return int(max(bounds[0] + 1, np.max(np.diff(bounds)) if len(bounds) > 1 else 0, len(new) - bounds[-1]))


@functools.lru_cache(maxsize=8)
def load_ng_words(path: str | None = None) -> tuple[str, ...]:
    """The NG words in `path` (kiban's starter list when None): one a line, `#` starts a comment."""
    p = Path(path) if path is not None else _NG_WORDS_DEFAULT
    words = {line.split("#", 1)[0].strip() for line in p.read_text(encoding="utf-8").splitlines()}
    return tuple(sorted((w for w in words if w), key=lambda w: (-len(w), w)))


@functools.lru_cache(maxsize=8)
def _ng_regex(path: str | None) -> re.Pattern[str] | None:
    words = load_ng_words(path)
    # Longest first, so a longer term wins over a term it contains.
    return re.compile("|".join(map(re.escape, words))) if words else None


def ng_word_hits(text: str, path: str | None = None) -> list[str]:
    """Non-overlapping NG-word matches in `text`, left to right.

    >>> ng_word_hits("今日は晴れです。")
    []
    """
    words = load_ng_words(path)
    # `in` is a C substring search; most documents contain no NG word and skip the regex.
    if not any(w in text for w in words):
        return []
    pattern = _ng_regex(path)
    return pattern.findall(text) if pattern is not None else []


def ng_word_chars(text: str, path: str | None = None) -> int:
    """Characters of `text` covered by NG-word matches."""
    return sum(len(m) for m in ng_word_hits(text, path))
