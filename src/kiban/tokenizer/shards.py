"""Token shards: the artifact between `kiban tokenize` and `kiban train` (numpy only, no torch).

A token-shard directory holds

    manifest.json        kind "tokens"; config: dtype, vocab_size, bos_id, eos_id, pad_id,
                         tokenizer_sha256 (of tokenizer.json); stats: n_tokens, n_docs, shards[]
    tokens-00000.bin     flat little-endian uint16|uint32 array: each document's tokens, then EOS
    docs-00000.npy       int64 start offset of every document in that shard (the document index)

The manifest lists the shards in order; readers follow that list, never a glob, so a stray file
(a `.tmp-*` left by a killed run) is never read.

>>> import tempfile, numpy as np
>>> d = Path(tempfile.mkdtemp())
>>> write_shard(d, 0, [np.array([5, 6, 2]), np.array([7, 2])], dtype_for(32_000))
{'file': 'tokens-00000.bin', 'n_tokens': 5, 'n_docs': 2}
>>> np.load(d / "docs-00000.npy").tolist()
[0, 3]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kiban.artifacts import Manifest, atomic_path, read_manifest, sha256_file, write_manifest
from kiban.errors import ConfigError, DataError

KIND = "tokens"
TOKENIZER_FILE = "tokenizer.json"
UINT16_MAX_VOCAB = 65_536  # ids 0..65,535 fit in uint16


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 iff every id fits (vocab_size ≤ 65,536), else uint32; always little-endian.

    >>> dtype_for(32_000).name, dtype_for(65_536).name, dtype_for(65_537).name
    ('uint16', 'uint16', 'uint32')
    """
    if vocab_size < 1:
        raise ConfigError(f"vocab_size must be ≥ 1, got {vocab_size}")
    return np.dtype("<u2") if vocab_size <= UINT16_MAX_VOCAB else np.dtype("<u4")


def tokens_name(index: int) -> str:
    return f"tokens-{index:05d}.bin"


def docs_name(index: int) -> str:
    return f"docs-{index:05d}.npy"


def shard_done(directory: Path, index: int) -> bool:
    """Both files of shard `index` are in place (each is renamed into place only when complete)."""
    directory = Path(directory)
    return (directory / tokens_name(index)).is_file() and (directory / docs_name(index)).is_file()


def write_shard(
    directory: Path, index: int, docs_tokens: Sequence[np.ndarray], dtype: np.dtype | str
) -> dict[str, Any]:
    """Write shard `index` atomically: `docs_tokens` are complete documents (BOS/EOS included).

    The index file is written last, so `shard_done` is true only once both are complete.
    Returns the manifest entry `{"file", "n_tokens", "n_docs"}`.
    """
    directory = Path(directory)
    dtype = np.dtype(dtype).newbyteorder("<")
    if dtype not in (np.dtype("<u2"), np.dtype("<u4")):
        raise ConfigError(f"token shard dtype must be uint16 or uint32, got {dtype}")
    lengths = np.fromiter((len(t) for t in docs_tokens), dtype=np.int64, count=len(docs_tokens))
    offsets = np.zeros(len(docs_tokens), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1], out=offsets[1:])
    flat = np.concatenate(docs_tokens) if len(docs_tokens) else np.zeros(0, dtype=np.int64)
    if flat.size and (flat.min() < 0 or int(flat.max()) > np.iinfo(dtype).max):
        raise DataError(
            f"{directory / tokens_name(index)}: token id {int(flat.max())} does not fit in {dtype.name}"
        )
    with atomic_path(directory / tokens_name(index)) as tmp:
        flat.astype(dtype, copy=False).tofile(tmp)
    with atomic_path(directory / docs_name(index)) as tmp, open(tmp, "wb") as f:
        np.save(f, offsets, allow_pickle=False)
    return {"file": tokens_name(index), "n_tokens": int(flat.size), "n_docs": int(len(docs_tokens))}


def read_shard_entry(directory: Path, index: int, dtype: np.dtype | str) -> dict[str, Any]:
    """The manifest entry of an already written shard (for resuming without re-tokenizing)."""
    directory = Path(directory)
    n_bytes = (directory / tokens_name(index)).stat().st_size
    offsets = np.load(directory / docs_name(index), mmap_mode="r")
    return {
        "file": tokens_name(index),
        "n_tokens": n_bytes // np.dtype(dtype).itemsize,
        "n_docs": int(offsets.shape[0]),
    }


def write_tokens_manifest(
    directory: Path,
    shards: list[dict[str, Any]],
    *,
    vocab_size: int,
    bos_id: int | None,
    eos_id: int,
    pad_id: int | None,
    tokenizer_sha256: str,
    inputs: list[dict[str, Any]] | None = None,
    licenses: dict[str, int] | None = None,
    config: dict[str, Any] | None = None,
    stats: dict[str, Any] | None = None,
) -> Manifest:
    """Write `manifest.json` last, marking the shard set complete."""
    manifest = Manifest(
        kind=KIND,
        config={
            **(config or {}),
            "dtype": dtype_for(vocab_size).name,
            "vocab_size": vocab_size,
            "bos_id": bos_id,
            "eos_id": eos_id,
            "pad_id": pad_id,
            "tokenizer_sha256": tokenizer_sha256,
        },
        inputs=list(inputs or []),
        stats={
            "n_tokens": sum(int(s["n_tokens"]) for s in shards),
            "n_docs": sum(int(s["n_docs"]) for s in shards),
            "shards": shards,
            **(stats or {}),
        },
        licenses=dict(licenses or {}),
    )
    write_manifest(directory, manifest)
    return manifest


def tokenizer_vocab_size(tokenizer_dir: Path) -> int:
    """Number of ids of a HF `tokenizer.json` (model vocabulary plus added tokens)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(tokenizer_dir) / TOKENIZER_FILE)).get_vocab_size(
        with_added_tokens=True
    )


class TokenShards:
    """A memory-mapped token-shard set.

    >>> shards = TokenShards.open("out/tokens")        # doctest: +SKIP
    >>> shards.check_tokenizer("out/tokenizer")        # doctest: +SKIP
    >>> shards.shard(0)[:8], shards.documents(0)[:3]   # doctest: +SKIP
    """

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        cfg, stats = manifest.config, manifest.stats
        where = self.directory / "manifest.json"
        try:
            self.dtype = np.dtype(cfg["dtype"]).newbyteorder("<")
            self.vocab_size = int(cfg["vocab_size"])
            self.eos_id = int(cfg["eos_id"])
            self.bos_id = None if cfg.get("bos_id") is None else int(cfg["bos_id"])
            self.pad_id = None if cfg.get("pad_id") is None else int(cfg["pad_id"])
            self.tokenizer_sha256 = str(cfg["tokenizer_sha256"])
            self.n_tokens = int(stats["n_tokens"])
            self.n_docs = int(stats["n_docs"])
            self.entries: list[dict[str, Any]] = list(stats["shards"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: missing or bad field {e} in a token-shard manifest") from e
        if self.dtype != dtype_for(self.vocab_size):
            raise DataError(f"{where}: dtype {self.dtype.name} does not match vocab_size {self.vocab_size}")
        self._tokens: list[np.memmap] = []
        self._docs: list[np.ndarray] = []
        for i, entry in enumerate(self.entries):
            path = self.directory / entry["file"]
            docs_path = self.directory / entry["file"].replace("tokens-", "docs-").replace(".bin", ".npy")
            if not path.is_file() or not docs_path.is_file():
                raise DataError(f"{where}: shard {i} ({path.name}) or its index {docs_path.name} is missing")
            expected = int(entry["n_tokens"]) * self.dtype.itemsize
            if path.stat().st_size != expected:
                raise DataError(f"{path}: {path.stat().st_size} bytes, manifest says {expected}")
            if expected == 0:
                tokens = np.zeros(0, dtype=self.dtype)  # np.memmap refuses empty files
            else:
                tokens = np.memmap(path, dtype=self.dtype, mode="r")
            docs = np.load(docs_path, mmap_mode="r")
            if docs.shape[0] != int(entry["n_docs"]):
                raise DataError(f"{docs_path}: {docs.shape[0]} documents, manifest says {entry['n_docs']}")
            self._tokens.append(tokens)  # type: ignore[arg-type]
            self._docs.append(docs)

    @classmethod
    def open(cls, directory: Path | str) -> TokenShards:
        directory = Path(directory)
        manifest = read_manifest(directory)
        if manifest.kind != KIND:
            raise DataError(f"{directory / 'manifest.json'}: kind is {manifest.kind!r}, expected {KIND!r}")
        return cls(directory, manifest)

    def __len__(self) -> int:
        return len(self._tokens)

    def shard(self, i: int) -> np.ndarray:
        """Shard `i`'s tokens, memory-mapped read-only: shape (n_tokens,)."""
        return self._tokens[i]

    def documents(self, i: int) -> np.ndarray:
        """Start offset of each document of shard `i` (int64, shape (n_docs,))."""
        return self._docs[i]

    def document(self, i: int, j: int) -> np.ndarray:
        """Tokens of document `j` of shard `i`, EOS included."""
        docs = self._docs[i]
        end = int(docs[j + 1]) if j + 1 < docs.shape[0] else self._tokens[i].shape[0]
        return self._tokens[i][int(docs[j]) : end]

    def check_tokenizer(self, tokenizer_dir: Path | str) -> None:
        """Refuse a tokenizer that is not the one these shards were made with."""
        tok_path = Path(tokenizer_dir) / TOKENIZER_FILE
        manifest_path = self.directory / "manifest.json"
        if not tok_path.is_file():
            raise ConfigError(f"{tok_path}: no tokenizer.json (shards: {manifest_path})")
        actual = sha256_file(tok_path)
        if actual != self.tokenizer_sha256:
            raise ConfigError(
                f"{tok_path} (sha256 {actual[:12]}…) is not the tokenizer {manifest_path} was made with "
                f"(tokenizer_sha256 {self.tokenizer_sha256[:12]}…); re-run `kiban tokenize` with it"
            )
        vocab = tokenizer_vocab_size(Path(tokenizer_dir))
        if vocab != self.vocab_size:
            raise ConfigError(
                f"{tok_path} has {vocab} ids but {manifest_path} says vocab_size {self.vocab_size}"
            )
