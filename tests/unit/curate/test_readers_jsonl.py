"""JSON Lines reader: good records, each kind of bad line, truncated archives."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
import zstandard

from kiban.curate.readers import QuarantineRecord, SourceDefaults, read_task, resolve_sources


def _read(path: Path, **defaults: str) -> tuple[list, list[QuarantineRecord]]:
    tasks, quarantined = resolve_sources([str(path)], defaults=SourceDefaults(**defaults))
    docs = [d for t in tasks for d in read_task(t, quarantined.append)]
    return docs, quarantined


def _lines(n: int) -> bytes:
    return b"".join(
        json.dumps({"text": f"文書 {i}", "url": f"https://example.jp/{i}"}).encode() + b"\n" for i in range(n)
    )


def test_dolma_style_records_map_to_documents(tmp_path: Path) -> None:
    path = tmp_path / "dolma.jsonl"
    rows = [
        {
            "id": 7,
            "text": "こんにちは",
            "source": "wiki",
            "added": "2024-01-01",
            "metadata": {"url": "u", "lang": "ja"},
        },
        {"text": "no id here", "license": "CC-BY-4.0", "created": "2023"},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    docs, quarantined = _read(path, license="MIT", source="label")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert quarantined == []
    assert [d.id for d in docs] == ["7", f"{sha[:16]}-2"]
    assert docs[0].source == "wiki" and docs[0].license == "MIT"
    assert docs[0].meta == {"added": "2024-01-01", "url": "u", "lang": "ja", "path": "dolma.jsonl", "line": 1}
    assert docs[1].source == "label" and docs[1].license == "CC-BY-4.0"
    assert docs[1].meta["created"] == "2023" and docs[1].meta["line"] == 2
    assert all(d.source_sha256 == sha for d in docs)


def test_malformed_line_is_quarantined_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "one"}\n{"text": "two" "oops"}\n\n{"text": "three"}')
    docs, quarantined = _read(path)
    assert [d.text for d in docs] == ["one", "three"]
    assert [d.meta["line"] for d in docs] == [1, 4]
    (q,) = quarantined
    assert q.path == str(path) and q.line == 2
    assert q.reason.startswith("invalid_json: Expecting ',' delimiter: line 1 column")
    assert q.raw == '{"text": "two" "oops"}'


def test_invalid_utf8_line_is_quarantined_with_escaped_raw(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b'{"text": "ok"}\n{"text": "bad \xff\xfe"}\n{"text": "\xe6\x97\xa5"}\n')
    docs, quarantined = _read(path)
    assert [d.text for d in docs] == ["ok", "日"]
    (q,) = quarantined
    assert (q.line, q.reason_name) == (2, "invalid_utf8")
    assert q.raw == '{"text": "bad \\xff\\xfe"}'


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"title": "no text"}', "missing_text"),
        ('{"text": 42}', "missing_text"),
        ('["text"]', "not_an_object"),
    ],
)
def test_records_that_are_not_documents(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(line + '\n{"text": "fine"}\n', encoding="utf-8")
    docs, quarantined = _read(path)
    assert [d.text for d in docs] == ["fine"]
    assert [(q.line, q.reason_name) for q in quarantined] == [(1, reason)]


def test_gzip_and_zstd_multi_frame_are_read_whole(tmp_path: Path) -> None:
    data = _lines(3000)
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(data))
    zst = tmp_path / "b.jsonl.zst"
    cctx = zstandard.ZstdCompressor()
    zst.write_bytes(cctx.compress(data[:40_000]) + cctx.compress(data[40_000:]))  # frame boundary mid-line
    for path in (gz, zst):
        docs, quarantined = _read(path)
        assert quarantined == [] and len(docs) == 3000
        assert docs[-1].text == "文書 2999" and docs[-1].meta["line"] == 3000


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_truncated_archive_yields_what_was_readable_then_quarantines(tmp_path: Path, suffix: str) -> None:
    data = _lines(20_000)
    packed = gzip.compress(data) if suffix == ".gz" else zstandard.ZstdCompressor().compress(data)
    path = tmp_path / f"cut.jsonl{suffix}"
    path.write_bytes(packed[: len(packed) // 2])
    docs, quarantined = _read(path)
    assert 0 < len(docs) < 20_000
    assert [d.meta["line"] for d in docs] == list(range(1, len(docs) + 1))
    (q,) = quarantined
    assert q.reason_name == "truncated_archive"
    assert q.line == len(docs) + 1 and f"stopped at line {q.line}" in q.reason


def test_not_a_gzip_file_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "fake.jsonl.gz"
    path.write_bytes(b"this is not gzip at all\n")
    docs, quarantined = _read(path)
    assert docs == [] and [q.reason_name for q in quarantined] == ["corrupt_archive"]


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"text": "x"}, {"nope": 1}, {"text": "y", "id": "b"}]), encoding="utf-8")
    docs, quarantined = _read(path)
    assert [(d.text, d.meta["index"]) for d in docs] == [("x", 0), ("y", 2)]
    assert docs[1].id == "b"
    assert [q.reason_name for q in quarantined] == ["missing_text"] and "array index 1" in quarantined[
        0
    ].reason


def test_json_file_holding_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"text": "x"}\n{"text": "y"}\n', encoding="utf-8")
    docs, quarantined = _read(path)
    assert [(d.text, d.meta["line"]) for d in docs] == [("x", 1), ("y", 2)] and quarantined == []


def test_quarantine_raw_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"text": "' + b"a" * (3 << 20) + b"\n")
    docs, quarantined = _read(path)
    (q,) = quarantined
    assert q.reason_name == "invalid_json" and q.raw is not None
    assert len(q.raw.encode()) < (1 << 20) + 100 and q.raw.endswith("[truncated]")
    assert set(q.to_dict()) == {"path", "line", "reason", "raw"}


def test_lone_surrogates_quarantine_the_record_and_are_scrubbed_from_metadata(tmp_path: Path) -> None:
    from kiban.curate.readers import SourceDefaults, read_task, resolve_sources

    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"text": "壊れた\\ud83dです"}\n{"text": "正常です", "note": "x\\udc00y", "metadata": {"k\\ud800": 1}}\n'
        '{"text": "絵文字😀は正常 \\ud83d\\ude00"}\n',
        encoding="utf-8",
    )
    tasks, _ = resolve_sources([str(path)], defaults=SourceDefaults())
    bad = []
    docs = list(read_task(tasks[0], bad.append))
    assert [q.line for q in bad] == [1] and bad[0].reason.startswith("invalid_unicode: lone surrogate U+D83D")
    assert [d.text for d in docs] == ["正常です", "絵文字😀は正常 😀"]
    import json

    json.dumps(docs[0].meta, ensure_ascii=False).encode("utf-8")  # writable as UTF-8
