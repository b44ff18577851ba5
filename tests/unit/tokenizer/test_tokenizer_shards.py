"""The token-shard format: write/read round trips, dtype choice, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models

from kiban.errors import ConfigError, DataError
from kiban.tokenizer.shards import (
    TokenShards,
    dtype_for,
    read_shard_entry,
    shard_done,
    write_shard,
    write_tokens_manifest,
)


def _write_set(directory: Path, shards: list[list[np.ndarray]], vocab_size: int, sha: str = "0" * 64) -> None:
    dtype = dtype_for(vocab_size)
    entries = [write_shard(directory, i, docs, dtype) for i, docs in enumerate(shards)]
    write_tokens_manifest(
        directory, entries, vocab_size=vocab_size, bos_id=1, eos_id=2, pad_id=3, tokenizer_sha256=sha
    )


def test_dtype_for_boundary() -> None:
    assert dtype_for(300) == np.uint16
    assert dtype_for(65_536) == np.uint16
    assert dtype_for(65_537) == np.uint32
    assert dtype_for(152_064) == np.uint32
    with pytest.raises(ConfigError):
        dtype_for(0)


def test_round_trip_and_index(tmp_path: Path) -> None:
    docs0 = [np.array([1, 10, 11, 2]), np.array([1, 2]), np.array([1, 5, 6, 7, 2])]
    docs1 = [np.array([1, 9, 2])]
    _write_set(tmp_path, [docs0, docs1], vocab_size=300)
    s = TokenShards.open(tmp_path)
    assert (len(s), s.n_tokens, s.n_docs, s.dtype, s.eos_id, s.bos_id) == (2, 14, 4, np.uint16, 2, 1)
    assert s.shard(0).tolist() == [1, 10, 11, 2, 1, 2, 1, 5, 6, 7, 2]
    assert s.documents(0).tolist() == [0, 4, 6]
    assert s.document(0, 2).tolist() == [1, 5, 6, 7, 2]
    assert s.document(1, 0).tolist() == [1, 9, 2]
    raw = (tmp_path / "tokens-00000.bin").read_bytes()
    assert raw[:4] == b"\x01\x00\x0a\x00"  # little-endian uint16
    assert read_shard_entry(tmp_path, 0, s.dtype) == {"file": "tokens-00000.bin", "n_tokens": 11, "n_docs": 3}


def test_large_vocab_uses_uint32(tmp_path: Path) -> None:
    big = 151_000
    _write_set(tmp_path, [[np.array([big, 70_000, 2]), np.array([65_535, 2])]], vocab_size=152_064)
    s = TokenShards.open(tmp_path)
    assert s.dtype == np.uint32 and s.shard(0).tolist() == [big, 70_000, 2, 65_535, 2]
    assert (tmp_path / "tokens-00000.bin").stat().st_size == 5 * 4
    meta = json.loads((tmp_path / "manifest.json").read_text())
    assert meta["kind"] == "tokens" and meta["config"]["dtype"] == "uint32"


def test_id_overflowing_dtype_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not fit in uint16"):
        write_shard(tmp_path, 0, [np.array([70_000, 2])], dtype_for(32_000))
    assert not shard_done(tmp_path, 0)
    assert list(tmp_path.iterdir()) == []


def test_empty_shard(tmp_path: Path) -> None:
    _write_set(tmp_path, [[]], vocab_size=300)
    s = TokenShards.open(tmp_path)
    assert s.n_tokens == 0 and s.shard(0).shape == (0,) and s.documents(0).shape == (0,)


def test_truncated_shard_is_refused(tmp_path: Path) -> None:
    _write_set(tmp_path, [[np.array([1, 2, 3, 2])]], vocab_size=300)
    (tmp_path / "tokens-00000.bin").write_bytes(b"\x01\x00")
    with pytest.raises(DataError, match="manifest says 8"):
        TokenShards.open(tmp_path)


def test_wrong_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "corpus"}))
    with pytest.raises(DataError, match="expected 'tokens'"):
        TokenShards.open(tmp_path)


def _tiny_tokenizer(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {f"t{i}": i for i in range(n)}
    Tokenizer(models.WordLevel(vocab, unk_token="t0")).save(str(directory / "tokenizer.json"))
    return directory


def test_check_tokenizer(tmp_path: Path) -> None:
    from kiban.artifacts import sha256_file

    tok = _tiny_tokenizer(tmp_path / "tok", 300)
    other = _tiny_tokenizer(tmp_path / "other", 301)
    shards = tmp_path / "shards"
    _write_set(shards, [[np.array([1, 2])]], vocab_size=300, sha=sha256_file(tok / "tokenizer.json"))
    s = TokenShards.open(shards)
    s.check_tokenizer(tok)
    with pytest.raises(ConfigError) as e:
        s.check_tokenizer(other)
    assert str(other / "tokenizer.json") in str(e.value) and str(shards / "manifest.json") in str(e.value)
    # same file, but the manifest claims another vocabulary size
    _write_set(shards, [[np.array([1, 2])]], vocab_size=299, sha=sha256_file(tok / "tokenizer.json"))
    with pytest.raises(ConfigError, match="vocab_size 299"):
        TokenShards.open(shards).check_tokenizer(tok)


def test_public_surface() -> None:
    import kiban.tokenizer as pkg

    assert sorted(pkg.__all__) == sorted(
        [
            "TokenShards",
            "TokenizeConfig",
            "TokenizerConfig",
            "dtype_for",
            "tokenize_corpus",
            "train_tokenizer",
            "write_shard",
        ]
    )
    assert all(hasattr(pkg, name) for name in pkg.__all__)
