"""roff_to_text: the man(7) and mdoc(7) subset kiban renders, escapes, Japanese line joining."""

from __future__ import annotations

from kiban.curate.readers.roff import is_so_link, roff_to_text, split_args
from kiban.curate.readers.roff_escapes import expand_escapes


def test_escapes() -> None:
    assert expand_escapes(r"\fB\-\-all\fR \fI\,FILE\/\fP \f(CWcode\f[] \f[B]b") == "--all FILE code b"
    assert expand_escapes(r"\(em\(en\(aq\(dq\(bu\(co\(lq\(rq") == "—–'\"•©“”"
    assert expand_escapes(r"\*(lqq\*(rq a\e\&b c\~d e\ f \%hy\c") == "“q” a\\b c d e f hy\x01"
    assert expand_escapes(r"\(xx\[unknown]x\s-1small\s0 \n(.g\*(Zz") == "xsmall "
    assert expand_escapes(r"\[u30A2]\[em]") == "ア—"
    assert expand_escapes(r"text \" a comment") == "text "
    assert expand_escapes(r"\\fB") == "\\fB"  # an escaped backslash, not a font change


def test_split_args() -> None:
    assert split_args('"a b" c  "say ""hi"""') == ["a b", "c", 'say "hi"']
    assert split_args(r"foo\ bar baz") == [r"foo\ bar", "baz"]


def test_man_page_structure() -> None:
    src = r""".\" comment line
.TH GREP 1 "2024" "GNU" "User Commands"
.de XX
.B never shown
..
.SH NAME
grep \- print lines
.SH SYNOPSIS
.B grep
.RI [ OPTIONS ] " PATTERNS"
.SH DESCRIPTION
.PP
First line
second line.
.TP
.BR \-i ", " \-\-ignore\-case
Ignore case.
.IP \(bu 2
Bullet item.
.nf
keep   this
  layout
.fi
.if t \{\
.B troff only
.\}
See
.UR https://example.org
the site
.UE .
"""
    assert roff_to_text(src) == (
        "GREP(1)\n\nNAME\ngrep - print lines\n\nSYNOPSIS\ngrep [OPTIONS] PATTERNS\n\n"
        "DESCRIPTION\nFirst line second line.\n\n-i, --ignore-case\nIgnore case.\n\n• Bullet item.\n"
        "keep   this\n  layout\nSee the site <https://example.org>.\n"
    )


def test_japanese_lines_join_without_space() -> None:
    src = ".PP\nこれは日本語の\n文章です。\nASCII word\nと日本語。\n"
    assert roff_to_text(src) == "これは日本語の文章です。 ASCII word と日本語。\n"


def test_heading_without_arguments_takes_next_line() -> None:
    assert roff_to_text(".SH\n説明\n本文\n") == "説明\n本文\n"


def test_tables_become_lines() -> None:
    src = ".TS\nallbox;\nl l.\nname\tvalue\n_\nT{\nlong text\nT}\tx\n.TE\nafter\n"
    assert roff_to_text(src) == "name value\nlong text\nx\n\nafter\n"


def test_mdoc_page() -> None:
    src = """.Dd March 23, 2002
.Dt ACL 5
.Os "Linux ACL"
.Sh 名前
.Nm acl
.Nd アクセス制御リスト
.Sh 書式
.Nm
.Op Fl v
.Ar file ...
.Pp
詳細は
.Xr getfacl 1 ,
を参照。
.Bl -tag
.It Fl d Ar dir
ディレクトリ
.El
"""
    assert roff_to_text(src) == (
        "ACL(5)\n\n名前\nacl - アクセス制御リスト\n\n書式\nacl [-v] file ...\n\n"
        "詳細は getfacl(1), を参照。\n\n-d dir\nディレクトリ\n"
    )


def test_synopsis_and_literal_display() -> None:
    assert roff_to_text(".SY grep\n.OP \\-i\n.YS\n") == "grep [-i]\n"
    assert roff_to_text(".Bd -literal\n  a  b\nc\n.Ed\nx\ny\n") == "  a  b\nc\n\nx y\n"


def test_so_link_detection() -> None:
    assert is_so_link(".so man3/other.3\n") == "man3/other.3"
    assert is_so_link('.\\" comment\n\n.so man7/uri.7') == "man7/uri.7"
    assert is_so_link(".TH A 1\n.so man3/other.3\ntext\n") is None
