"""A small real corpus for the tokenizer tests: Japanese man pages (manpages-ja) and English
licence texts (/usr/share/common-licenses), written straight to a corpus directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kiban.artifacts import Manifest, write_manifest
from kiban.curate.shards import docs_table, write_table
from kiban.records import Document
from tests.conftest import ja_texts

LICENSES = Path("/usr/share/common-licenses")


def en_texts(n: int) -> list[str]:
    """Paragraph groups of the GPL-3 text (real English prose), `n` of them."""
    text = (LICENSES / "GPL-3").read_text(encoding="utf-8")
    paras = [p for p in re.split(r"\n\s*\n", text) if len(p) > 200]
    return ["\n\n".join(paras[i : i + 3]) for i in range(0, 3 * n, 3)][:n]


def make_corpus(directory: Path, docs: list[tuple[str, str]], *, shard_docs: int = 1_000) -> Path:
    """Write `(text, lang)` pairs as a kiban corpus (parts of `shard_docs` documents)."""
    records = [
        Document(
            f"doc-{i:04d}",
            text,
            "test",
            "LicenseRef-test" if lang == "ja" else "GPL-3+",
            "0" * 64,
            {"lang": lang},
        )
        for i, (text, lang) in enumerate(docs)
    ]
    for part, start in enumerate(range(0, len(records), shard_docs)):
        write_table(docs_table(records[start : start + shard_docs]), directory / f"part-{part:05d}.parquet")
    licenses: dict[str, int] = {}
    for r in records:
        licenses[r.license] = licenses.get(r.license, 0) + 1
    write_manifest(directory, Manifest(kind="corpus", stats={"documents": len(records)}, licenses=licenses))
    return directory


@pytest.fixture(scope="session")
def corpus_docs(manpages_ja: list[Path]) -> list[tuple[str, str]]:
    ja = ja_texts(manpages_ja, 60)
    en = en_texts(20)
    mixed = [("ja", t) for t in ja] + [("en", t) for t in en]
    # interleave deterministically so every part holds both languages
    mixed.sort(key=lambda x: len(x[1]) % 11)
    return [(t, lang) for lang, t in mixed]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, corpus_docs: list[tuple[str, str]]) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"), corpus_docs, shard_docs=25)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    from kiban.tokenizer.train import TokenizerConfig, train_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(corpus, out, TokenizerConfig(vocab_size=800, held_out_fraction=0.1), overwrite=True)
    return out
