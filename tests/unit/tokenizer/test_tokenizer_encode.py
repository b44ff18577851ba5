"""`tokenize_corpus`: document framing, deterministic bytes, resume, refusals, uint32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from kiban.errors import ConfigError
from kiban.tokenizer import encode as enc
from kiban.tokenizer import llama_style as ls
from kiban.tokenizer.encode import TokenizeConfig, tokenize_corpus
from kiban.tokenizer.shards import TokenShards
from tests.unit.tokenizer.conftest import make_corpus


def _bytes(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name.startswith(("tokens-", "docs-"))
    }


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory: pytest.TempPathFactory, corpus: Path, tokenizer_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("tokens")
    tokenize_corpus(corpus, tokenizer_dir, out, TokenizeConfig(shard_docs=10, batch_docs=7))
    return out


def test_every_document_is_framed_and_decodes_back(
    shards_dir: Path, tokenizer_dir: Path, corpus_docs: list[tuple[str, str]]
) -> None:
    s = TokenShards.open(shards_dir)
    s.check_tokenizer(tokenizer_dir)
    assert (s.dtype, s.bos_id, s.eos_id, s.pad_id, s.vocab_size) == (np.uint16, 1, 2, 3, 800)
    assert s.n_docs == len(corpus_docs) and len(s) == 3 + 3 + 3 + 1  # parts of 25, 25, 25, 5 docs; 10 a shard
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    j = 0
    for i in range(len(s)):
        for k in range(s.documents(i).shape[0]):
            doc = s.document(i, k)
            assert doc[0] == 1 and doc[-1] == 2 and 2 not in doc[1:-1].tolist()
            assert tok.decode(doc.tolist(), skip_special_tokens=True) == corpus_docs[j][0]
            j += 1
    assert s.n_tokens == sum(int(s.shard(i).shape[0]) for i in range(len(s)))


def test_manifest_lineage(shards_dir: Path, corpus: Path, tokenizer_dir: Path) -> None:
    m = json.loads((shards_dir / "manifest.json").read_text())
    assert m["kind"] == "tokens" and [i["kind"] for i in m["inputs"]] == ["corpus", "tokenizer"]
    assert m["licenses"] == json.loads((corpus / "manifest.json").read_text())["licenses"]
    assert m["config"]["dtype"] == "uint16" and m["config"]["shard_docs"] == 10
    assert not (shards_dir / enc.RUN_FILE).exists()


def test_bytes_do_not_depend_on_workers_or_batch(
    tmp_path: Path, shards_dir: Path, corpus: Path, tokenizer_dir: Path
) -> None:
    tokenize_corpus(corpus, tokenizer_dir, tmp_path, TokenizeConfig(shard_docs=10, batch_docs=64), workers=2)
    assert _bytes(tmp_path) == _bytes(shards_dir)


def test_a_crashed_run_resumes_to_the_same_bytes(
    tmp_path: Path, shards_dir: Path, corpus: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = TokenizeConfig(shard_docs=10, batch_docs=7)
    real, calls = enc.encode_shard, []

    def crash_after_five(task: enc.ShardTask) -> dict:
        calls.append(task.index)
        if len(calls) > 5:
            raise KeyboardInterrupt("killed")
        return real(task)

    monkeypatch.setattr(enc, "encode_shard", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus(corpus, tokenizer_dir, tmp_path, cfg)
    assert not (tmp_path / "manifest.json").exists() and (tmp_path / enc.RUN_FILE).exists()
    (tmp_path / ".tmp-tokens-00005.bin.x").write_bytes(b"half")  # what a SIGKILL mid-write leaves
    written = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("tokens-*")}
    assert len(written) == 5

    monkeypatch.setattr(enc, "encode_shard", real)
    tokenize_corpus(corpus, tokenizer_dir, tmp_path, cfg)
    assert _bytes(tmp_path) == _bytes(shards_dir)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("tokens-*") if p.name in written} == written
    assert not list(tmp_path.glob(".tmp-*"))


def test_resume_with_another_tokenizer_is_refused(tmp_path: Path, corpus: Path, tokenizer_dir: Path) -> None:
    (tmp_path / enc.RUN_FILE).write_text(json.dumps({"tokenizer_sha256": "f" * 64}))
    with pytest.raises(ConfigError, match="another .*tokenizer_sha256"):
        tokenize_corpus(corpus, tokenizer_dir, tmp_path, TokenizeConfig())
    tokenize_corpus(corpus, tokenizer_dir, tmp_path, TokenizeConfig(), overwrite=True)
    with pytest.raises(ConfigError, match="--overwrite"):
        tokenize_corpus(corpus, tokenizer_dir, tmp_path, TokenizeConfig())


def test_shards_refuse_a_different_tokenizer(shards_dir: Path, corpus: Path, tmp_path: Path) -> None:
    from kiban.tokenizer.train import TokenizerConfig, train_tokenizer

    train_tokenizer(corpus, tmp_path, TokenizerConfig(vocab_size=700))
    with pytest.raises(ConfigError) as e:
        TokenShards.open(shards_dir).check_tokenizer(tmp_path)
    assert str(tmp_path / "tokenizer.json") in str(e.value)
    assert str(shards_dir / "manifest.json") in str(e.value)


def _big_vocab_tokenizer(directory: Path, chars: str) -> Path:
    """A tokenizer of 70,260 ids whose real characters sit above 65,535 (so uint16 cannot hold them)."""
    filler = [f"f{i:05x}" for i in range(70_000 - len(set(chars)))]
    tok = ls.build_tokenizer([*filler, *sorted(set(chars))], [])
    directory.mkdir()
    ls.save_hf(tok, directory, chat_template=ls.DEFAULT_CHAT_TEMPLATE, model_max_length=64)
    return directory


def test_large_vocabulary_writes_uint32(tmp_path: Path) -> None:
    texts = [("日本語の文書です。", "ja"), ("second doc ▁ with 12 digits", "en"), ("", "ja")]
    corpus = make_corpus(tmp_path / "corpus", texts)
    tok_dir = _big_vocab_tokenizer(tmp_path / "tok", "".join(t for t, _ in texts).replace(" ", "▁") + "▁")
    out = tmp_path / "tokens"
    m = tokenize_corpus(corpus, tok_dir, out, TokenizeConfig())
    assert m["config"]["dtype"] == "uint32" and m["config"]["vocab_size"] == 70_260
    s = TokenShards.open(out)
    assert s.dtype == np.uint32 and (out / "tokens-00000.bin").stat().st_size == 4 * s.n_tokens
    assert int(s.shard(0).max()) > 65_535
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    assert tok.decode(s.document(0, 0).tolist(), skip_special_tokens=True) == texts[0][0]
    assert s.document(0, 2).tolist() == [1, 2]  # an empty document still gets BOS and EOS


@pytest.mark.parametrize(("field", "value"), [("shard_docs", 0), ("batch_docs", 0)])
def test_config_errors_name_the_field(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"tokenize.{field}"):
        TokenizeConfig(**{field: value})
