"""corpus → tokenizer → token shards on real Japanese man pages, through the stage functions
(the CLI wiring is tested with the CLI); local and Ray executors must write the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kiban.artifacts import walk_lineage
from kiban.config import apply_overrides, from_dict
from kiban.curate.config import CurateConfig
from kiban.curate.pipeline import run as curate
from kiban.tokenizer import TokenizeConfig, TokenizerConfig, TokenShards, tokenize_corpus, train_tokenizer


def _shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*-*.*")) if p.suffix in (".bin", ".npy")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, manpages_ja: list[Path]) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    cfg = from_dict(
        CurateConfig, apply_overrides({}, ["filters.japanese.enabled=false", "output.shard_docs=30"])
    )
    curate([str(p) for p in manpages_ja[:120]], out, cfg, workers=2, overwrite=True)
    return out


def test_corpus_to_shards(tmp_path: Path, corpus: Path) -> None:
    tok = tmp_path / "tokenizer"
    m = train_tokenizer(corpus, tok, TokenizerConfig(vocab_size=1_000, held_out_fraction=0.1))
    assert m["stats"]["unk_tokens"] == 0 and m["stats"]["held_out"]["ja"]["chars_per_token"] > 1.0

    local = tmp_path / "local"
    tm = tokenize_corpus(corpus, tok, local, TokenizeConfig(), workers=2)
    n_parts = len(list(corpus.glob("part-*.parquet")))
    assert n_parts > 1 and len(tm["stats"]["shards"]) == n_parts
    shards = TokenShards.open(local)
    shards.check_tokenizer(tok)
    assert (
        shards.dtype == np.uint16
        and shards.n_docs == json.loads((corpus / "manifest.json").read_text())["stats"]["documents"]
    )

    node = walk_lineage(local)
    assert node.problems() == [] and {c.kind for c in node.children} == {"corpus", "tokenizer"}
    assert node.licenses == json.loads((corpus / "manifest.json").read_text())["licenses"]

    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    ray_out = tmp_path / "ray"
    tokenize_corpus(corpus, tok, ray_out, TokenizeConfig(), executor="ray", workers=2)
    assert _shard_bytes(ray_out) == _shard_bytes(local)
