"""Debian documentation packages as sources: their files and the licence their copyright file states.

`kiban curate debian:manpages-ja` reads the documents an installed package ships (man pages,
HTML and text under /usr/share/doc/<pkg>/ or /usr/share/<dir>/) straight from dpkg's file list,
with no subprocess. The licence comes from /usr/share/doc/<pkg>/copyright: a machine-readable
(DEP-5) file names it in the `Files: *` paragraph; a free-text file gets an honest
`LicenseRef-debian-<pkg>` id that points the reader at that file, plus the licence names found in it.

    >>> parse_dep5_license("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\\n\\n"
    ...                    "Files: *\\nCopyright: 2007 A\\nLicense: GPL-2+\\n text\\n")
    'GPL-2+'
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from typing import Any

from kiban.errors import DataError

DPKG_INFO = "/var/lib/dpkg/info"
DOC_ROOT = "/usr/share/doc"
# The released format, and the URLs of its drafts (`http://dep.debian.net/deps/dep5`) still in the wild.
_DEP5_FORMAT = re.compile(r"^Format(-Specification)?:\s*\S*(copyright-format|deps?/dep5|dep5\.mdwn)")
# Package metadata rather than documents: never curated.
_SKIP_NAMES = re.compile(r"^(copyright|changelog(\.Debian)?(\.gz)?|NEWS\.Debian(\.gz)?)$")
# Directories under /usr/share that hold package plumbing, not documents.
_SKIP_SHARE_DIRS = {
    "doc-base", "lintian", "menu", "applications", "icons", "pixmaps", "mime", "bug", "locale",
    "bash-completion", "zsh", "fish", "metainfo", "appdata", "polkit-1", "dbus-1", "glib-2.0",
}  # fmt: skip
# Free-text copyright files: licence names to look for, most specific first, each with the id to report.
_FREE_TEXT_LICENSES = [
    (re.compile(r"\bGPL[- ]?v?3\b|GNU General Public License,? version 3", re.I), "GPL-3"),
    (re.compile(r"\bGPL[- ]?v?2\b|GNU General Public License,? version 2", re.I), "GPL-2"),
    (re.compile(r"\bLGPL\b|GNU (Library|Lesser) General Public", re.I), "LGPL"),
    (re.compile(r"\bGFDL\b|GNU Free Documentation License", re.I), "GFDL"),
    (re.compile(r"\bApache[- ]License,? (version )?2|\bApache-2\.0\b", re.I), "Apache-2.0"),
    (re.compile(r"\bBSD\b"), "BSD"),
    (re.compile(r"\bMIT\b|Permission is hereby granted, free of charge"), "MIT"),
    (re.compile(r"\bpublic domain\b", re.I), "public-domain"),
]


def _list_file(pkg: str) -> str | None:
    plain = os.path.join(DPKG_INFO, f"{pkg}.list")
    if os.path.isfile(plain):
        return plain
    multiarch = sorted(glob.glob(os.path.join(DPKG_INFO, glob.escape(pkg) + ":*.list")))
    return multiarch[0] if multiarch else None


def is_installed(pkg: str) -> bool:
    return _list_file(pkg) is not None


def _require(pkg: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", pkg):
        raise DataError(f"debian:{pkg}: not a Debian package name")
    path = _list_file(pkg)
    if path is None:
        raise DataError(f"debian package '{pkg}' is not installed (sudo apt-get install {pkg})")
    return path


def _is_document(path: str) -> bool:
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "usr" or parts[2] != "share":
        return False  # /etc, /usr/bin, /lib ...: not documentation
    if parts[3] in _SKIP_SHARE_DIRS or _SKIP_NAMES.match(parts[-1]):
        return False
    return not any(p.startswith(".") for p in parts[1:])


def debian_package_files(pkg: str) -> list[str]:
    """Sorted absolute paths of the document files `pkg` installs (no directories, no copyright/changelogs).

    Symbolic links (`at.deny.5.gz -> at.allow.5.gz`) are kept; `resolve_sources` reports them.
    """
    with open(_require(pkg), encoding="utf-8", errors="surrogateescape") as f:
        paths = [line.rstrip("\n") for line in f]
    keep = [p for p in paths if p and _is_document(p) and (os.path.islink(p) or os.path.isfile(p))]
    return sorted(set(keep))


def copyright_path(pkg: str) -> str:
    return os.path.join(DOC_ROOT, pkg, "copyright")


def parse_dep5_license(text: str) -> str | None:
    """The licence short name of the `Files: *` paragraph of a DEP-5 copyright file, as written.

    None when the text is not DEP-5 or has no `Files: *` paragraph with a `License:` field.
    """
    if not _DEP5_FORMAT.match(text.lstrip("\ufeff")):
        return None
    paragraphs = [_fields(p) for p in re.split(r"\n[ \t]*\n", text)]
    for fields in paragraphs:
        if fields.get("files", "").split() == ["*"] and fields.get("license"):
            return fields["license"]
    if paragraphs[0].get("license"):
        return paragraphs[0]["license"]  # the header may state the licence of the whole work
    # No `Files: *` (libjpeg lists every file): the distinct licences of the upstream files, in order.
    names: list[str] = []
    for fields in paragraphs:
        files = fields.get("files", "").split()
        if files and fields.get("license") and not all(f.startswith("debian/") for f in files):
            if fields["license"] not in names:
                names.append(fields["license"])
    return " and ".join(names) or None


def _fields(paragraph: str) -> dict[str, str]:
    """The fields of one deb822 paragraph, keys lower-cased; for `License` only its first line (the name)."""
    fields: dict[str, str] = {}
    key = ""
    for line in paragraph.splitlines():
        if line[:1] == "#":
            continue
        if line[:1] in (" ", "\t"):
            if key == "files":  # `Files:` may list its patterns over continuation lines
                fields[key] += " " + " ".join(line.split())
            continue  # other continuation lines carry the licence text, not its name
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            fields[key] = " ".join(value.split())
    return fields


def free_text_license_names(text: str) -> list[str]:
    """Licence names mentioned in a free-text copyright file, in a fixed order.

    >>> free_text_license_names("under the GNU General Public License version 2 or MIT")
    ['GPL-2', 'MIT']
    """
    return [name for pattern, name in _FREE_TEXT_LICENSES if pattern.search(text)]


def debian_copyright_info(pkg: str) -> dict[str, Any]:
    """What the corpus manifest records about a package's licence.

    `{"package", "format": "dep5" | "free-text" | "missing", "license", "license_names_found",
    "copyright_file", "sha256"}`; `license` is the one string the licence table counts.
    """
    _require(pkg)
    path = copyright_path(pkg)
    info: dict[str, Any] = {"package": pkg, "copyright_file": path, "license_names_found": []}
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        info.update(format="missing", license="unknown", sha256=None)
        return info
    text = data.decode("utf-8", errors="replace")
    info["sha256"] = hashlib.sha256(data).hexdigest()
    dep5 = parse_dep5_license(text)
    if dep5 is not None:
        info.update(format="dep5", license=dep5)
        return info
    # Free text (manpages-ja's says "the same license as the original man pages"): the honest id
    # is a reference to the file itself; the names found are a hint for a human, not a verdict.
    info.update(format="free-text", license=f"LicenseRef-debian-{pkg}")
    info["license_names_found"] = free_text_license_names(text)
    return info


def debian_license(pkg: str) -> str:
    """One licence string for `pkg`: e.g. `GPL-2+` (DEP-5) or `LicenseRef-debian-manpages-ja` (free text)."""
    return debian_copyright_info(pkg)["license"]
