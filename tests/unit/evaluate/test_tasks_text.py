"""`text:<path>`: a rolling bits-per-char task over a local UTF-8 text or JSON Lines file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kiban.errors import ConfigError
from kiban.evaluate.tasks import TaskDataError, get_task
from kiban.evaluate.tasks.text import TextTask

NEKO = "吾輩は猫である。名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。\n"


def test_text_file_is_one_document_per_non_blank_line(tmp_path: Path) -> None:
    (tmp_path / "heldout").mkdir()
    (tmp_path / "heldout/neko.txt").write_bytes(b"\xef\xbb\xbf" + (NEKO + "\n   \n最後の行\r\n").encode())
    task = get_task("text:heldout/neko.txt")
    assert isinstance(task, TextTask)
    docs, pool = task.load(tmp_path)
    assert pool == []
    assert task.data_files == (tmp_path / "heldout/neko.txt",)
    assert [task.text(d) for d in docs] == [
        "吾輩は猫である。名前はまだ無い。", "どこで生れたかとんと見当がつかぬ。", "最後の行",
    ]  # fmt: skip
    assert [d.id for d in docs] == ["heldout/neko.txt:1", "heldout/neko.txt:2", "heldout/neko.txt:5"]
    assert (task.kind, task.metrics) == ("rolling", ("bits_per_byte", "bits_per_char"))
    assert task.context(docs[0], docs[1:]) == ""
    assert task.fewshot(docs[0], docs, 3, seed=0) == []


def test_jsonl_reads_the_text_field(tmp_path: Path) -> None:
    records = [{"text": "一行目です。\n二行目も同じ文書です。", "id": "x"}, {"text": "別の文書。"}]
    (tmp_path / "wiki.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    task = get_task("text:wiki.jsonl")
    docs, _ = task.load(tmp_path)
    assert [task.text(d) for d in docs] == ["一行目です。\n二行目も同じ文書です。", "別の文書。"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": 3}', "field 'text' should be str"),
        ('{"body": "本文"}', "missing field 'text'"),
        ("{壊れた", "not valid JSON"),
    ],
)
def test_bad_jsonl_record_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "wiki.jsonl"
    path.write_text('{"text": "良い行"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))}:2: {message}"):
        get_task("text:wiki.jsonl").load(tmp_path)


def test_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "sjis.txt"
    path.write_bytes("正しい行\n".encode() + "シフトJIS\n".encode("cp932"))
    with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))}:2: not UTF-8"):
        get_task("text:sjis.txt").load(tmp_path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match=re.escape(f"expected {tmp_path / 'nope.txt'} — not found")):
        get_task("text:nope.txt").load(tmp_path)


def test_empty_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="text:<path>"):
        get_task("text:")


def test_template_hash_follows_the_path() -> None:
    assert get_task("text:a.txt").template_sha256() == get_task("text:a.txt").template_sha256()
    assert get_task("text:a.txt").template_sha256() != get_task("text:b.txt").template_sha256()
