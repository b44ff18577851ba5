from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiban.artifacts import (
    Manifest,
    atomic_path,
    input_record,
    read_manifest,
    sha256_file,
    walk_lineage,
    write_manifest,
)
from kiban.errors import DataError


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_manifest_round_trip_keeps_unknown_keys(tmp_path: Path) -> None:
    m = Manifest(kind="corpus", stats={"documents": 3}, licenses={"MIT": 3}, extra={"x": 1})
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path)
    assert back.kind == "corpus" and back.stats == {"documents": 3} and back.extra == {"x": 1}


def test_read_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"manifest.json: not valid JSON"):
        read_manifest(tmp_path)


def test_lineage_walks_two_stages_and_flags_changes(tmp_path: Path) -> None:
    src = tmp_path / "raw.txt"
    src.write_text("こんにちは")
    a = tmp_path / "a"
    write_manifest(
        a,
        Manifest(
            kind="corpus", inputs=[input_record(src, "sources", relative_to=a)], licenses={"CC0-1.0": 1}
        ),
    )
    b = tmp_path / "b"
    write_manifest(b, Manifest(kind="tokenizer", inputs=[input_record(a, "corpus", relative_to=b)]))
    root = walk_lineage(b)
    assert root.problems() == []
    assert root.children[0].kind == "corpus" and root.children[0].licenses == {"CC0-1.0": 1}
    assert root.children[0].children[0].recorded_sha256 == sha256_file(src)

    src.write_text("さようなら")
    problems = walk_lineage(b).problems()
    assert [p.status for p in problems] == ["mismatch"] and problems[0].path == str(src)
    # an upstream manifest edited after the fact breaks the downstream link
    src.write_text("こんにちは")
    m = json.loads((a / "manifest.json").read_text())
    m["licenses"] = {"MIT": 1}
    (a / "manifest.json").write_text(json.dumps(m))
    assert [p.path for p in walk_lineage(b).problems()] == [str(a)]


def test_lineage_reports_missing_inputs(tmp_path: Path) -> None:
    src = tmp_path / "raw.txt"
    src.write_text("x")
    write_manifest(tmp_path / "a", Manifest(kind="corpus", inputs=[input_record(src, "sources")]))
    src.unlink()
    assert [p.status for p in walk_lineage(tmp_path / "a").problems()] == ["missing"]
