"""Stage 1 on one file: faults inside a document or a reader are contained and kept with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kiban.curate import process
from kiban.curate.config import CurateConfig
from kiban.curate.process import TaskJob, run_task, task_dir
from kiban.curate.readers import SourceDefaults, resolve_sources

PROSE = (
    "私の住んでいる町は、海と山に挟まれた小さな港町です。朝になると漁船が次々に港へ戻ってきて、"
    "市場には威勢のいい声が響きます。子どものころは、祖父に連れられてよくその様子を見に行きました。"
)


def _job(tmp_path: Path, lines: list[dict]) -> TaskJob:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\n", encoding="utf-8")
    tasks, _ = resolve_sources([str(src)], defaults=SourceDefaults())
    cfg = CurateConfig()
    cfg.filters.japanese.enabled = False  # short test prose: the mechanics are under test here
    cfg.filters.llmjp.enabled = False
    return TaskJob(0, tasks[0], cfg, str(tmp_path / "work"))


def test_a_document_that_breaks_a_step_is_quarantined_and_the_file_goes_on(
    tmp_path: Path, monkeypatch
) -> None:
    real = process.redact

    def fragile(text, cfg):  # a step with a bug that one document triggers
        if "爆発" in text:
            raise ZeroDivisionError("division by zero")
        return real(text, cfg)

    monkeypatch.setattr(process, "redact", fragile)
    job = _job(
        tmp_path,
        [{"id": "a", "text": PROSE}, {"id": "b", "text": PROSE + "爆発"}, {"id": "c", "text": PROSE + "。"}],
    )
    result = run_task(job)
    out = task_dir(tmp_path / "work", 0)
    assert pq.read_table(out / "docs.parquet", columns=["id"]).column(0).to_pylist() == ["a", "c"]
    q = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert q == [
        {
            "path": job.task.path,
            "line": 2,
            "reason": "processing_error: ZeroDivisionError: division by zero",
            "raw": PROSE + "爆発",
        }
    ]
    assert result.stats["quarantine.processing_error"] == 1 and result.kept == 2


def test_a_reader_that_fails_half_way_keeps_what_it_read(tmp_path: Path, monkeypatch) -> None:
    job = _job(tmp_path, [{"id": str(i), "text": PROSE + str(i)} for i in range(5)])
    real = process.read_task

    def failing(task, quarantine, *, text_field):
        for i, doc in enumerate(real(task, quarantine, text_field=text_field)):
            if i == 3:
                raise RuntimeError("disk vanished")
            yield doc

    monkeypatch.setattr(process, "read_task", failing)
    result = run_task(job)
    out = task_dir(tmp_path / "work", 0)
    assert pq.read_table(out / "docs.parquet", columns=["id"]).column(0).to_pylist() == ["0", "1", "2"]
    q = json.loads((out / "quarantine.jsonl").read_text())
    assert q["reason"] == "reader_error: RuntimeError: disk vanished (after 3 documents)"
    assert result.stats["in.docs"] == 3


def test_a_finished_task_is_not_redone(tmp_path: Path) -> None:
    job = _job(tmp_path, [{"id": "a", "text": PROSE}])
    first = run_task(job)
    Path(job.task.path).write_text("")  # were it read again, it would yield nothing
    assert run_task(job) == first


@pytest.mark.parametrize("batch", [1, 2, 1024])
def test_outputs_stream_in_batches_with_the_same_result(tmp_path: Path, monkeypatch, batch: int) -> None:
    monkeypatch.setattr(process.TaskOutputs, "BATCH", batch)
    job = _job(tmp_path, [{"id": str(i), "text": PROSE + "。" * i} for i in range(5)])
    run_task(job)
    out = task_dir(tmp_path / "work", 0)
    assert pq.read_table(out / "docs.parquet", columns=["id"]).column(0).to_pylist() == [
        "0",
        "1",
        "2",
        "3",
        "4",
    ]
    assert process.load_keys(out, "bands", job.config.dedup.num_bands).shape == (
        5,
        job.config.dedup.num_bands,
    )
    assert pq.ParquetFile(out / "docs.parquet").num_row_groups == -(-5 // batch)
