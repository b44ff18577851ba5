"""Tokenizer training: layout, no <unk>, digits, exact round trips, transformers parity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer

from kiban.artifacts import sha256_file
from kiban.errors import ConfigError
from kiban.tokenizer import llama_style as ls
from kiban.tokenizer.train import TokenizerConfig, is_held_out, train_tokenizer


@pytest.fixture(scope="module")
def hf(tokenizer_dir: Path, monkeypatch_module: pytest.MonkeyPatch):  # noqa: ANN201 - transformers type
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture(scope="module")
def monkeypatch_module():  # noqa: ANN201
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def tok(tokenizer_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))


def test_files_and_manifest(tokenizer_dir: Path, corpus: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "manifest.json"):
        assert (tokenizer_dir / name).is_file(), name
    m = json.loads((tokenizer_dir / "manifest.json").read_text())
    assert m["kind"] == "tokenizer"
    assert m["inputs"][0]["kind"] == "corpus"
    assert m["inputs"][0]["sha256"] == sha256_file(corpus / "manifest.json")
    assert m["licenses"] == json.loads((corpus / "manifest.json").read_text())["licenses"]
    stats = m["stats"]
    assert stats["vocab_size"] == 800 and stats["unk_tokens"] == 0
    assert stats["held_out"]["round_trip_failures"] == 0
    for lang in ("ja", "en"):
        assert stats["held_out"][lang]["docs"] > 0
        # 800 ids leave room for only ~270 merges beside the characters, yet merges already pay
        assert stats["held_out"][lang]["chars_per_token"] > 1.1
    cfg = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert cfg["add_bos_token"] is True and cfg["clean_up_tokenization_spaces"] is False


def test_vocabulary_layout(tok: Tokenizer) -> None:
    ids = [tok.token_to_id(t) for t in ("<unk>", "<s>", "</s>", "<pad>", "<0x00>", "<0xFF>")]
    assert ids == [0, 1, 2, 3, 4, 259]
    assert tok.get_vocab_size(with_added_tokens=True) == 800
    assert tok.pre_tokenizer is None  # as llama.cpp's SPM tokenizer: BPE over the whole text


def test_no_token_joins_a_digit_with_anything(tok: Tokenizer) -> None:
    ls.check_digits(tok)
    assert tok.encode("2026年11月29日", add_special_tokens=False).tokens[:5] == ["▁", "2", "0", "2", "6"]


def test_training_is_deterministic(tmp_path: Path, corpus: Path, tokenizer_dir: Path) -> None:
    train_tokenizer(corpus, tmp_path, TokenizerConfig(vocab_size=800, held_out_fraction=0.1))
    assert (tmp_path / "tokenizer.json").read_bytes() == (tokenizer_dir / "tokenizer.json").read_bytes()


def test_finished_tokenizer_is_not_overwritten_silently(tokenizer_dir: Path, corpus: Path) -> None:
    with pytest.raises(ConfigError, match="--overwrite"):
        train_tokenizer(corpus, tokenizer_dir, TokenizerConfig(vocab_size=800))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vocab_size", 260),
        ("held_out_fraction", 1.0),
        ("character_coverage", 0.0),
        ("special_tokens", ["<s>"]),
    ],
)
def test_config_errors_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"tokenizer.{field}"):
        TokenizerConfig(**{field: value})


def test_held_out_is_a_stable_fraction() -> None:
    cfg = TokenizerConfig(held_out_fraction=0.1)
    picked = [is_held_out(f"doc-{i}", cfg) for i in range(5_000)]
    assert picked == [is_held_out(f"doc-{i}", cfg) for i in range(5_000)]
    assert 0.08 < sum(picked) / len(picked) < 0.12


EXACT = [
    "",
    " ",
    "  二つの空白  と末尾の空白  ",
    "改行\n\n\n三つ\r\nCRLF\tタブ",
    "全角　空白と半角ｶﾅとＡＢＣ１２３",  # no NFKC: full-width stays full-width
    "絵文字 🤖🦾 と 👨‍👩‍👧 と \x00\x07\x1b[0m 制御文字",
    "price: 1,234,567.89 円 (税込)",
    "<s> and </s> inside text",
]


@pytest.mark.parametrize("text", EXACT)
def test_exact_round_trip_and_parity_with_transformers(text: str, tok: Tokenizer, hf) -> None:  # noqa: ANN001
    if "</s>" in text:
        # transformers matches special-token spellings in raw text (and then prepends "▁" to the
        # text after them, as Llama-2 does); `kiban tokenize` encodes them as plain text instead
        from kiban.artifacts import sha256_file
        from kiban.tokenizer.encode import _load

        path = Path(hf.name_or_path) / "tokenizer.json"
        ids = _load(str(path), sha256_file(path)).encode(text, add_special_tokens=False).ids
        assert 1 not in ids and 2 not in ids
    else:
        ids = hf.encode(text, add_special_tokens=False)
        assert ids == tok.encode(text, add_special_tokens=False).ids
    assert 0 not in ids  # never <unk>
    assert hf.decode(ids) == text


# U+2581 itself decodes as a space (as in Llama-2 and SentencePiece); special-token spellings are
# matched as special tokens by transformers.
_text = st.text(st.characters(exclude_characters="▁", exclude_categories=("Cs",)), max_size=80).filter(
    lambda s: all(t not in s for t in ls.SPECIALS)
)


@given(text=_text)
def test_any_string_round_trips_without_unk(text: str, tok: Tokenizer, hf) -> None:  # noqa: ANN001
    enc = tok.encode(text)
    assert ls.UNK not in enc.tokens
    assert tok.decode(enc.ids) == text
    ids = hf.encode(text)
    assert ids == enc.ids and hf.decode(ids, skip_special_tokens=True) == text


def test_chat_template(hf) -> None:  # noqa: ANN001
    messages = [
        {"role": "system", "content": "丁寧に答えてください。"},
        {"role": "user", "content": "こんにちは"},
        {"role": "assistant", "content": "こんにちは。"},
        {"role": "user", "content": "東京の天気は?"},
    ]
    text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<s>[INST] <<SYS>>\n丁寧に答えてください。\n<</SYS>>\n\nこんにちは [/INST] こんにちは。</s>"
        "<s>[INST] 東京の天気は? [/INST]"
    )
    ids = hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert ids[0] == 1 and ids.count(1) == 2 and ids.count(2) == 1 and ids[1] != 1


def test_tokenizer_modules_do_not_import_torch() -> None:
    code = (
        "import sys, kiban.tokenizer.train, kiban.tokenizer.encode, kiban.tokenizer.shards;"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
