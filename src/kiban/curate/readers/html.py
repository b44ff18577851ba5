"""HTML → plain text with the standard library's `html.parser` (no lxml, no network).

The `<title>` is the first line; script, style, noscript, template, svg and the rest of `<head>`
are dropped; block elements break lines; `<pre>` keeps its newlines; entities are unescaped and
runs of spaces collapse within a line.

    >>> print(html_to_text("<title>手引き</title><body><h1>はじめに</h1><p>Debian を<br>使う。</p></body>"), end="")
    手引き
    <BLANKLINE>
    はじめに
    <BLANKLINE>
    Debian を
    使う。
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP = {"script", "style", "noscript", "template", "svg", "math", "head", "object", "iframe"}
_BREAK = {"br", "tr", "li", "dt", "dd", "option", "figcaption", "caption", "hr"}
_PARAGRAPH = {
    "p", "div", "section", "article", "aside", "header", "footer", "nav", "main", "blockquote", "pre",
    "table", "ul", "ol", "dl", "h1", "h2", "h3", "h4", "h5", "h6", "form", "fieldset", "figure",
    "address", "details", "summary", "body",
}  # fmt: skip
_CELL = {"td", "th"}
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_PAR = "\x00P"  # markers in the piece list: paragraph break / line break
_BR = "\x00B"


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.title: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in _SKIP:
            self.skip_depth += 1
        elif tag in _PARAGRAPH:
            self.pieces.append(_PAR)
            self.pre_depth += tag == "pre"
        elif tag in _BREAK:
            self.pieces.append(_BR)
        elif tag in _CELL:
            self.pieces.append(" ")
        elif tag == "img" and not self.skip_depth:
            alt = dict(attrs).get("alt")
            if alt:
                self.pieces.append(alt)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP:  # <script/> opens nothing
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in _SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in _PARAGRAPH:
            self.pieces.append(_PAR)
            if tag == "pre":
                self.pre_depth = max(0, self.pre_depth - 1)
        elif tag in ("li", "dt", "dd", "tr"):
            self.pieces.append(_BR)

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif self.skip_depth:
            return
        elif self.pre_depth:
            self.pieces.append(data.replace("\n", _BR))
        else:
            self.pieces.append(data.replace("\n", " "))


def html_to_text(src: str) -> str:
    """Readable text of an HTML document: title, then paragraphs separated by blank lines."""
    parser = _TextParser()
    parser.feed(src)
    parser.close()
    title = _SPACES.sub(" ", " ".join(parser.title).replace("\n", " ")).strip()
    text = "".join(parser.pieces)
    blocks: list[str] = [title] if title else []
    for block in text.split(_PAR):
        lines = [_SPACES.sub(" ", line).strip() for line in block.split(_BR)]
        lines = [line for line in lines if line]
        if lines:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")
