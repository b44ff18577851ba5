"""The CLI from a curated corpus to token shards, with lineage back to the Debian package."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_kiban


def test_curate_tokenizer_tokenize_lineage(tmp_path: Path, ja_tree: Path) -> None:
    corpus, tok, shards = tmp_path / "corpus", tmp_path / "tok", tmp_path / "tokens"
    run_kiban("curate", str(ja_tree), "--out", str(corpus), "--set", "filters.japanese.enabled=false")
    run_kiban("tokenizer", "train", str(corpus), "--out", str(tok), "--vocab-size", "600")
    proc = run_kiban(
        "tokenize", str(corpus), "--tokenizer", str(tok), "--out", str(shards), "--workers", "2", "--json"
    )
    done = json.loads(proc.stdout.splitlines()[-1])
    assert done["event"] == "done" and done["stats"]["n_tokens"] > 10_000
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["kind"] == "tokens" and manifest["config"]["dtype"] == "uint16"
    assert set(manifest["licenses"]) == {"LicenseRef-JM"}
    lineage = json.loads(run_kiban("lineage", str(shards), "--json").stdout)
    assert lineage["ok"] and {c["kind"] for c in lineage["inputs"]} == {"corpus", "tokenizer"}
    again = run_kiban("tokenize", str(corpus), "--tokenizer", str(tok), "--out", str(shards), check=False)
    assert again.returncode == 2 and "--overwrite" in again.stderr
