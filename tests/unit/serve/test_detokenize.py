"""Incremental detokenization: no half characters, chunks that add up to the full decode, stop strings.

The tokenizer is the serve fixture's: most kanji and every emoji go through byte-fallback tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer

from kiban.serve.engine.detokenize import Detokenizer

FFFD = "\ufffd"
# Learned characters, kanji and emoji that only byte fallback can spell (3 and 4 bytes), a ZWJ
# family and a flag (several code points per glyph), half-width katakana, spaces and newlines.
POOL = list("abc xyz あいうえお日本語文書。、「」です漢字東京都ｶﾀｶﾅ\n  ") + [
    "😀",
    "🎉",
    "👨‍👩‍👧",
    "🇯🇵",
    "é",
    "ñ",
]
texts = st.lists(
    st.one_of(st.sampled_from(POOL), st.characters(min_codepoint=0x3000, max_codepoint=0x9FFF)),
    max_size=40,
).map("".join)


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))


def stream(tok: Tokenizer, ids: list[int], stop: list[str] = ()) -> tuple[list[str], Detokenizer]:
    """Push ids until done or stopped; the chunks, the flush last."""
    d = Detokenizer(tok, stop=stop)
    chunks = []
    for i in ids:
        chunks.append(d.push(i))
        if d.stopped:
            break
    chunks.append(d.flush())
    return chunks, d


@given(text=texts)
def test_chunks_have_no_half_characters_and_add_up_to_the_full_decode(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text, add_special_tokens=False).ids
    chunks, _ = stream(tok, ids)
    assert "".join(chunks) == tok.decode(ids)
    assert not any(FFFD in c for c in chunks)


@given(ids=st.lists(st.integers(0, 404).filter(lambda i: not 4 <= i < 260), max_size=30))
def test_any_learned_and_special_ids_add_up_to_the_full_decode(tok: Tokenizer, ids: list[int]) -> None:
    # specials (<s>, </s>...) are skipped and a lone "▁" is stripped at the start, as decode does
    chunks, _ = stream(tok, ids)
    assert "".join(chunks) == tok.decode(ids, skip_special_tokens=True)


@given(data=st.data(), text=texts.filter(bool))
def test_stop_strings_cut_the_text_before_the_first_one(
    tok: Tokenizer, data: st.DataObject, text: str
) -> None:
    ids = tok.encode(text, add_special_tokens=False).ids
    full = tok.decode(ids)
    start = data.draw(st.integers(0, len(full) - 1))
    inside = full[start : start + data.draw(st.integers(1, 4))]  # a stop string the text holds
    stops = [inside, data.draw(st.sampled_from(["😀!", "です。", "\n\n", "zz"]))]
    chunks, d = stream(tok, ids, stops)
    got = "".join(chunks)
    assert d.stopped
    pushed = tok.decode(d.ids)  # the ids up to the one that completed the stop string
    assert got == pushed[: min(i for i in (pushed.find(s) for s in stops) if i >= 0)]
    assert got == full[: min(i for i in (full.find(s) for s in stops) if i >= 0)]
    assert not any(FFFD in c for c in chunks)


@given(text=texts, stop=st.sampled_from(["😀!", "です。", "zz", "\n\n\n"]))
def test_text_without_the_stop_string_comes_out_whole(tok: Tokenizer, text: str, stop: str) -> None:
    ids = tok.encode(text, add_special_tokens=False).ids
    if stop in tok.decode(ids):
        return
    chunks, d = stream(tok, ids, [stop])
    assert "".join(chunks) == tok.decode(ids) and not d.stopped


def test_japanese_and_emoji_through_byte_fallback_come_out_whole_characters(tok: Tokenizer) -> None:
    ids = tok.encode("漢😀字", add_special_tokens=False).ids
    assert tok.id_to_token(ids[1]) == "<0xE6>" and len(ids) == 1 + 3 + 4 + 3  # ▁, then raw UTF-8 bytes
    d = Detokenizer(tok)
    assert [d.push(i) for i in ids] == ["", "", "", "漢", "", "", "", "😀", "", "", "字"]
    assert d.flush() == ""


def test_a_leading_space_is_kept_after_the_first_token(tok: Tokenizer) -> None:
    ids = tok.encode("a b", add_special_tokens=False).ids  # ▁ a ▁ b (the tiny tokenizer has no merges)
    d = Detokenizer(tok)
    assert [d.push(i) for i in ids] == ["", "a", " ", "b"]  # decode strips the first space only


def test_text_that_may_begin_a_stop_string_is_held_until_decided(tok: Tokenizer) -> None:
    d = Detokenizer(tok, stop=["です。"])
    out = [d.push(i) for i in tok.encode("ですか です。", add_special_tokens=False).ids]
    # ▁ <0xE3><0x81><0xA7>(で) す か ▁ で す 。: "で" waits for its bytes, "です" is held, then
    # released by "か"; the second "です。" ends the text
    assert out == ["", "", "", "", "", "ですか", " ", "", "", "", "", ""] and d.stopped
    assert d.flush() == ""
    with pytest.raises(RuntimeError):
        d.push(5)


def test_held_text_is_released_at_the_end(tok: Tokenizer) -> None:
    d = Detokenizer(tok, stop=["ab!"])
    assert [d.push(i) for i in tok.encode("xab", add_special_tokens=False).ids] == ["", "x", "", ""]
    assert d.flush() == "ab" and not d.stopped


def test_bytes_the_model_leaves_unfinished_come_out_as_replacement_at_the_end(tok: Tokenizer) -> None:
    e3, x81 = tok.token_to_id("<0xE3>"), tok.token_to_id("<0x81>")
    d = Detokenizer(tok)
    assert [d.push(i) for i in [tok.token_to_id("a"), e3, x81]] == ["a", "", ""]
    rest = d.flush()
    assert rest == tok.decode([e3, x81]) and rest.startswith(FFFD)


def test_prompt_context_keeps_the_first_tokens_space(tiny_model_dir) -> None:
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    prompt = tok.encode("the", add_special_tokens=False).ids
    out = [tok.token_to_id("▁the")] * 2
    alone, with_context = Detokenizer(tok), Detokenizer(tok, context=prompt[-4:])
    assert "".join(alone.push(i) for i in out) + alone.flush() == "the the"
    assert "".join(with_context.push(i) for i in out) + with_context.flush() == " the the"
    assert with_context.generated == out
