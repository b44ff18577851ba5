"""Debian documentation packages: file lists, DEP-5 and free-text copyright files, real packages."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

from kiban.curate.readers import SourceDefaults, read_task, resolve_sources
from kiban.curate.readers.debian import (
    debian_copyright_info,
    debian_license,
    debian_package_files,
    free_text_license_names,
    is_installed,
    parse_dep5_license,
)
from kiban.errors import DataError

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: example

Files:     debian/*
Copyright: 2020 Someone
License:   MIT

Files:     *
Copyright: 2019 Author
License:   GPL-2+ or MIT
 This program is free software; you can redistribute it
 .
 and so on.

License: MIT
 Permission is hereby granted...
"""
HIRAGANA = re.compile(r"[\u3041-\u309f]")
needs_manpages_ja = pytest.mark.skipif(not is_installed("manpages-ja"), reason="manpages-ja is not installed")


def test_dep5_files_star_license_is_kept_as_written() -> None:
    assert parse_dep5_license(DEP5) == "GPL-2+ or MIT"


def test_dep5_header_license_when_no_files_star() -> None:
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nLicense: BSD-3-Clause\n"
    )
    assert parse_dep5_license(text) == "BSD-3-Clause"


def test_dep5_without_files_star_lists_upstream_licences() -> None:
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: debian/*\nLicense: GPL-2+\n\n"
        "Files: src/a.c\n src/b.c\nLicense: BSD-3-clause\n text\n\n"
        "Files: doc/*\nLicense: GFDL-1.3\n\nFiles: src/c.c\nLicense: BSD-3-clause\n"
    )
    assert parse_dep5_license(text) == "BSD-3-clause and GFDL-1.3"


def test_dep5_files_star_over_continuation_lines() -> None:
    text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles:\n *\nLicense: ISC\n"
    assert parse_dep5_license(text) == "ISC"


def test_free_text_is_not_dep5() -> None:
    text = "This package was debianized by X.\nIt is under the GNU General Public License version 2.\n"
    assert parse_dep5_license(text) is None
    assert free_text_license_names(text) == ["GPL-2"]
    assert free_text_license_names("Placed in the public domain. BSD-style.") == ["BSD", "public-domain"]


def test_not_installed_package_is_a_data_error() -> None:
    with pytest.raises(
        DataError, match=r"debian package 'kiban-no-such-pkg' is not installed \(sudo apt-get"
    ):
        resolve_sources(["debian:kiban-no-such-pkg"], defaults=SourceDefaults())


def test_real_dep5_copyright_files_parse() -> None:
    """Every machine-readable copyright file installed here gives a one-line licence; free text gives None."""
    dep5 = re.compile(r"Format(-Specification)?:\s*\S*(copyright-format|dep5)")
    found = 0
    for copyright_file in sorted(glob.glob("/usr/share/doc/*/copyright")):
        text = Path(copyright_file).read_text(encoding="utf-8", errors="replace")
        license_ = parse_dep5_license(text)
        if dep5.match(text):
            assert license_ is None or (license_.strip() and "\n" not in license_), copyright_file
            found += license_ is not None
        else:
            assert license_ is None, copyright_file
    if not glob.glob("/usr/share/doc/*/copyright"):
        pytest.skip("no Debian copyright files on this machine")
    assert found > 0


@pytest.mark.skipif(not is_installed("debian-reference-ja"), reason="debian-reference-ja is not installed")
def test_real_dep5_package() -> None:
    info = debian_copyright_info("debian-reference-ja")
    assert info["format"] == "dep5" and info["license"] == "GPL-2+"
    assert (
        len(info["sha256"]) == 64 and info["copyright_file"] == "/usr/share/doc/debian-reference-ja/copyright"
    )
    files = debian_package_files("debian-reference-ja")
    assert "/usr/share/debian-reference/index.ja.html" in files
    assert not any(f.endswith(("/copyright", "changelog.gz")) for f in files)


@needs_manpages_ja
def test_manpages_ja_licence_is_an_honest_reference() -> None:
    info = debian_copyright_info("manpages-ja")
    assert info["format"] == "free-text"
    assert debian_license("manpages-ja") == info["license"] == "LicenseRef-debian-manpages-ja"


@needs_manpages_ja
def test_manpages_ja_reads_japanese_man_pages() -> None:
    tasks, quarantined = resolve_sources(["debian:manpages-ja"], defaults=SourceDefaults(license="ignored"))
    man = [t for t in tasks if t.kind == "man"]
    assert len(man) >= 100
    assert {t.source for t in tasks} == {"debian:manpages-ja"}
    assert {t.license for t in tasks} == {"LicenseRef-debian-manpages-ja"}
    assert tasks == sorted(tasks, key=lambda t: t.path.split("/"))
    sample = [t for t in man if t.path.endswith(("/ls.1.gz", "/cp.1.gz", "/passwd.5.gz", "/acl.5.gz"))]
    docs = [d for t in sample for d in read_task(t, quarantined.append)]
    assert len(docs) >= 3
    for doc in docs:
        assert HIRAGANA.search(doc.text), doc.meta["path"]
        assert "\\f" not in doc.text and ".TH" not in doc.text and ".Sh" not in doc.text
        assert doc.meta["path"].startswith("usr/share/man/ja/")
