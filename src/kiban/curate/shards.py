"""Parquet shards of documents: the corpus layout, the per-task work files, the rejected set.

Columns: id, text, source, license, source_sha256, meta (a JSON object with sorted keys, so the
bytes do not depend on dict order), plus `reason` and `duplicate_of` in `rejected/`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kiban.artifacts import atomic_path
from kiban.records import Document

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("license", pa.string()),
        ("source_sha256", pa.string()),
        ("meta", pa.string()),
    ]
)
REJECTED_SCHEMA = SCHEMA.append(pa.field("reason", pa.string())).append(pa.field("duplicate_of", pa.string()))


def docs_table(docs: Sequence[Document]) -> pa.Table:
    return pa.table(
        {
            "id": [d.id for d in docs],
            "text": [d.text for d in docs],
            "source": [d.source for d in docs],
            "license": [d.license for d in docs],
            "source_sha256": [d.source_sha256 for d in docs],
            "meta": [json.dumps(d.meta, ensure_ascii=False, sort_keys=True, default=str) for d in docs],
        },
        schema=SCHEMA,
    )


def rejected_table(rows: Sequence[tuple[Document, str, str | None]]) -> pa.Table:
    t = docs_table([d for d, _, _ in rows])
    t = t.append_column("reason", pa.array([r for _, r, _ in rows], pa.string()))
    return t.append_column("duplicate_of", pa.array([k for _, _, k in rows], pa.string()))


def write_table(table: pa.Table, path: Path, *, compression: str = "zstd") -> None:
    """Write atomically; same table and codec give the same bytes."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=None if compression == "none" else compression)


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path)


def iter_documents(paths: Iterable[Path]) -> Iterable[Document]:
    """Stream Documents back out of corpus shards (for later stages and tests)."""
    for path in paths:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(columns=[f.name for f in SCHEMA]):
            cols = batch.to_pydict()
            for i in range(batch.num_rows):
                yield Document(
                    id=cols["id"][i],
                    text=cols["text"][i],
                    source=cols["source"][i],
                    license=cols["license"][i],
                    source_sha256=cols["source_sha256"][i],
                    meta=json.loads(cols["meta"][i]),
                )
