"""Directory trees and whole-file documents: kinds, encodings, binaries, sidecars, determinism."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from kiban.curate.readers import SourceDefaults, read_task, resolve_sources
from kiban.curate.readers.tree import decode_text
from kiban.errors import DataError


def _read_all(specs: list[str], **defaults: str) -> tuple[list, list, list]:
    tasks, quarantined = resolve_sources(specs, defaults=SourceDefaults(**defaults))
    docs = [d for t in tasks for d in read_task(t, quarantined.append)]
    return tasks, docs, quarantined


def _tree(root: Path) -> Path:
    (root / "man" / "man1").mkdir(parents=True)
    (root / "man" / "man1" / "hello.1").write_text(
        ".TH HELLO 1\n.SH 名前\nhello \\- 挨拶する\n", encoding="utf-8"
    )
    (root / "man" / "man3").mkdir()
    (root / "man" / "man3" / "alias.3pm.gz").write_bytes(gzip.compress(b".so man3/other.3pm\n"))
    (root / "docs").mkdir()
    (root / "docs" / "guide.md").write_text("# 手引き\n\n本文です。\n", encoding="utf-8")
    (root / "docs" / "page.html.gz").write_bytes(gzip.compress("<title>題</title><p>段落</p>".encode()))
    (root / "notes.txt").write_text("ただのテキスト\r\n二行目\n", encoding="utf-8")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (root / "libfoo.so.1").write_bytes(b"\x7fELF\x00")
    (root / ".hidden.txt").write_text("secret", encoding="utf-8")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref", encoding="utf-8")
    return root


def test_tree_kinds_order_and_quarantine(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    tasks, docs, quarantined = _read_all([str(root)])
    rel = [os.path.relpath(t.path, root) for t in tasks]
    assert rel == [
        "docs/guide.md",
        "docs/page.html.gz",
        "man/man1/hello.1",
        "man/man3/alias.3pm.gz",
        "notes.txt",
    ]
    assert [t.kind for t in tasks] == ["markdown", "html", "man", "man", "text"]
    assert all(t.root == str(root) and t.source == str(root) and t.license == "unknown" for t in tasks)
    by_path = {d.meta["path"]: d for d in docs}
    assert by_path["man/man1/hello.1"].text == "HELLO(1)\n\n名前\nhello - 挨拶する\n"
    assert by_path["man/man1/hello.1"].meta["man_page"] == "hello(1)"
    assert by_path["docs/page.html.gz"].text == "題\n\n段落\n"
    assert by_path["docs/guide.md"].text == "# 手引き\n\n本文です。\n"
    assert by_path["notes.txt"].text == "ただのテキスト\n二行目\n"
    assert all(d.id.endswith("-0") and len(d.id) == 18 for d in docs)
    reasons = sorted((os.path.relpath(q.path, root), q.reason_name) for q in quarantined)
    assert reasons == [("libfoo.so.1", "unsupported_file_type"), ("logo.png", "unsupported_file_type"),
                       ("man/man3/alias.3pm.gz", "man_so_link")]  # fmt: skip


def test_task_order_is_deterministic_and_follows_spec_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        for name in ("z.txt", "m.txt", "a.txt"):
            (d / name).write_text(name, encoding="utf-8")
    first, _ = resolve_sources([str(b), str(a)], defaults=SourceDefaults())
    again, _ = resolve_sources([str(b), str(a)], defaults=SourceDefaults())
    assert first == again
    assert [os.path.relpath(t.path, tmp_path) for t in first] == [
        "b/a.txt", "b/m.txt", "b/z.txt", "a/a.txt", "a/m.txt", "a/z.txt"
    ]  # fmt: skip


def test_missing_spec_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope"):
        resolve_sources([str(tmp_path / "nope")], defaults=SourceDefaults())


def test_binary_and_undecodable_files(tmp_path: Path) -> None:
    (tmp_path / "bin.txt").write_bytes(b"abc\x00def")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 au lait \xe9t\xe9 \xff")
    _, docs, quarantined = _read_all([str(tmp_path)])
    assert docs == []
    assert sorted((Path(q.path).name, q.reason_name) for q in quarantined) == [
        ("bin.txt", "binary_file"), ("latin.txt", "invalid_utf8")
    ]  # fmt: skip


@pytest.mark.parametrize("encoding", ["euc_jp", "cp932", "iso2022_jp"])
def test_legacy_japanese_encodings_are_decoded(tmp_path: Path, encoding: str) -> None:
    text = "日本語のマニュアルです。ひらがなとカタカナ。\n"
    (tmp_path / "old.txt").write_bytes(text.encode(encoding))
    _, docs, quarantined = _read_all([str(tmp_path)])
    assert quarantined == []
    assert docs[0].text == text and docs[0].meta["encoding"] == encoding


def test_decode_text_prefers_utf8_and_reads_boms() -> None:
    assert decode_text("素".encode()) == ("素", "utf-8")
    assert decode_text(b"\xef\xbb\xbfabc") == ("abc", "utf-8")
    assert decode_text("あ".encode("utf-16")) == ("あ", "utf-16")


def test_truncated_gzip_text_file_is_quarantined(tmp_path: Path) -> None:
    data = gzip.compress(("本文 " * 5000).encode())
    (tmp_path / "cut.txt.gz").write_bytes(data[: len(data) // 2])
    _, docs, quarantined = _read_all([str(tmp_path)])
    assert docs == [] and [q.reason_name for q in quarantined] == ["truncated_archive"]


def test_empty_file_is_quarantined(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text("  \n", encoding="utf-8")
    _, docs, quarantined = _read_all([str(tmp_path)])
    assert docs == [] and [q.reason_name for q in quarantined] == ["empty_document"]


def test_sidecars_and_precedence(tmp_path: Path) -> None:
    (tmp_path / "kiban-source.yaml").write_text("source: corp-wiki\nlicense: CC-BY-4.0\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "kiban-source.yaml").write_text("license: MIT\n", encoding="utf-8")
    (tmp_path / "sub" / "a.txt").write_text("a", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "b"}\n{"text": "c", "license": "own"}\n', encoding="utf-8")
    (tmp_path / "b.jsonl.source.yaml").write_text("source: dump\n", encoding="utf-8")
    tasks, docs, quarantined = _read_all([str(tmp_path)], license="default-lic", source="default-src")
    assert quarantined == []  # sidecars are configuration, neither tasks nor quarantined
    assert [(t.kind, t.source, t.license) for t in tasks] == [
        ("jsonl", "dump", "CC-BY-4.0"), ("text", "corp-wiki", "MIT")
    ]  # fmt: skip
    assert [d.license for d in docs] == ["CC-BY-4.0", "own", "MIT"]


def test_defaults_apply_without_sidecars(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    tasks, _, _ = _read_all([str(tmp_path / "a.txt")], license="GPL-3.0-only", source="mine")
    assert [(t.source, t.license, t.root) for t in tasks] == [
        ("mine", "GPL-3.0-only", str(tmp_path / "a.txt"))
    ]


def test_bad_sidecar_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "kiban-source.yaml").write_text("licence: MIT\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    with pytest.raises(DataError, match="unknown key.*licence"):
        resolve_sources([str(tmp_path)], defaults=SourceDefaults())


def test_symlinks_duplicates_and_broken_links(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("x", encoding="utf-8")
    (tmp_path / "a_link.txt").symlink_to("real.txt")  # sorts first, still reported as the duplicate
    (tmp_path / "dangling.txt").symlink_to("missing.txt")
    tasks, quarantined = resolve_sources(
        [str(tmp_path), str(tmp_path / "real.txt")], defaults=SourceDefaults()
    )
    assert [Path(t.path).name for t in tasks] == ["real.txt"]
    assert sorted((Path(q.path).name, q.reason_name) for q in quarantined) == [
        ("a_link.txt", "duplicate_input"), ("dangling.txt", "broken_symlink"), ("real.txt", "duplicate_input")
    ]  # fmt: skip


def test_man_suffix_needs_a_man_directory_unless_named(tmp_path: Path) -> None:
    (tmp_path / "tool.1").write_text(".TH TOOL 1\ntext\n", encoding="utf-8")
    tasks, quarantined = resolve_sources([str(tmp_path)], defaults=SourceDefaults())
    assert tasks == [] and [q.reason_name for q in quarantined] == ["unsupported_file_type"]
    tasks, _ = resolve_sources([str(tmp_path / "tool.1")], defaults=SourceDefaults())
    assert [t.kind for t in tasks] == ["man"]
