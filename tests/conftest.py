"""Shared fixtures: real Japanese text from Debian's manpages-ja (installed by `make test-data`)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Shared, loaded machines: no per-example deadline; in CI, a fixed example sequence so that a
# landing never depends on luck (locally, examples stay random to keep finding new cases).
settings.register_profile("kiban", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "kiban")

MANPAGES_JA = Path("/usr/share/man/ja/man1")
KIBAN = [sys.executable, "-m", "kiban.cli"]


def require_manpages_ja() -> list[Path]:
    pages = sorted(MANPAGES_JA.glob("*.1.gz")) if MANPAGES_JA.is_dir() else []
    if len(pages) < 50:
        pytest.fail(
            "Debian's manpages-ja is not installed; run `make test-data` (apt-get install manpages-ja)"
        )
    return pages


@pytest.fixture(scope="session")
def manpages_ja() -> list[Path]:
    """Paths of real Japanese man pages (roff source, gzip)."""
    return require_manpages_ja()


@pytest.fixture
def ja_tree(tmp_path: Path, manpages_ja: list[Path]) -> Path:
    """A small directory tree of 40 real Japanese man pages plus a licence sidecar."""
    root = tmp_path / "docs"
    (root / "man" / "man1").mkdir(parents=True)
    for page in manpages_ja[:40]:
        shutil.copy(page, root / "man" / "man1" / page.name)
    (root / "kiban-source.yaml").write_text("source: jm-project\nlicense: LicenseRef-JM\n", encoding="utf-8")
    return root


def ja_texts(pages: list[Path], n: int) -> list[str]:
    """Plain Japanese text of `n` man pages, through kiban's own roff reader."""
    from kiban.curate.readers.roff import roff_to_text

    out = []
    for page in pages:
        text = roff_to_text(gzip.decompress(page.read_bytes()).decode("utf-8", errors="replace"))
        if len(text) > 800:
            out.append(text)
        if len(out) == n:
            break
    return out


def run_kiban(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    proc = subprocess.run(
        [*KIBAN, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kiban {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


# ---------------------------------------------------------------------------------------------
# a tiny servable model: real tokenizer (BPE + byte fallback), real random-weight Llama on disk

TINY_TOKENS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'\"(){}[]<>-_/=+*#")
TINY_TOKENS += list(
    "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
)
TINY_TOKENS += list("日本語文書。、「」") + ["▁", "▁the", "です", "ます", "\n"]
"""What the tiny tokenizer learned; anything else (most kanji, emoji) goes through byte fallback."""


def build_tiny_model(directory: Path, *, seed: int = 0, max_seq_len: int = 256) -> Path:
    """A Hugging Face-layout checkpoint (config.json, model.safetensors, tokenizer files) of a
    2-layer Llama with seeded random weights and a ~400-token byte-fallback BPE tokenizer."""
    import torch

    from kiban.model.config import preset
    from kiban.model.hf import save_hf
    from kiban.model.llama import Llama
    from kiban.tokenizer import llama_style as ls

    directory.mkdir(parents=True, exist_ok=True)
    tok = ls.build_tokenizer(TINY_TOKENS, [])
    ls.save_hf(tok, directory, chat_template=ls.DEFAULT_CHAT_TEMPLATE, model_max_length=max_seq_len)
    cfg = preset("tiny")
    cfg = type(cfg)(**{**cfg.__dict__, "max_seq_len": max_seq_len})
    torch.manual_seed(seed)
    model = Llama(cfg)
    with torch.no_grad():  # (tied) a 3x sharper head than the 0.02 init: greedy is meaningful, samples vary
        model.lm_head.weight.mul_(3)
    save_hf(model, directory, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the serve tests; treat as read-only (copy it before changing files)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


# ---------------------------------------------------------------------------------------------
# a tiny model whose tokenizer was *trained* (kiban's BPE trainer, real merges): what the GGUF
# export and llama.cpp parity tests need (the hand-built tiny tokenizer above has no merges)

GPL3 = Path("/usr/share/common-licenses/GPL-3")


def build_trained_tiny_model(directory: Path, *, seed: int = 0, vocab_size: int = 1000) -> Path:
    """`build_tiny_model`'s 2-layer Llama, with a 1000-id tokenizer trained by `kiban tokenizer
    train` on 60 Japanese man pages and GPL-3, and a checkpoint-like manifest (licences, hashes)."""
    import re

    import torch

    from kiban.artifacts import Manifest, sha256_file, write_manifest
    from kiban.curate.shards import docs_table, write_table
    from kiban.model.config import preset
    from kiban.model.hf import save_hf
    from kiban.model.llama import Llama
    from kiban.records import Document
    from kiban.tokenizer.train import TokenizerConfig, train_tokenizer

    ja = ja_texts(require_manpages_ja(), 60)
    en = [p for p in re.split(r"\n\s*\n", GPL3.read_text(encoding="utf-8")) if len(p) > 200][:40]
    corpus = directory.parent / f"{directory.name}-corpus"
    docs = [
        Document(f"ja-{i}", t, "test", "LicenseRef-JM", "0" * 64, {"lang": "ja"}) for i, t in enumerate(ja)
    ]
    docs += [Document(f"en-{i}", t, "test", "GPL-3+", "0" * 64, {"lang": "en"}) for i, t in enumerate(en)]
    corpus.mkdir(parents=True, exist_ok=True)
    write_table(docs_table(docs), corpus / "part-00000.parquet")
    licenses = {"LicenseRef-JM": len(ja), "GPL-3+": len(en)}
    write_manifest(corpus, Manifest(kind="corpus", stats={"documents": len(docs)}, licenses=licenses))
    train_tokenizer(
        corpus, directory, TokenizerConfig(vocab_size=vocab_size, model_max_length=256), overwrite=True
    )
    (directory / "manifest.json").unlink()  # the tokenizer's; the model gets its own below
    cfg = preset("tiny", vocab_size=vocab_size, max_seq_len=256)
    torch.manual_seed(seed)
    model = Llama(cfg)
    with torch.no_grad():  # as build_tiny_model: a sharper head, so greedy decoding is meaningful
        model.lm_head.weight.mul_(3)
    save_hf(model, directory, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    files = {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file()}
    write_manifest(
        directory,
        Manifest(kind="checkpoint", inputs=[], licenses=licenses, extra={"files": files}),
    )
    return directory


@pytest.fixture(scope="session")
def trained_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the export and llama.cpp tests; treat as read-only."""
    return build_trained_tiny_model(tmp_path_factory.mktemp("trained-tiny") / "model")
