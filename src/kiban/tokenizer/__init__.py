"""Train a tokenizer on a corpus; encode a corpus into token shards (no torch here).

kiban tokenizer train CORPUS --out TOK     → train_tokenizer(corpus, out, TokenizerConfig())
kiban tokenize CORPUS --tokenizer TOK ...  → tokenize_corpus(corpus, tok, out, TokenizeConfig())
kiban train (reads the shards)             → TokenShards.open(dir).check_tokenizer(tok)
"""

from __future__ import annotations

from kiban.tokenizer.encode import TokenizeConfig, tokenize_corpus
from kiban.tokenizer.shards import TokenShards, dtype_for, write_shard
from kiban.tokenizer.train import TokenizerConfig, train_tokenizer

__all__ = [
    "TokenShards",
    "TokenizeConfig",
    "TokenizerConfig",
    "dtype_for",
    "tokenize_corpus",
    "train_tokenizer",
    "write_shard",
]
