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
