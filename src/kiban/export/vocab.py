"""A kiban tokenizer (`tokenizer.json`: BPE with byte fallback) as llama.cpp's SPM vocabulary.

llama.cpp has two tokenizers a byte-fallback BPE could map to, and only one fits:

- `gpt2` (llama.cpp's BPE) runs merges by rank, but over *byte-level* symbols (GPT-2's
  byte→unicode table) after a regex pre-tokenizer; kiban's pieces are "▁"-spelled characters and
  `<0xE3>` byte tokens, which that tokenizer cannot look up without renaming the vocabulary.
- `llama` (llama.cpp's SPM) does what kiban's `tokenizer.json` does: prepend "▁", turn spaces into
  "▁", split into UTF-8 characters, merge, and spell a character that has no token with its
  `<0xXX>` byte tokens. It merges the adjacent pair whose *joined text* is the vocabulary token of
  highest `score`, leftmost first.

So the export writes `tokenizer.ggml.model = "llama"` with `score(t) = -rank` of the first merge
that makes `t`: the pair SPM picks is then the pair of lowest merge rank, which is what a BPE
applies next. The two agree as long as SPM cannot join a pair the BPE has no merge for. Training
(kiban's own BPE trainer) only ever adds a multi-character token through a merge, and applying
merges in rank order repeats the order training met them in; `spm_vocab` refuses a tokenizer with
a multi-character token that no merge makes but SPM could still build (a hand-added "です" when
"で" and "す" are tokens). The parity tests tokenize real Japanese, English and emoji with both
and compare every id (tests/unit/export/test_export_gguf.py, benchmarks/export_parity.py).

    >>> from kiban.tokenizer.llama_style import build_tokenizer
    >>> v = spm_vocab(build_tokenizer(["▁", "a", "b", "▁a", "▁ab"], [("▁", "a"), ("▁a", "b")]).to_str())
    >>> v.tokens[260:], v.scores[260:]
    (['▁', 'a', 'b', '▁a', '▁ab'], [0.0, 0.0, 0.0, 0.0, -1.0])
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from kiban.errors import DataError

# gguf's TokenType values (gguf.constants.TokenType), repeated so this module needs no gguf import
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_BYTE_TOKEN = re.compile(r"<0x[0-9A-F]{2}>")


@dataclass(frozen=True)
class SpmVocab:
    """What `tokenizer.ggml.*` holds, one entry per id (padded to the model's vocabulary)."""

    tokens: list[str]
    scores: list[float]
    types: list[int]
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    add_bos: bool


def spm_vocab(
    tokenizer_json: str, *, tokenizer_config: dict[str, Any] | None = None, vocab_size: int | None = None
) -> SpmVocab:
    """The SPM vocabulary of a kiban `tokenizer.json` (text), padded with unused ids to `vocab_size`.

    DataError, naming the field, for a tokenizer llama.cpp would tokenize differently.
    """
    try:
        tok = json.loads(tokenizer_json)
    except json.JSONDecodeError as e:
        raise DataError(f"tokenizer.json: not valid JSON: {e}") from e
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        raise DataError(
            "tokenizer.json: field 'model' must be a BPE with byte_fallback (a kiban tokenizer); "
            f"got type {model.get('type')!r}, byte_fallback {model.get('byte_fallback')!r}"
        )
    _check_pipeline(tok)
    vocab: dict[str, int] = model.get("vocab") or {}
    n = max(vocab.values(), default=-1) + 1
    added = {a["content"]: a for a in tok.get("added_tokens") or []}
    for a in added.values():
        n = max(n, a["id"] + 1)
    if vocab_size is not None and vocab_size < n:
        raise DataError(f"tokenizer.json has {n} ids but the model's vocab_size is {vocab_size}")
    size = vocab_size or n
    tokens: list[str | None] = [None] * size
    for t, i in vocab.items():
        tokens[i] = t
    for content, a in added.items():
        tokens[a["id"]] = content

    # score = -(rank of the first merge that makes the token); everything else 0
    scores = [0.0] * size
    made: set[str] = set()
    for rank, m in enumerate(model.get("merges") or []):
        a, b = (m if isinstance(m, list) else m.split(" ", 1))[:2]
        joined = a + b
        if joined in made or joined not in vocab:
            continue
        made.add(joined)
        scores[vocab[joined]] = float(-rank)
    _check_reachable(vocab, made, skip=set(added))

    types: list[int] = []
    out_tokens: list[str] = []
    for i, t in enumerate(tokens):
        if t is None:  # a hole, or padding past the tokenizer: never produced, never sampled
            out_tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif t in added and added[t].get("special"):
            out_tokens.append(t)
            types.append(UNKNOWN if t == model.get("unk_token") else CONTROL)
        elif t in added:
            out_tokens.append(t)
            types.append(USER_DEFINED)
        elif _BYTE_TOKEN.fullmatch(t):
            out_tokens.append(t)
            types.append(BYTE)
        else:
            out_tokens.append(t)
            types.append(NORMAL)
    missing = [f"<0x{b:02X}>" for b in range(256) if f"<0x{b:02X}>" not in vocab]
    if missing:
        raise DataError(f"tokenizer.json: byte_fallback without the byte tokens {', '.join(missing[:4])} ...")

    cfg = tokenizer_config or {}

    def special_id(key: str, default: str) -> int | None:
        name = cfg.get(key, default)
        if isinstance(name, dict):
            name = name.get("content")
        if name is None:
            return None
        if name in vocab:
            return vocab[name]
        return added[name]["id"] if name in added else None

    return SpmVocab(
        tokens=out_tokens,
        scores=scores,
        types=types,
        bos_id=special_id("bos_token", "<s>"),
        eos_id=special_id("eos_token", "</s>"),
        unk_id=special_id("unk_token", "<unk>"),
        pad_id=special_id("pad_token", "<pad>"),
        add_bos=bool(cfg.get("add_bos_token", True)),
    )


def _check_pipeline(tok: dict[str, Any]) -> None:
    """The normalizer must be kiban's (prepend "▁", spaces to "▁"), and nothing may pre-split."""
    norm = tok.get("normalizer") or {}
    steps = norm.get("normalizers", [norm]) if norm.get("type") == "Sequence" else [norm]
    kinds = [(s.get("type"), s.get("prepend") or (s.get("pattern") or {}).get("String")) for s in steps]
    if kinds != [("Prepend", "▁"), ("Replace", " ")]:
        raise DataError(
            "tokenizer.json: field 'normalizer' must be kiban's [Prepend('▁'), Replace(' ', '▁')] for "
            f"llama.cpp's SPM tokenizer to match it; got {kinds}"
        )
    if tok.get("pre_tokenizer") is not None:
        raise DataError(
            "tokenizer.json: field 'pre_tokenizer' must be null (llama.cpp's SPM tokenizer has none); "
            f"got {tok['pre_tokenizer'].get('type')!r}"
        )


def _check_reachable(vocab: dict[str, int], made: set[str], *, skip: set[str]) -> None:
    """Refuse a multi-character token no merge makes but SPM could build from two tokens."""
    bad = []
    for t in vocab:
        if len(t) < 2 or t in made or t in skip or _BYTE_TOKEN.fullmatch(t):
            continue
        if any(t[:k] in vocab and t[k:] in vocab for k in range(1, len(t))):
            bad.append(t)
    if bad:
        raise DataError(
            f"tokenizer.json: {len(bad)} token(s) such as {sorted(bad)[:5]} are made by no merge, but "
            "llama.cpp's SPM tokenizer would join them from two tokens: it would tokenize differently. "
            "Retrain the tokenizer with `kiban tokenizer train`."
        )
