"""Train a tokenizer on a corpus; encode a corpus into token shards; render chats (no torch here).

kiban tokenizer train CORPUS --out TOK     → train_tokenizer(corpus, out, TokenizerConfig())
kiban tokenize CORPUS --tokenizer TOK ...  → tokenize_corpus(corpus, tok, out, TokenizeConfig())
kiban train (reads the shards)             → TokenShards.open(dir).check_tokenizer(tok)
kiban serve, kiban finetune (chat)         → kiban.tokenizer.chat.ChatFormat.from_dir(model)

The names below load their module on first use, so `kiban.tokenizer.chat` does not pull in the
corpus readers that encoding needs.
"""

from __future__ import annotations

from kiban.lazy import lazy_getattr

_EXPORTS = {
    "TokenShards": "kiban.tokenizer.shards",
    "dtype_for": "kiban.tokenizer.shards",
    "write_shard": "kiban.tokenizer.shards",
    "TokenizeConfig": "kiban.tokenizer.encode",
    "tokenize_corpus": "kiban.tokenizer.encode",
    "TokenizerConfig": "kiban.tokenizer.train",
    "train_tokenizer": "kiban.tokenizer.train",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
