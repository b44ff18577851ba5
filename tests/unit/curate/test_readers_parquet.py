"""Parquet reader: rows to Documents, missing text column, corrupt files."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kiban.curate.readers import SourceDefaults, read_task, resolve_sources


def _read(path: Path) -> tuple[list, list]:
    tasks, quarantined = resolve_sources([str(path)], defaults=SourceDefaults(license="Apache-2.0"))
    assert [t.kind for t in tasks] == ["parquet"]
    return [d for t in tasks for d in read_task(t, quarantined.append)], quarantined


def test_rows_become_documents(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    table = pa.table(
        {
            "text": ["一", None, "三"],
            "id": [None, "x", "c"],
            "license": ["MIT", None, None],
            "created": [dt.datetime(2024, 1, 2), None, None],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    docs, quarantined = _read(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert [d.text for d in docs] == ["一", "三"]
    assert [d.id for d in docs] == [f"{sha[:16]}-0", "c"]
    assert [d.license for d in docs] == ["MIT", "Apache-2.0"]
    assert docs[0].meta == {"created": "2024-01-02T00:00:00", "path": "a.parquet", "row": 0}
    assert docs[1].meta["row"] == 2
    (q,) = quarantined
    assert q.reason_name == "missing_text" and "(row 1)" in q.reason


def test_missing_text_column_quarantines_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": ["x"]}), path)
    docs, quarantined = _read(path)
    assert docs == [] and [q.reason_name for q in quarantined] == ["missing_text_column"]


def test_corrupt_parquet_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["x" * 1000] * 100}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    docs, quarantined = _read(path)
    assert docs == [] and [q.reason_name for q in quarantined] == ["corrupt_parquet"]
    assert quarantined[0].path == str(path)
