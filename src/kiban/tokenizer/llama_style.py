"""The SentencePiece / Llama-2 style tokenizer pipeline, expressed with HF `tokenizers`.

Inference pipeline (what `tokenizer.json` holds; the same as Llama-2's):

    normalizer     prepend "▁", replace " " with "▁"   (no NFKC, no lowercasing, nothing collapsed)
    pre_tokenizer  none                                   (llama.cpp's SPM tokenizer has none either)
    model          BPE over the whole text, byte_fallback  (<0x00>…<0xFF> are in the vocabulary)
    decoder        "▁" → " ", ByteFallback, Fuse, strip one leading space

Vocabulary layout (ids): 0 <unk> (never produced: every byte has a token), 1 <s>, 2 </s>,
3 <pad>, 4–259 the bytes <0x00>…<0xFF>, then the learned characters and merges in merge order.

Training adds a pre-tokenizer that the saved tokenizer does not have: pieces start at "▁",
newline runs stand alone and every digit stands alone. Merges therefore never cross those
boundaries, so applying them to the whole text at inference (no pre-tokenizer) gives the same
pieces, and no token holds a digit next to anything else (`check_digits`).

>>> tok = build_tokenizer(["▁", "a", "b", "▁a"], [("▁", "a")])
>>> tok.encode("a ab", add_special_tokens=False).tokens
['▁a', '▁a', 'b']
>>> tok.decode(tok.encode("a ab\\t日").ids)
'a ab\\t日'
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from kiban.artifacts import write_json_atomic, write_text_atomic
from kiban.errors import DataError

SPACE = "▁"  # U+2581, SentencePiece's visible space
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "added_tokens.json",
)
"""The files of a Hugging Face model directory that are its tokenizer (what a derived model copies)."""
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
SPECIALS = (UNK, BOS, EOS, PAD)
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))
RESERVED = len(SPECIALS) + len(BYTE_TOKENS)  # 260 ids before the learned vocabulary

# Llama-2's chat format, with a system prompt folded into the first user turn. The template
# supplies <s> itself, so `apply_chat_template` (which encodes without special tokens) gets one
# BOS per turn, and every assistant turn ends with </s>, the token generation stops at.
DEFAULT_CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set system = none -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- bos_token + '[INST] ' -}}"
    "{%- if loop.first and system is not none -%}{{- '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' -}}{%- endif -%}"
    "{{- message['content'] + ' [/INST]' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- ' ' + message['content'] + eos_token -}}"
    "{%- else -%}"
    "{{- raise_exception('roles must be system (first message only), user or assistant') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def is_digit(ch: str) -> bool:
    """What `pre_tokenizers.Digits` splits off: Rust's `char::is_numeric` (Nd, Nl, No).

    >>> [is_digit(c) for c in "7７②〇一"]
    [True, True, True, True, False]
    """
    return unicodedata.category(ch) in ("Nd", "Nl", "No")


def normalizer() -> normalizers.Normalizer:
    return normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])


def decoder() -> decoders.Decoder:
    return decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )


def training_tokenizer() -> Tokenizer:
    """An empty BPE with the training-only pre-tokenizer (see the module docstring)."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(SPACE, behavior="merged_with_next"),
            pre_tokenizers.Split(Regex(r"\n+"), behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    return tok


def build_tokenizer(learned: Iterable[str], merges: list[tuple[str, str]]) -> Tokenizer:
    """The inference tokenizer: specials and bytes first, then `learned` (in id order)."""
    vocab: dict[str, int] = {t: i for i, t in enumerate(SPECIALS + BYTE_TOKENS)}
    for t in learned:
        # A learned token spelled like a reserved one (a corpus full of literal "<0x41>") would
        # share its id; the merge still yields that id, so encoding stays total.
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK, byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizer()
    tok.decoder = decoder()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, 1)]
    )
    return tok


def learned_vocab(trained: Tokenizer) -> tuple[list[str], list[tuple[str, str]]]:
    """The tokens (in id order) and merges of a trained BPE."""
    model = json.loads(trained.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return tokens, merges  # type: ignore[return-value]


def check_digits(tok: Tokenizer) -> None:
    """Every token holding a digit is that digit alone (bytes and specials excepted)."""
    reserved = set(SPECIALS + BYTE_TOKENS)
    bad = [t for t in tok.get_vocab() if t not in reserved and len(t) > 1 and any(is_digit(c) for c in t)]
    if bad:
        raise DataError(f"tokenizer vocabulary joins digits with other characters: {sorted(bad)[:10]}")


def save_hf(tok: Tokenizer, out_dir: Path, *, chat_template: str, model_max_length: int) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json for `AutoTokenizer`."""
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / "tokenizer.json", tok.to_str(pretty=True) + "\n")
    added: dict[str, Any] = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIALS
    }
    write_json_atomic(
        out_dir / "tokenizer_config.json",
        {
            # the generic fast class loads tokenizer.json exactly as written; a model-specific
            # class may rebuild parts of the pipeline from its own defaults
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS,
            "eos_token": EOS,
            "pad_token": PAD,
            "unk_token": UNK,
            "add_bos_token": True,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,  # decode must give back the text exactly
            "model_max_length": model_max_length,
            "chat_template": chat_template,
            "added_tokens_decoder": added,
        },
    )
    write_json_atomic(
        out_dir / "special_tokens_map.json",
        {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK},
    )
