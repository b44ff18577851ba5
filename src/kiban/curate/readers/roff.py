"""Man page source (man(7) and the common mdoc(7) macros) → readable plain text, in pure Python.

Fast rather than exact: no subprocess, no groff; one pass over the lines with compiled regexes.
Requests kiban does not render (`.de`, `.nr`, `.if`, ...) are dropped; text lines in fill mode
are joined into paragraphs, Japanese lines without a space where both sides are Japanese.

    >>> print(roff_to_text('.TH LS 1\\n.SH 名前\\nls \\\\- ディレクトリの\\n内容を表示する\\n'), end="")
    LS(1)
    <BLANKLINE>
    名前
    ls - ディレクトリの内容を表示する
"""

from __future__ import annotations

import re

from kiban.curate.readers.roff_escapes import NO_SPACE, expand_escapes

_ARG = re.compile(r'"((?:[^"]|"")*)"?|((?:\\.|[^\s\\])+\\?)')
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_SPACES = re.compile(r"[ \t]+")
_SO_ONLY = re.compile(r"\A(?:[.']\s*\\\".*\n|\s*\n)*\.so\s+(\S+)\s*(?:\n\s*)*\Z")

_FONT = {"B", "I", "SM", "SB", "Tn", "Li", "Em", "Sy", "Ic", "Cm", "Ar", "Pa", "Ev", "Va", "Dv", "Er"}
_ALTERNATING = {"BR", "IR", "RB", "RI", "BI", "IB"}
_PARAGRAPH = {"PP", "LP", "P", "HP", "sp", "Pp", "Lp", "Bl", "El", "Bd", "Ed", "SY", "YS", "Rs", "Re"}
_BREAK = {"br", "RS", "RE", "in", "ti", "Dl", "D1", "bp"}
_SKIP_BLOCK = {"de", "de1", "am", "am1", "ig"}  # definitions: skipped up to the `..` line
_CONDITIONAL = {"if", "ie", "el", "while"}
_ENCLOSE = {"Op": ("[", "]"), "Dq": ("“", "”"), "Qq": ('"', '"'), "Sq": ("‘", "’"), "Ql": ("‘", "’"),
            "Pq": ("(", ")"), "Aq": ("<", ">"), "Bq": ("[", "]"), "Brq": ("{", "}")}  # fmt: skip
_OPEN_CLOSE = {"Oo": "[", "Oc": "]", "Po": "(", "Pc": ")", "Ao": "<", "Ac": ">", "Bro": "{", "Brc": "}",
               "Do": "“", "Dc": "”", "Qo": '"', "Qc": '"', "So": "‘", "Sc": "’"}  # fmt: skip
_PUNCT = {".", ",", ":", ";", ")", "]", "?", "!"}


def is_so_link(src: str) -> str | None:
    """The target when a man page is only a `.so man3/other.3` redirect (a link, not content)."""
    m = _SO_ONLY.match(src if src.endswith("\n") else src + "\n")
    return m.group(1) if m else None


def split_args(rest: str) -> list[str]:
    """Macro arguments, honouring double quotes: `"a b" c` → ['a b', 'c']."""
    return [q.replace('""', '"') if q is not None and u == "" else u for q, u in _ARG.findall(rest)]


def _join(pieces: list[str]) -> str:
    out: list[str] = []
    glue_next = False
    for piece in pieces:
        glue = piece.endswith(NO_SPACE)
        piece = piece.replace(NO_SPACE, "")
        if out and not glue_next and not (_CJK.match(out[-1][-1:]) and _CJK.match(piece[:1])):
            out.append(" ")
        out.append(piece)
        glue_next = glue
    return _SPACES.sub(" ", "".join(out)).strip()


class _Page:
    """The output being built: finished lines, plus the paragraph being filled."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.para: list[str] = []
        self.nofill = False
        self.tag_pending = False  # .TP: the next text line is a tag on its own line
        self.heading_pending = False  # .SH with no arguments: the next text line is the heading
        self.heading_at = -1
        self.name = ""  # mdoc: the first .Nm argument, repeated by a bare .Nm

    def text(self, s: str) -> None:
        if self.heading_pending:
            self.heading_pending = False
            self.heading(s)
        elif self.nofill:
            self.br()
            self.lines.append(s.replace(NO_SPACE, "").rstrip())
        elif s.strip():
            self.para.append(s.strip(" \t"))
            if self.tag_pending:
                self.tag_pending = False
                self.br()

    def br(self) -> None:
        if self.para:
            line = _join(self.para)
            self.para = []
            if line:
                self.lines.append(line)

    def par(self) -> None:
        self.br()
        if self.lines and self.lines[-1] and len(self.lines) != self.heading_at:
            self.lines.append("")

    def heading(self, s: str) -> None:
        self.par()
        self.lines.append(_SPACES.sub(" ", s.replace(NO_SPACE, "")).strip())
        self.heading_at = len(self.lines)  # a paragraph break right after a heading adds no blank line

    def result(self) -> str:
        self.br()
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        return "\n".join(self.lines) + ("\n" if self.lines else "")


def roff_to_text(src: str) -> str:
    """Plain text of a man page: title line, headings on their own lines, filled paragraphs."""
    page = _Page()
    lines = src.replace("\r\n", "\n").split("\n")
    i, n = 0, len(lines)
    in_table = 0  # 0: not in .TS; 1: reading table format lines; 2: reading table data
    url: list[str] = []
    while i < n:
        line = lines[i]
        i += 1
        while line.endswith("\\") and not line.endswith("\\\\") and i < n:  # escaped newline
            line = line[:-1] + lines[i]
            i += 1
        if in_table:
            if line.startswith((".TE", "'TE")):
                in_table = 0
                page.nofill = False
                page.par()
            elif line.startswith(".T&"):
                in_table = 1
            elif in_table == 1:
                in_table = 1 if not line.rstrip().endswith(".") else 2
            elif line.strip() not in ("_", "=", "T{", "T}") and not line.startswith('.\\"'):
                page.text(_SPACES.sub(" ", expand_escapes(line.replace("T{", "").replace("T}", ""))).strip())
            continue
        if not line.startswith((".", "'")):
            if not line.strip():
                page.par()
            else:
                if line[0] in " \t" and not page.nofill:
                    page.br()
                page.text(expand_escapes(line))
            continue
        m = re.match(r"[.'][ \t]*(\S*)[ \t]*(.*)", line)
        name, rest = (m.group(1), m.group(2)) if m else ("", "")
        if name.startswith('\\"') or name in ("", "\\}", "."):
            continue
        if name in _SKIP_BLOCK:
            end = "." + (split_args(rest)[1] if name != "ig" and len(split_args(rest)) > 1 else ".")
            while i < n and lines[i].strip() != end:
                i += 1
            i += 1
        elif name in _CONDITIONAL:
            depth = line.count("\\{") - line.count("\\}")
            while depth > 0 and i < n:
                depth += lines[i].count("\\{") - lines[i].count("\\}")
                i += 1
        elif name == "TS":
            in_table = 1
            page.par()
            page.nofill = True
            if i < n and lines[i].rstrip().endswith(";"):
                i += 1  # table-wide options
        else:
            _request(page, name, split_args(rest), url)
    return page.result()


def _request(page: _Page, name: str, args: list[str], url: list[str]) -> None:
    text = [expand_escapes(a) for a in args]
    if name in ("SH", "SS", "Sh", "Ss"):
        if text:
            page.heading(" ".join(text))
        else:
            page.par()
            page.heading_pending = True
    elif name in ("TH", "Dt"):
        if text:
            page.heading(f"{text[0]}({text[1]})" if len(text) > 1 else text[0])
            page.lines.append("")
    elif name in _PARAGRAPH:
        page.par()
        if name == "Ed":
            page.nofill = False
        elif name == "Bd":  # mdoc display block: literal ones keep their lines
            page.nofill = "-literal" in args or "-unfilled" in args
        elif name == "SY" and text:  # man(7) synopsis: the command name
            page.text(text[0])
    elif name in _BREAK:
        page.br()
        if text and name in ("Dl", "D1"):
            page.text(_mdoc(args, page))
            page.br()
    elif name in ("TP", "TQ"):
        page.par()
        page.tag_pending = True
    elif name == "IP":
        page.par()
        if text and text[0]:
            page.text(text[0])
    elif name == "It":
        page.br()
        if args:
            page.text(_mdoc(args, page))
            page.br()
    elif name in ("nf", "EX", "Vb"):
        page.br()
        page.nofill = True
    elif name in ("fi", "EE", "Ve"):
        page.br()
        page.nofill = False
    elif name in ("UR", "MT"):
        url[:] = text[:1]
    elif name in ("UE", "ME"):
        if url:
            page.text(f"<{url[0]}>" + (text[0] if text else ""))
        url.clear()
    elif name in _ALTERNATING:
        if text:
            page.text("".join(text))
    elif name in ("B", "I", "SM", "SB") and text:
        page.text(" ".join(text))
    elif name == "OP" and text:
        page.text("[" + " ".join(text) + "]")
    elif name == "Nd":
        page.text("- " + _mdoc(args, page))
    elif name in _MDOC_INLINE:
        page.text(_mdoc([name, *args], page))
    # everything else (.ft, .nr, .ds, .so, .ad, .PD, .IX, unknown macros) renders nothing


_MDOC_INLINE = (
    _FONT | set(_ENCLOSE) | set(_OPEN_CLOSE)
    | {"Fl", "Xr", "Nm", "Ns", "Pf", "Fn", "Fa", "Ft", "Fo", "Fc", "In", "An", "Lb", "Ad", "Mt", "Lk", "No", "Bx",
       "Ux", "St", "Ql", "Sx", "Ex", "Rv", "Dd", "Os", "Ap", "%A", "%T", "%B", "%J", "%N", "%D", "%O"}
)  # fmt: skip


def _mdoc(args: list[str], page: _Page) -> str:
    """One mdoc line's words with its inline macros rendered: `Fl a Ar file` → `-a file`."""
    out: list[str] = []
    closers: list[str] = []
    glue = flag = False

    def word(w: str) -> None:
        nonlocal glue
        out.append(("" if glue or w in _PUNCT or not out else " ") + w)
        glue = False

    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        nxt_is_word = i < len(args) and args[i] not in _MDOC_INLINE
        if tok not in _MDOC_INLINE:
            w = expand_escapes(tok)
            word("-" + w if flag and w not in _PUNCT else w)
            continue
        flag = tok == "Fl"
        if tok == "Fl" and not nxt_is_word:
            word("-")
        elif tok == "Xr" and nxt_is_word:
            sec = args[i + 1] if i + 1 < len(args) and args[i + 1] not in _MDOC_INLINE else ""
            word(expand_escapes(args[i]) + (f"({sec})" if sec else ""))
            i += 2 if sec else 1
        elif tok == "Nm":
            if nxt_is_word and not page.name:
                page.name = expand_escapes(args[i])
            elif not nxt_is_word:
                word(page.name)
        elif tok in _ENCLOSE:
            opener, closer = _ENCLOSE[tok]
            word(opener)
            glue = True
            closers.append(closer)
        elif tok in _OPEN_CLOSE:
            word(_OPEN_CLOSE[tok])
            glue = tok in ("Oo", "Po", "Ao", "Bro", "Do", "Qo", "So")
            if not glue and out and len(out) > 1:
                out[-1] = out[-1].lstrip()
        elif tok in ("Ns", "Pf", "Ap"):
            if tok == "Ap":
                out.append("'")
            glue = tok != "Pf"
            if tok == "Pf" and nxt_is_word:
                out.append(("" if not out else " ") + expand_escapes(args[i]))
                i += 1
                glue = True
        elif tok in ("Dd", "Os", "Ex", "Rv"):
            return ""
    for closer in reversed(closers):
        out.append(closer)
    return "".join(out).strip()
