"""Japanese-aware text normalization: the text kept in the corpus, and the key used for exact dedup.

`normalize` is Unicode NFKC (the form most Japanese corpora use: llm-jp-corpus, Swallow, neologdn)
with the few places where plain NFKC loses meaning for Japanese put back:

- U+FF5E FULLWIDTH TILDE becomes '~' under NFKC, so 「1995～2001年」 would read as ASCII tilde; both
  it and U+301C WAVE DASH are kept as 〜 (U+301C, which NFKC leaves alone).
- The spacing voiced marks ゛゜ (U+309B/U+309C) decompose under NFKC into a space plus a combining
  mark (「か゛」 → 「か ゙」). We turn them into combining marks first so that NFKC composes them
  with the kana before them (か゛ → が); a mark with nothing to compose with stays a spacing ゛゜.
- U+3000 IDEOGRAPHIC SPACE becomes an ASCII space (NFKC's choice, kept: it is whitespace, and
  downstream tokenizers and filters treat all spaces alike).

Everything NFKC does besides is kept on purpose: full-width ASCII becomes half-width
(ＡＢＣ１２３！ → ABC123!), half-width katakana becomes full-width with dakuten composed
(ｶﾞ → ガ), 「」、。・ stay full-width, and compatibility characters are spelled out (① → 1, ㍻ → 平成).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize", "normalize_for_hash"]

# Applied before NFKC. Zero-width characters (U+200B..U+200D, U+2060 word joiner, U+FEFF BOM) and the
# soft hyphen are invisible and only break matching; vertical tab, form feed, NEL and the Unicode
# line/paragraph separators are line breaks in all but name.
_PRE_MAP: dict[str, str] = {
    "\r": "\n",
    "\v": "\n",
    "\f": "\n",
    "\x85": "\n",
    "\u2028": "\n",
    "\u2029": "\n",
    "\u200b": "",
    "\u200c": "",
    "\u200d": "",
    "\u2060": "",
    "\ufeff": "",
    "\u00ad": "",
    "\uff5e": "\u301c",  # FULLWIDTH TILDE -> WAVE DASH (NFKC would make it '~')
    "\u309b": "\u3099",  # spacing dakuten -> combining, so NFKC composes か゛ -> が
    "\u309c": "\u309a",  # spacing handakuten -> combining, は゜ -> ぱ
}
# str.translate with a dict costs ~100 ns a character on non-ASCII text; a regex over the few
# characters that change is far faster when, as usual, there are none or few of them.
_PRE = re.compile("[" + "".join(_PRE_MAP) + "]")
# C0/C1 control characters other than \n and \t (category Cc); \r was already turned into \n.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Combining voiced marks NFKC could not compose (nothing before them takes a dakuten): back to spacing.
_LONE_MARKS_MAP = {"\u3099": "\u309b", "\u309a": "\u309c"}
_LONE_MARKS = re.compile("[\u3099\u309a]")
_TRAILING_WS = re.compile(r"[^\S\n]+(?=\n|\Z)")
_MANY_BLANK_LINES = re.compile(r"\n{4,}")  # 3+ blank lines


def normalize(text: str) -> str:
    """The text kept in the corpus: NFKC with Japanese-aware fixes, clean whitespace. Idempotent.

    >>> normalize("ＡＢＣ１２３！")
    'ABC123!'
    >>> normalize("ｶﾀｶﾅのｶﾞｲﾄﾞ")
    'カタカナのガイド'
    >>> normalize("「東京」、1995～2001年。")
    '「東京」、1995〜2001年。'
    >>> normalize("か゛き\u200bく\u3000け")
    'がきく け'
    >>> normalize("一行目  \\r\\n\\r\\n\\r\\n\\r\\n\\r\\n二行目")
    '一行目\\n\\n\\n二行目'
    """
    text = _PRE.sub(lambda m: _PRE_MAP[m.group()], text.replace("\r\n", "\n"))
    text = _CONTROL.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    text = _LONE_MARKS.sub(lambda m: _LONE_MARKS_MAP[m.group()], text)
    text = _TRAILING_WS.sub("", text)
    return _MANY_BLANK_LINES.sub("\n\n\n", text)


# Everything that is not a letter or digit: whitespace, punctuation, symbols, controls, and also
# combining marks (rare after NFKC, which composes Japanese voiced marks). A regex is ~10x faster
# than a per-character translate table on Japanese text.
_NOT_WORD = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"\d+")


def normalize_for_hash(text: str, *, normalized: bool = False) -> str:
    """The exact-dedup key: `normalize`, lowercase, no whitespace, punctuation or symbols, every
    number as one 0. Pages that differ only in spacing, punctuation, case or numbers (dates,
    counters, prices) get one key, while letters keep their meaning: が ≠ か, kanji and kana stay.
    Idempotent.

    Like datatrove's `simplify_text`, but language-neutral (Unicode categories, not an ASCII list),
    and a run of digits becomes a single 0 rather than one 0 per digit, so 1月 and 12月 match too
    (punctuation goes first, so 1,234,567 is one run). Pass `normalized=True` for text that
    already went through `normalize`, to skip doing it twice.

    >>> normalize_for_hash("「東京」は　2024年１月15日、晴れ。")
    '東京は0年0月0日晴れ'
    >>> normalize_for_hash("Hello, World!") == normalize_for_hash("hello world")
    True
    >>> normalize_for_hash("かがく") == normalize_for_hash("かかく")
    False
    """
    text = _NOT_WORD.sub("", (text if normalized else normalize(text)).lower())
    # Removing a character can put two others side by side that NFKC composes (rarely): a second
    # pass then makes the function idempotent.
    if not unicodedata.is_normalized("NFKC", text):
        text = _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())
    return _DIGITS.sub("0", text)
