"""`kiban tokenize`: encode a corpus into token shards, in parallel, deterministically, resumably.

    corpus part-*.parquet ─plan (row counts from Parquet footers)─▶ tasks [(shard i, part, rows)]
        ─executor (local pool | ray)─▶ tokens-NNNNN.bin + docs-NNNNN.npy each ─▶ manifest.json last

Shard i always holds the same rows whatever the executor or worker count, so the bytes are the
same; a finished shard (both files renamed into place) is skipped when a killed run is resumed.
`run.json` records what the shards are being made from, so a resume with another tokenizer or
corpus is refused instead of mixing shards.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from kiban.artifacts import MANIFEST, input_record, read_manifest, sha256_file, write_json_atomic
from kiban.config import to_dict
from kiban.curate.executors import make_executor
from kiban.errors import ConfigError, DataError
from kiban.progress import Mode, Progress
from kiban.tokenizer import shards as sh
from kiban.tokenizer.train import corpus_parts

RUN_FILE = "run.json"


@dataclass
class TokenizeConfig:
    shard_docs: int | None = None
    """Documents per token shard; None: one shard per corpus part (curate writes 20,000
    documents a part). Shards split by document count, known from the Parquet footers before
    anything is encoded, which is what lets every task name its shard up front."""
    batch_docs: int = 1024
    """Documents handed to `tokenizers`' batch encoder at once (it parallelises inside a batch)."""

    def __post_init__(self) -> None:
        if self.shard_docs is not None and self.shard_docs < 1:
            raise ConfigError(f"tokenize.shard_docs must be ≥ 1, got {self.shard_docs}")
        if self.batch_docs < 1:
            raise ConfigError(f"tokenize.batch_docs must be ≥ 1, got {self.batch_docs}")


@dataclass(frozen=True)
class ShardTask:
    index: int
    part: str
    start: int
    stop: int
    tokenizer_json: str
    tokenizer_sha256: str
    out_dir: str
    dtype: str
    bos_id: int | None
    eos_id: int
    batch_docs: int


@dataclass(frozen=True)
class TokenizerInfo:
    vocab_size: int
    bos_id: int | None
    """Put before every document: the tokenizer adds BOS on encode (`add_bos_token`)."""
    eos_id: int
    pad_id: int | None
    sha256: str


def tokenizer_info(tokenizer_dir: Path) -> TokenizerInfo:
    """Vocabulary size and the BOS/EOS/PAD ids, from tokenizer.json + tokenizer_config.json."""
    tokenizer_dir = Path(tokenizer_dir)
    path, cfg_path = tokenizer_dir / sh.TOKENIZER_FILE, tokenizer_dir / "tokenizer_config.json"
    if not path.is_file() or not cfg_path.is_file():
        raise ConfigError(
            f"{tokenizer_dir}: needs tokenizer.json and tokenizer_config.json (kiban tokenizer train)"
        )
    sha = sha256_file(path)
    tok = _load(str(path), sha)
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))

    def token_id(key: str) -> int | None:
        value = cfg.get(key)
        name = value.get("content") if isinstance(value, dict) else value
        if name is None:
            return None
        tid = tok.token_to_id(name)
        if tid is None:
            raise ConfigError(f"{cfg_path}: {key} {name!r} is not in {path}")
        return tid

    eos = token_id("eos_token")
    if eos is None:
        raise ConfigError(f"{cfg_path}: no eos_token; token shards put EOS after every document")
    bos = token_id("bos_token") if cfg.get("add_bos_token", False) else None
    return TokenizerInfo(tok.get_vocab_size(with_added_tokens=True), bos, eos, token_id("pad_token"), sha)


def plan(parts: list[Path], cfg: TokenizeConfig) -> list[tuple[Path, int, int]]:
    """(part, start row, stop row) of every shard, in input order."""
    out = []
    for part in parts:
        n = pq.ParquetFile(part).metadata.num_rows
        step = cfg.shard_docs or max(n, 1)
        out.extend((part, s, min(s + step, n)) for s in range(0, max(n, 1), step))
    return out


_TOKENIZERS: dict[tuple[str, str], Any] = {}


def _load(path: str, sha256: str) -> Any:
    """The tokenizer at `path`, loaded once per process (and again if the file's hash changes)."""
    from tokenizers import Tokenizer

    key = (path, sha256)
    if key not in _TOKENIZERS:
        tok = Tokenizer.from_file(path)
        tok.encode_special_tokens = True  # a literal "</s>" in a document is text, not EOS
        _TOKENIZERS.clear()
        _TOKENIZERS[key] = tok
    return _TOKENIZERS[key]


def encode_shard(task: ShardTask) -> dict[str, Any]:
    """One task: encode rows [start, stop) of a part into shard `index` (skipped when done)."""
    out = Path(task.out_dir)
    if sh.shard_done(out, task.index):
        return sh.read_shard_entry(out, task.index, task.dtype)
    tok = _load(task.tokenizer_json, task.tokenizer_sha256)
    texts = pq.read_table(task.part, columns=["text"])["text"].slice(task.start, task.stop - task.start)
    first = 0 if task.bos_id is None else 1
    docs: list[np.ndarray] = []
    for b in range(0, len(texts), task.batch_docs):
        batch = texts.slice(b, task.batch_docs).to_pylist()
        for enc in tok.encode_batch_fast(batch, add_special_tokens=False):
            ids = enc.ids
            doc = np.empty(first + len(ids) + 1, dtype=task.dtype)  # (BOS) tokens EOS
            if first:
                doc[0] = task.bos_id
            doc[first:-1] = ids
            doc[-1] = task.eos_id
            docs.append(doc)
    return sh.write_shard(out, task.index, docs, task.dtype)


def tokenize_corpus(
    corpus_dir: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    cfg: TokenizeConfig,
    *,
    executor: str = "local",
    workers: int = 1,
    progress: Mode = "quiet",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Encode every document of `corpus_dir` into token shards in `out_dir`; return the manifest."""
    corpus_dir, tokenizer_dir, out_dir = Path(corpus_dir), Path(tokenizer_dir), Path(out_dir)
    t0 = time.monotonic()
    parts = corpus_parts(corpus_dir)
    info = tokenizer_info(tokenizer_dir)
    dtype = sh.dtype_for(info.vocab_size).name
    _prepare(out_dir, corpus_dir, tokenizer_dir, cfg, info, overwrite=overwrite)

    tasks = [
        ShardTask(i, str(part), start, stop, str(tokenizer_dir / sh.TOKENIZER_FILE), info.sha256, str(out_dir),
                  dtype, info.bos_id, info.eos_id, cfg.batch_docs)
        for i, (part, start, stop) in enumerate(plan(parts, cfg))
    ]  # fmt: skip
    entries: list[dict[str, Any] | None] = [None] * len(tasks)
    bar = Progress("tokenize", len(tasks), mode=progress, unit="shards")
    ex = make_executor(executor, workers)
    try:
        for i, entry in ex.map_unordered(encode_shard, tasks):
            entries[i] = entry
            bar.update(1, tokens=entry["n_tokens"])
    finally:
        ex.close()
        bar.close()
    done = [e for e in entries if e is not None]
    manifest = sh.write_tokens_manifest(
        out_dir,
        done,
        vocab_size=info.vocab_size,
        bos_id=info.bos_id,
        eos_id=info.eos_id,
        pad_id=info.pad_id,
        tokenizer_sha256=info.sha256,
        inputs=[
            input_record(corpus_dir, "corpus", relative_to=out_dir),
            input_record(tokenizer_dir, "tokenizer", relative_to=out_dir),
        ],
        licenses=dict(read_manifest(corpus_dir).licenses),
        config=to_dict(cfg),
        stats={"elapsed_s": round(time.monotonic() - t0, 3)},
    )
    (out_dir / RUN_FILE).unlink(missing_ok=True)
    return manifest.to_dict()


def _prepare(
    out_dir: Path,
    corpus_dir: Path,
    tokenizer_dir: Path,
    cfg: TokenizeConfig,
    info: TokenizerInfo,
    *,
    overwrite: bool,
) -> None:
    """Refuse a finished or foreign directory; clear it on `overwrite`; record this run."""
    run = {
        "corpus_manifest_sha256": sha256_file(corpus_dir / MANIFEST),
        "tokenizer_sha256": info.sha256,
        "config": asdict(cfg),
    }
    if overwrite and out_dir.is_dir():
        for p in out_dir.iterdir():
            if p.is_file() and (
                p.name in (MANIFEST, RUN_FILE) or p.name.startswith(("tokens-", "docs-", ".tmp-"))
            ):
                p.unlink()
    if (out_dir / MANIFEST).is_file():
        raise ConfigError(
            f"{out_dir / MANIFEST}: finished token shards are there; pass --overwrite to replace them"
        )
    run_path = out_dir / RUN_FILE
    if run_path.is_file():
        try:
            previous = json.loads(run_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{run_path}: not valid JSON ({e}); pass --overwrite to start again") from e
        if previous != run:
            changed = sorted(k for k in run if previous.get(k) != run[k])
            raise ConfigError(
                f"{run_path}: an unfinished run made from another {', '.join(changed)} is there; "
                "pass --overwrite to start again"
            )
    else:
        write_json_atomic(run_path, run)
    for p in out_dir.glob(".tmp-*"):  # left by a killed run
        p.unlink()
