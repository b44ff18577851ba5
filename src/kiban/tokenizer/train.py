"""Train a SentencePiece-style BPE tokenizer (byte fallback, digits split) on a kiban corpus.

    corpus ─split by hash(doc id)─┬─ training docs (sampled down to max_train_chars) ─BPE─▶ tokenizer.json …
                                  └─ held-out docs ─────────────────▶ characters per token (ja, en), unk count

>>> cfg = TokenizerConfig(vocab_size=8_000)
>>> cfg.special_tokens
['<s>', '</s>', '<pad>']
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Tokenizer, trainers

from kiban.artifacts import MANIFEST, Manifest, input_record, read_manifest, write_manifest
from kiban.config import to_dict
from kiban.curate.shards import iter_documents
from kiban.errors import ConfigError, DataError
from kiban.progress import Mode, Progress
from kiban.tokenizer import llama_style as ls


@dataclass
class TokenizerConfig:
    vocab_size: int = 32_000
    """Number of ids, including <unk> <s> </s> <pad> and the 256 byte tokens (so ≥ 261)."""
    min_frequency: int = 2
    """A pair seen fewer times in the training text is never merged."""
    held_out_fraction: float = 0.02
    """Fraction of documents kept out of training to measure characters per token; chosen by a
    hash of the document id (and `seed`), so the same documents every run."""
    max_train_chars: int = 500_000_000
    """Cap on training text; a larger corpus is sampled down by a hash of the document id."""
    character_coverage: float = 0.9995
    """Fraction of training characters covered by single-character tokens (SentencePiece's
    default for Japanese); rarer characters are spelled with byte tokens. At most half of the
    learned ids are single characters, whatever the coverage."""
    max_token_chars: int = 16
    """Longest token, in characters (SentencePiece's max_sentencepiece_length)."""
    seed: int = 0
    """Salt of the held-out and sampling hashes."""
    special_tokens: list[str] = field(default_factory=lambda: [ls.BOS, ls.EOS, ls.PAD])
    """BOS, EOS and PAD, in that order (<unk> is added too, at id 0, and never produced)."""
    chat_template: str = ls.DEFAULT_CHAT_TEMPLATE
    """Jinja chat template (Hugging Face convention) saved in tokenizer_config.json."""
    model_max_length: int = 4096
    """Recorded in tokenizer_config.json; the model's context length."""

    def __post_init__(self) -> None:
        if self.vocab_size <= ls.RESERVED:
            raise ConfigError(f"tokenizer.vocab_size must be > {ls.RESERVED}, got {self.vocab_size}")
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise ConfigError(f"tokenizer.held_out_fraction must be in [0, 1), got {self.held_out_fraction}")
        if not 0.0 < self.character_coverage <= 1.0:
            raise ConfigError(
                f"tokenizer.character_coverage must be in (0, 1], got {self.character_coverage}"
            )
        if self.min_frequency < 1 or self.max_train_chars < 1 or self.max_token_chars < 2:
            raise ConfigError("tokenizer.min_frequency, max_train_chars must be ≥ 1, max_token_chars ≥ 2")
        if list(self.special_tokens) != [ls.BOS, ls.EOS, ls.PAD]:
            # the Llama layout (ids 1, 2, 3) is what llama.cpp and the export stage expect
            raise ConfigError(f"tokenizer.special_tokens must be {[ls.BOS, ls.EOS, ls.PAD]}")


def unit_hash(doc_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by the document id: `unit_hash("a", "s") == unit_hash("a", "s")`."""
    digest = hashlib.blake2b(f"{salt}\0{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_held_out(doc_id: str, cfg: TokenizerConfig) -> bool:
    return unit_hash(doc_id, f"held_out:{cfg.seed}") < cfg.held_out_fraction


def corpus_parts(corpus_dir: Path) -> list[Path]:
    corpus_dir = Path(corpus_dir)
    manifest = read_manifest(corpus_dir)
    if manifest.kind != "corpus":
        raise DataError(f"{corpus_dir / MANIFEST}: kind is {manifest.kind!r}, expected 'corpus'")
    parts = sorted(corpus_dir.glob("part-*.parquet"))
    if not parts:
        raise DataError(f"{corpus_dir}: no part-*.parquet files")
    return parts


def _training_chars(parts: list[Path], cfg: TokenizerConfig) -> int:
    """Characters in the training split, counted from Arrow without building Python strings."""
    total = 0
    for part in parts:
        table = pq.read_table(part, columns=["id", "text"])
        lengths = pc.utf8_length(table["text"]).to_pylist()
        total += sum(
            n for i, n in zip(table["id"].to_pylist(), lengths, strict=True) if not is_held_out(i, cfg)
        )
    return total


def _training_texts(
    parts: list[Path], cfg: TokenizerConfig, keep: float, chars: Counter[str]
) -> Iterator[str]:
    budget = cfg.max_train_chars
    for doc in iter_documents(parts):
        if is_held_out(doc.id, cfg) or unit_hash(doc.id, f"sample:{cfg.seed}") >= keep:
            continue
        text = doc.text[:budget]
        budget -= len(text)
        chars.update(text)
        yield text
        if budget <= 0:
            return


def choose_alphabet(chars: Counter[str], coverage: float, limit: int) -> list[str]:
    """The most frequent characters covering `coverage` of all (at most `limit`), ties by code point.

    Chosen here rather than by the trainer's `limit_alphabet`, whose ties fall in hash order and
    would make two runs differ.

    >>> choose_alphabet(Counter("ああいいうえ"), 0.6, 10)
    ['あ', 'い']
    """
    ranked = sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))
    total, covered, out = sum(chars.values()), 0, []
    for ch, count in ranked[:limit]:
        if covered >= coverage * total:
            break
        out.append(ch)
        covered += count
    return sorted(out)


def train_tokenizer(
    corpus_dir: Path,
    out_dir: Path,
    cfg: TokenizerConfig,
    *,
    progress: Mode = "quiet",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train, save as a Hugging Face fast tokenizer in `out_dir`, return the manifest."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    if (out_dir / MANIFEST).is_file() and not overwrite:
        raise ConfigError(
            f"{out_dir / MANIFEST}: a finished tokenizer is there; pass --overwrite to replace it"
        )
    parts = corpus_parts(corpus_dir)
    t0 = time.monotonic()
    train_chars = _training_chars(parts, cfg)
    if train_chars == 0:
        raise DataError(f"{corpus_dir}: no training text (every document is empty or held out)")
    keep = min(1.0, cfg.max_train_chars / train_chars)

    # Pass 1: the sampled training text, counted per character to size the alphabet. It is held
    # in memory (≤ max_train_chars) because the BPE trainer needs it again in pass 2 anyway.
    chars: Counter[str] = Counter()
    bar = Progress("tokenizer", None, mode=progress, unit="docs")
    texts = []
    for text in _training_texts(parts, cfg, keep, chars):
        texts.append(text)
        bar.update(1)
    chars[ls.SPACE] += chars.pop(" ", 0)  # the normalizer turns spaces into ▁
    budget = cfg.vocab_size - ls.RESERVED
    chars[ls.SPACE] += len(texts)  # and prepends one to every document
    # at most half the learned ids go to single characters, so a small vocabulary still merges
    alphabet = choose_alphabet(chars, cfg.character_coverage, budget // 2)
    if ls.SPACE not in alphabet:  # always a token, so spaces decode through "▁" → " "
        alphabet = sorted([*choose_alphabet(chars, cfg.character_coverage, budget // 2 - 1), ls.SPACE])

    trainer = trainers.BpeTrainer(
        vocab_size=budget,
        min_frequency=cfg.min_frequency,
        show_progress=False,
        special_tokens=[],
        # the trainer keeps initial_alphabet first, so this limit drops exactly the other chars
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        max_token_length=cfg.max_token_chars,
    )
    trainer_tok = ls.training_tokenizer()
    trainer_tok.train_from_iterator(texts, trainer, length=len(texts))
    learned, merges = ls.learned_vocab(trainer_tok)
    tok = ls.build_tokenizer(learned, merges)
    ls.check_digits(tok)
    bar.close()

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # an overwritten tokenizer is incomplete until the end
    ls.save_hf(tok, out_dir, chat_template=cfg.chat_template, model_max_length=cfg.model_max_length)
    held_out = evaluate_held_out(Tokenizer.from_file(str(out_dir / "tokenizer.json")), parts, cfg)
    if held_out["unk_tokens"]:
        raise DataError(
            f"{out_dir}: the tokenizer produced <unk> {held_out['unk_tokens']} times on held-out text"
        )
    manifest = Manifest(
        kind="tokenizer",
        config=to_dict(cfg),
        inputs=[input_record(corpus_dir, "corpus", relative_to=out_dir)],
        stats={
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "learned_tokens": len(learned),
            "merges": len(merges),
            "alphabet": len(alphabet),
            "training_docs": len(texts),
            "training_chars": sum(len(t) for t in texts),
            "held_out": held_out,
            "unk_tokens": held_out["unk_tokens"],
            "elapsed_s": round(time.monotonic() - t0, 3),
        },
        licenses=dict(read_manifest(corpus_dir).licenses),
    )
    write_manifest(out_dir, manifest)
    return manifest.to_dict()


def evaluate_held_out(tok: Tokenizer, parts: list[Path], cfg: TokenizerConfig) -> dict[str, Any]:
    """Characters per token on held-out documents, per language ("ja", "en", all), and <unk> count."""
    texts: dict[str, list[str]] = {"ja": [], "en": [], "all": []}
    for doc in iter_documents(parts):
        if is_held_out(doc.id, cfg):
            lang = str(doc.meta.get("lang", ""))
            if lang in texts:
                texts[lang].append(doc.text)
            texts["all"].append(doc.text)
    unk = tok.token_to_id(ls.UNK)
    out: dict[str, Any] = {"unk_tokens": 0, "round_trip_failures": 0}
    for lang, docs in texts.items():
        encs = tok.encode_batch(docs, add_special_tokens=False) if docs else []
        n_tokens = sum(len(e.ids) for e in encs)
        n_chars = sum(len(d) for d in docs)
        if lang == "all":
            out["unk_tokens"] = sum(e.ids.count(unk) for e in encs)
            decoded = tok.decode_batch([e.ids for e in encs], skip_special_tokens=False)
            out["round_trip_failures"] = sum(a != b for a, b in zip(decoded, docs, strict=True))
        out[lang] = {
            "docs": len(docs),
            "chars": n_chars,
            "tokens": n_tokens,
            "chars_per_token": round(n_chars / n_tokens, 4) if n_tokens else None,
        }
    return out
