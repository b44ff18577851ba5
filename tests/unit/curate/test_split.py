"""Large files split into parts read exactly like the whole file: same documents, ids, lines."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kiban.curate.readers import SourceDefaults, read_task, resolve_sources
from kiban.curate.readers.split import split_tasks


def _read_all(tasks):
    docs, bad = [], []
    for t in tasks:
        docs += [
            (d.id, d.text, d.meta.get("line"), d.meta.get("row"), d.source_sha256)
            for d in read_task(t, bad.append)
        ]
    return docs, [(q.line, q.reason) for q in bad]


def _jsonl(tmp_path: Path, trailing_newline: bool = True) -> Path:
    rng = random.Random(0)
    lines = []
    for i in range(400):
        if i % 97 == 13:
            lines.append('{"text": "broken')  # quarantined with its line number
        else:
            lines.append(json.dumps({"text": "あ" * rng.randint(1, 80) + f"{i}"}, ensure_ascii=False))
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""), encoding="utf-8")
    return path


def test_jsonl_parts_read_like_the_whole_file(tmp_path: Path) -> None:
    for trailing in (True, False):
        path = _jsonl(tmp_path, trailing)
        whole, _ = resolve_sources([str(path)], defaults=SourceDefaults())
        parts = split_tasks(whole, part_bytes=3000)
        assert len(parts) > 10
        assert [p.start for p in parts] == sorted(p.start for p in parts)
        data = path.read_bytes()
        assert all(data[p.start - 1 : p.start] == b"\n" for p in parts[1:])  # cuts at line starts
        assert _read_all(parts) == _read_all(whole)


def test_a_line_longer_than_a_part_stays_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"text": "長" * 5000}) + "\n" + json.dumps({"text": "短"}) + "\n")
    whole, _ = resolve_sources([str(path)], defaults=SourceDefaults())
    parts = split_tasks(whole, part_bytes=100)
    assert len(parts) == 2
    assert _read_all(parts) == _read_all(whole)


def test_parquet_parts_by_row_group(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": [f"文書{i}" * 20 for i in range(100)]}), path, row_group_size=10)
    whole, _ = resolve_sources([str(path)], defaults=SourceDefaults())
    parts = split_tasks(whole, part_bytes=1)
    assert len(parts) == 10 and [p.first for p in parts] == list(range(0, 100, 10))
    assert _read_all(parts) == _read_all(whole)


def test_small_and_compressed_files_are_not_split(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(json.dumps({"text": "x" * 100}) for _ in range(100))).encode()))
    whole, _ = resolve_sources([str(path), str(_jsonl(tmp_path))], defaults=SourceDefaults())
    assert split_tasks(whole, part_bytes=1 << 30) == whole
    assert split_tasks(whole, part_bytes=10)[0] == whole[0]
