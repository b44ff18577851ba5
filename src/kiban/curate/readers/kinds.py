"""Which reader a file name calls for: `jsonl`, `parquet`, `text`, `markdown`, `html`, `man` or None.

>>> kind_of("corpus/part-1.jsonl.zst"), kind_of("man/man3/printf.3pm.gz"), kind_of("logo.png")
('jsonl', 'man', None)
"""

from __future__ import annotations

import re

from kiban.curate.readers.compressed import strip_compression

KINDS = ("jsonl", "parquet", "text", "markdown", "html", "man")

_BY_EXTENSION = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",  # a JSON array of records is read too (see jsonl.py)
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}
# Extension-less plain-text documents every source tarball and /usr/share/doc/<pkg>/ carries.
_TEXT_NAMES = {"README", "NEWS", "AUTHORS", "TODO", "THANKS", "INSTALL", "FAQ", "BUGS", "HISTORY", "CHANGES"}
# Man page sections 1-9 with optional suffixes: ls.1, printf.3p, Carp.3perm, openssl.1ssl.
_MAN_SUFFIX = re.compile(r"\.[1-9][a-z0-9]{0,8}$")
_MAN_DIR = re.compile(r"^(man|man[1-9][a-z0-9]*)$")


def kind_of(path: str, *, named_directly: bool = False) -> str | None:
    """The reader kind for `path`, or None when kiban cannot read it.

    A man page needs a section suffix and a `man`/`manN` directory above it, unless the user
    named the file directly (`kiban curate ls.1`); otherwise `libfoo.so.1` would look like one.
    """
    parts = path.replace("\\", "/").split("/")
    name = parts[-1]
    if name.endswith(".parquet"):
        return "parquet"
    base = strip_compression(name)
    dot = base.rfind(".")
    if dot > 0:
        kind = _BY_EXTENSION.get(base[dot:].lower())
        if kind is not None:
            return kind
    if _MAN_SUFFIX.search(base) and (named_directly or any(_MAN_DIR.match(p) for p in parts[:-1])):
        return "man"
    if base.split(".", 1)[0] in _TEXT_NAMES:
        return "text"
    return None
