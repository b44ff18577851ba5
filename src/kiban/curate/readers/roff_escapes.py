"""roff escape sequences (`\\fB`, `\\-`, `\\(em`, `\\*(lq`, `\\s-1`, ...) → plain characters.

>>> expand_escapes(r"\\fB\\-\\-all\\fR \\(em \\(lqquoted\\(rq")
'--all — “quoted”'
"""

from __future__ import annotations

import re

NO_SPACE = "\x01"
"""Marks a `\\c` line end: the next line joins this one without a space."""

# Named glyphs (groff_char(7)); an unknown name renders nothing.
GLYPHS = {
    "em": "—", "en": "–", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "bu": "•", "co": "©", "rg": "®",
    "tm": "™", "lq": "“", "rq": "”", "oq": "‘", "cq": "’", "ga": "`", "ti": "~", "ha": "^", "rs": "\\",
    "sl": "/", "pl": "+", "eq": "=", "mu": "×", "di": "÷", "+-": "±", "de": "°", "->": "→", "<-": "←",
    "<=": "≤", ">=": "≥", "!=": "≠", "==": "≡", "ua": "↑", "da": "↓", "sc": "§", "ps": "¶", "dg": "†",
    "fm": "′", "Fo": "«", "Fc": "»", "fo": "‹", "fc": "›", "la": "⟨", "ra": "⟩", "ts": '"', "ul": "_",
    "ba": "|", "br": "|", "or": "|", "lh": "☜", "rh": "☞", "aa": "´", "ah": "ˇ", "vc": "ˇ", "pd": "∂",
    "**": "∗", "sq": "□", "OK": "✓", "u ": "", ":a": "ä", ":o": "ö", ":u": "ü", ":A": "Ä", ":O": "Ö",
    ":U": "Ü", "ss": "ß", "'a": "á", "'e": "é", "`a": "à", "`e": "è", "*a": "α", "*b": "β", "*g": "γ",
    "*d": "δ", "*e": "ε", "*l": "λ", "*m": "μ", "*p": "π", "*s": "σ", "*W": "Ω", "*S": "Σ", "shc": "",
    "one": "1", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "at": "@", "sh": "#", "dollar": "$", "Eu": "€",
}  # fmt: skip
# Strings (`\\*(lq`): the ones man(7) defines, and pod2man's; others render nothing.
STRINGS = {"lq": "“", "rq": "”", "R": "®", "Tm": "™", "Aq": "'", "Q": '"', "U": '"', "S": "", "-": "—"}

_ESCAPE = re.compile(
    r"""\\(?:
      (?P<comment>["\#].*)
    | f(?:\[[^\]]*\]|\(..|.)                          # font change
    | s(?:[+-]?\(\d\d|[+-]?\[[^\]]*\]|[+-]?\d)        # size change
    | \((?P<glyph2>..)
    | \[(?P<glyph>[^\]]*)\]
    | \*(?:\((?P<str2>..)|\[(?P<strl>[^\]]*)\]|(?P<str1>.))
    | [nkgmM](?:[+-]?\(..|[+-]?\[[^\]]*\]|[+-]?.)     # register, mark, colour
    | [whvlLoXDZbSHRNCAB]'[^']*'                      # width, motion, drawing: nothing to read
    | (?P<one>.)
    )""",
    re.X,
)
_ONE = {"-": "-", "e": "\\", "\\": "\\", "~": " ", " ": " ", "0": " ", "t": "\t", "c": NO_SPACE, ".": ".",
        "'": "´", "`": "`", "E": "\\"}  # fmt: skip


def _replace(m: re.Match[str]) -> str:
    if m.group("comment") is not None:
        return ""
    glyph = m.group("glyph2") or m.group("glyph")
    if glyph is not None:
        if glyph.startswith("u") and len(glyph) in (5, 6):  # \[u30A2]: a Unicode code point
            try:
                return chr(int(glyph[1:], 16))
            except ValueError:
                return ""
        return GLYPHS.get(glyph, "")
    name = m.group("str2") or m.group("strl") or m.group("str1")
    if name is not None:
        return STRINGS.get(name, "")
    one = m.group("one")
    if one is None:
        return ""  # fonts, sizes, registers, motions
    return _ONE.get(one, "" if one in "&|^%:,/)!dupzrx{}\n" else one)


def expand_escapes(s: str) -> str:
    """Plain text for one line of roff input (escapes replaced; a `\\"` comment removed)."""
    if "\\" not in s:
        return s
    return _ESCAPE.sub(_replace, s)
