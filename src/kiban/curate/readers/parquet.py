"""Parquet files → Documents, one record batch at a time.

The text is the `text` column; `id`, `source`, `license` and `metadata` columns map as in
JSON Lines (see record.py) and every other column goes into `meta`. A file without a text
column, or one pyarrow cannot open, is quarantined whole; a file that breaks half-way yields
the rows before the break, then one quarantine record naming the row reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from kiban.curate.readers.quarantine import QuarantineRecord, raw_text
from kiban.curate.readers.record import TEXT_FIELD, NotADocument, to_document
from kiban.curate.readers.sources import SourceTask, relative_name
from kiban.records import Document

BATCH_ROWS = 1024

Quarantine = Callable[[QuarantineRecord], None]


def read_parquet(
    task: SourceTask, quarantine: Quarantine, sha256: str, *, text_field: str = TEXT_FIELD
) -> Iterator[Document]:
    """Documents from one Parquet file; `meta["row"]` is the 0-based row index, also used in ids."""
    import pyarrow as pa  # lazy: `kiban --help` does not load pyarrow
    import pyarrow.parquet as pq

    rel = relative_name(task)
    try:
        pf = pq.ParquetFile(task.path)
        names = pf.schema_arrow.names
    except (pa.ArrowException, OSError) as e:
        quarantine(QuarantineRecord(task.path, None, f"corrupt_parquet: {e}"))
        return
    if text_field not in names:
        quarantine(
            QuarantineRecord(
                task.path, None, f"missing_text_column: no '{text_field}' column (columns: {names})"
            )
        )
        return
    row = task.first if (task.start or task.end is not None) else 0
    end = pf.num_row_groups if task.end is None else task.end
    groups = list(range(task.start, end))
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=groups):
            columns = {name: batch.column(i).to_pylist() for i, name in enumerate(batch.schema.names)}
            for i in range(batch.num_rows):
                record = {name: values[i] for name, values in columns.items()}
                try:
                    yield to_document(
                        record,
                        task_source=task.source,
                        task_license=task.license,
                        sha256=sha256,
                        n=row,
                        meta={"path": rel, "row": row},
                        text_field=text_field,
                    )
                except NotADocument as e:
                    quarantine(QuarantineRecord(task.path, None, f"{e} (row {row})", raw_text(repr(record))))
                row += 1
    except (pa.ArrowException, OSError) as e:
        quarantine(QuarantineRecord(task.path, None, f"corrupt_parquet: {e} (stopped at row {row})"))
