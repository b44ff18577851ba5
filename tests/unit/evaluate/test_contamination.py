"""Contamination: the lineage walk to the training corpus, the n-gram index and the per-task check,
on a real corpus directory (Japanese man pages written with curate's own Parquet writer) and a
real manifest chain checkpoint → token shards → corpus."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import ja_texts, require_manpages_ja

from kiban.artifacts import Manifest, input_record, write_manifest
from kiban.curate.shards import docs_table, write_table
from kiban.evaluate.contamination import (
    NO_LINEAGE,
    NgramIndex,
    check,
    check_tasks,
    find_training_corpora,
    ngram_hashes,
    ngram_text,
)
from kiban.records import Document
from kiban.tokenizer.shards import write_tokens_manifest

contamination_module = importlib.import_module("kiban.evaluate.contamination")

# Not in any man page: a sentence from 吾輩は猫である and one made up for this test.
CLEAN = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
CLEAN_2 = "基盤モデルの評価では、学習データとの重複を必ず確かめること。"


def make_corpus(directory: Path, texts: list[str], *, part_docs: int = 4) -> Path:
    """A kiban corpus: part-NNNNN.parquet with curate's schema, and its manifest with licences."""
    docs = [
        Document(f"man-{i:03d}", t, "manpages-ja", "LicenseRef-JM", "0" * 64, {}) for i, t in enumerate(texts)
    ]
    for part, start in enumerate(range(0, len(docs), part_docs)):
        write_table(docs_table(docs[start : start + part_docs]), directory / f"part-{part:05d}.parquet")
    write_manifest(
        directory,
        Manifest(kind="corpus", stats={"documents": len(docs)}, licenses={"LicenseRef-JM": len(docs)}),
    )
    return directory


@pytest.fixture(scope="module")
def corpus_texts() -> list[str]:
    return ja_texts(require_manpages_ja(), 10)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, corpus_texts: list[str]) -> Path:
    """checkpoint → token shards → corpus, each with a real manifest naming the one before."""
    root = tmp_path_factory.mktemp("lineage")
    corpus = make_corpus(root / "corpus", corpus_texts)
    tokens = root / "tokens"
    tokens.mkdir()
    write_tokens_manifest(
        tokens,
        [],
        vocab_size=800,
        bos_id=1,
        eos_id=2,
        pad_id=None,
        tokenizer_sha256="0" * 64,
        inputs=[input_record(corpus, "corpus", relative_to=tokens)],
        licenses={"LicenseRef-JM": len(corpus_texts)},
    )
    ckpt = root / "run" / "model"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}", encoding="utf-8")
    write_manifest(
        ckpt,
        Manifest(
            kind="checkpoint",
            inputs=[input_record(tokens, "tokens", relative_to=ckpt)],
            licenses={"LicenseRef-JM": len(corpus_texts)},
        ),
    )
    return ckpt


def planted(text: str, start: int = 200, length: int = 80) -> str:
    """A slice of a corpus text as a benchmark might print it: other spacing and full-width forms."""
    piece = ngram_text(text)[start : start + length]
    return " ".join(piece[i : i + 7] for i in range(0, len(piece), 7)).replace("a", "ａ").replace("1", "１")


def test_docstring_examples() -> None:
    assert doctest.testmod(contamination_module).failed == 0


def test_find_training_corpora_follows_the_manifest_chain(model_dir: Path) -> None:
    corpora = find_training_corpora(model_dir)
    assert corpora == [(model_dir.parent.parent / "corpus").resolve()]


def test_a_model_without_manifest_has_no_lineage(tmp_path: Path) -> None:
    hf = tmp_path / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text("{}", encoding="utf-8")
    assert find_training_corpora(hf) == []
    result = check_tasks(hf, {"jcqa": [("0", CLEAN)]})
    assert result["status"] == "not_checked"
    assert result["note"] == NO_LINEAGE == "no lineage: contamination not checked"
    assert result["tasks"] == {}


def test_a_missing_corpus_is_not_returned(tmp_path: Path, corpus_texts: list[str]) -> None:
    corpus = make_corpus(tmp_path / "corpus", corpus_texts[:2])
    ckpt = tmp_path / "model"
    ckpt.mkdir()
    write_manifest(
        ckpt, Manifest(kind="checkpoint", inputs=[input_record(corpus, "corpus", relative_to=ckpt)])
    )
    assert find_training_corpora(ckpt) == [corpus.resolve()]
    for f in corpus.iterdir():
        f.unlink()
    corpus.rmdir()
    assert find_training_corpora(ckpt) == []


def test_normalization_matches_width_case_spacing_and_punctuation() -> None:
    a = ngram_hashes("ＡＢＣ　ｄｅｆ、「ｶﾀｶﾅ」１２３４５６７８")
    b = ngram_hashes("abc def カタカナ 12345678")
    assert a.size and a.tolist() == b.tolist()
    # digits are kept: two problems that differ only in a number do not match
    assert (
        ngram_hashes("りんごが12個あります。全部で何個").tolist()
        != ngram_hashes("りんごが13個あります。全部で何個").tolist()
    )


def test_planted_items_are_flagged_and_clean_ones_not(model_dir: Path, corpus_texts: list[str]) -> None:
    index = NgramIndex.from_corpora(find_training_corpora(model_dir))
    assert not index.partial and index.docs_indexed == index.docs_total == len(corpus_texts)
    items = [
        ("clean-1", CLEAN),
        ("copied-3", planted(corpus_texts[3])),
        ("clean-2", CLEAN_2),
        ("short", "猫です。"),
        ("copied-7", planted(corpus_texts[7], start=50)),
        ("mixed", CLEAN + planted(corpus_texts[5], length=20)),
    ]
    result = check(items, index)
    assert result["items"] == 6
    assert result["too_short"] == 1
    assert result["checked"] == 5
    assert result["contaminated"] == 3
    assert result["fraction"] == pytest.approx(3 / 5)
    assert result["items_over_half"] == 2  # the copied ones; "mixed" shares only a little
    assert result["max_overlap"] == 1.0
    assert result["examples"][:2] == ["copied-3", "copied-7"]
    assert set(result["examples"]) == {"copied-3", "copied-7", "mixed"}
    assert result["n"] == 13 and result["partial_index"] is False


def test_check_tasks_through_lineage_matches_a_full_index(model_dir: Path, corpus_texts: list[str]) -> None:
    items_by_task = {
        "jsquad": [("q0", planted(corpus_texts[0])), ("q1", CLEAN)],
        "jcqa": [("c0", CLEAN_2), ("c1", "猫")],
    }
    result = check_tasks(model_dir, items_by_task)
    assert result["status"] == "checked"
    assert [c["path"] for c in result["corpora"]] == [str(p) for p in find_training_corpora(model_dir)]
    assert result["corpora"][0]["lineage_status"] == "ok"
    assert result["index"]["restricted_to_items"] is True
    assert result["tasks"]["jsquad"]["contaminated"] == 1
    assert result["tasks"]["jsquad"]["examples"] == ["q0"]
    assert result["tasks"]["jcqa"]["contaminated"] == 0
    assert result["tasks"]["jcqa"]["too_short"] == 1
    # the restricted index gives the same answer as indexing the whole corpus, at a fraction of the size
    full = NgramIndex.from_corpora(find_training_corpora(model_dir))
    for task, items in items_by_task.items():
        expected = check(items, full)
        assert {**result["tasks"][task]} == expected
    assert result["index"]["ngrams"] < len(full) / 100
    assert check_tasks(model_dir, items_by_task) == result  # deterministic


def test_the_index_stops_at_max_ngrams_and_says_so(model_dir: Path, corpus_texts: list[str]) -> None:
    corpora = find_training_corpora(model_dir)
    full = NgramIndex.from_corpora(corpora)
    small = NgramIndex.from_texts(corpus_texts, max_ngrams=1)
    assert small.partial
    assert small.docs_indexed < len(corpus_texts)
    assert small.describe()["partial"] is True
    assert check([("x", planted(corpus_texts[-1]))], small)["partial_index"] is True
    assert len(full) > 0 and full.describe()["memory_bytes"] == 8 * len(full)


@given(doc=st.integers(0, 9), start=st.integers(0, 600), length=st.integers(13, 120))
def test_any_long_enough_slice_of_the_corpus_is_found(
    corpus_texts: list[str], model_dir: Path, doc: int, start: int, length: int
) -> None:
    index = _cached_index(model_dir)
    key = ngram_text(corpus_texts[doc])
    piece = key[start : start + length]
    result = check([("x", piece)], index)
    if len(piece) < 13:
        assert result["too_short"] == 1
    else:
        assert result["contaminated"] == 1 and result["max_overlap"] == 1.0


_INDEXES: dict[Path, NgramIndex] = {}


def _cached_index(model_dir: Path) -> NgramIndex:
    if model_dir not in _INDEXES:
        _INDEXES[model_dir] = NgramIndex.from_corpora(find_training_corpora(model_dir))
    return _INDEXES[model_dir]
