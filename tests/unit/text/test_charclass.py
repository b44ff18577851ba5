from __future__ import annotations

import doctest
import gzip
import importlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiban.text import CharCounts, count_classes
from kiban.text.charclass import is_hiragana, is_japanese, is_kanji, is_katakana

charclass_module = importlib.import_module("kiban.text.charclass")


def test_docstring_examples() -> None:
    assert doctest.testmod(charclass_module).failed == 0


@pytest.mark.parametrize("ch", list("ぁあがんゔゖゝゞゟ"))
def test_hiragana(ch: str) -> None:
    assert is_hiragana(ch) and not is_katakana(ch) and not is_kanji(ch) and is_japanese(ch)


@pytest.mark.parametrize("ch", list("ァアガンヴヶヽヾーㇰｦｱｶｰﾞﾟ"))
def test_katakana(ch: str) -> None:
    assert is_katakana(ch) and not is_hiragana(ch) and not is_kanji(ch) and is_japanese(ch)


@pytest.mark.parametrize("ch", list("一漢字龍㐂䶵豈々〆〇𠮷𪚲"))
def test_kanji(ch: str) -> None:
    assert is_kanji(ch) and not is_hiragana(ch) and not is_katakana(ch) and is_japanese(ch)


@pytest.mark.parametrize("ch", list("、。「」『』【】〜・〒｡｢｣､･゛゜"))
def test_japanese_punctuation(ch: str) -> None:
    assert is_japanese(ch) and not (is_hiragana(ch) or is_katakana(ch) or is_kanji(ch))


@pytest.mark.parametrize("ch", list("aZ09!? \n\t\u3000é한가ไ"))
def test_not_japanese(ch: str) -> None:
    assert not is_japanese(ch)


def test_counts_by_class() -> None:
    text = "東京タワーは、高さ333mです。\u3000Tokyo！ｶﾀｶﾅ１２"
    c = count_classes(text)
    assert c.hiragana == sum(map(is_hiragana, text)) == 4
    assert c.katakana == sum(map(is_katakana, text)) == 7  # タワー + ｶﾀｶﾅ
    assert c.kanji == sum(map(is_kanji, text)) == 3
    assert c.japanese == sum(map(is_japanese, text)) == 4 + 7 + 3 + 2  # 、。
    assert c.ascii_letters == 6  # m Tokyo
    assert c.digits == 5  # 333 and full-width １２
    assert c.whitespace == 1  # U+3000
    assert c.punctuation == 3  # 、。！
    assert c.total == len(text) == 29


def test_empty_and_astral() -> None:
    assert count_classes("") == CharCounts(0, 0, 0, 0, 0, 0, 0, 0, 0)
    c = count_classes("𠮷野家🍣")
    assert (c.kanji, c.japanese, c.total) == (3, 3, 4)


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(codec=None), max_size=200))
def test_counts_agree_with_predicates(text: str) -> None:
    c = count_classes(text)
    assert c.hiragana == sum(map(is_hiragana, text))
    assert c.katakana == sum(map(is_katakana, text))
    assert c.kanji == sum(map(is_kanji, text))
    assert c.japanese == sum(map(is_japanese, text))
    assert c.whitespace == sum(ch.isspace() for ch in text)
    assert c.ascii_letters == sum(ch.isascii() and ch.isalpha() for ch in text)
    assert c.total == len(text)


def test_real_japanese_is_mostly_japanese(manpages_ja) -> None:
    text = "".join(gzip.decompress(p.read_bytes()).decode("utf-8", "replace") for p in manpages_ja[:20])
    c = count_classes(text)
    assert c.hiragana > 0.05 * c.total and c.kanji > 0.02 * c.total


def test_speed_10k_chars() -> None:
    text = ("吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。Python 3.11で実装。" * 250)[
        :10_000
    ]
    count_classes(text)
    t0 = time.perf_counter()
    for _ in range(100):
        count_classes(text)
    per_call_ms = (time.perf_counter() - t0) * 10
    assert per_call_ms < 2.0  # ~0.04 ms measured; a per-character Python loop takes ~3 ms
