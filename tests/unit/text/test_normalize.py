from __future__ import annotations

import doctest
import gzip
import importlib
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiban.text import normalize, normalize_for_hash

# `kiban.text.normalize` the attribute is the function (re-exported); the module is this one.
normalize_module = importlib.import_module("kiban.text.normalize")

# Characters where Japanese text and NFKC interact: voiced marks spacing/combining/half-width,
# tildes, ideographic space, line breaks, controls, zero-width, full-width forms, case oddities.
TRICKY = list(
    "かがはぱカガｶｻﾞﾟ゛゜\u3099\u309aあ～〜~\u3000\u00a0\r\n\t \x00\x1f\x85\u2028\u200b\u200d\ufeff\u00ad"
    "ＡＺａ１９！？ｰー①㍻㌔İΣσςß\u0301é\u0338<=>「」、。・"
)
texts = st.text(st.one_of(st.characters(codec=None), st.sampled_from(TRICKY)), max_size=80)


def test_docstring_examples() -> None:
    assert doctest.testmod(normalize_module).failed == 0


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("ＡＢＣ１２３！", "ABC123!"),  # full-width ASCII -> half-width
        ("ｶﾀｶﾅ", "カタカナ"),  # half-width katakana -> full-width
        ("ｶﾞｷﾞﾊﾟ", "ガギパ"),  # with dakuten composed
        ("が", "が"),
        ("か\u3099", "が"),  # decomposed stays composed
        ("か゛", "が"),  # spacing dakuten after a kana composes
        ("は゜", "ぱ"),
        ("゛と゜", "゛と゜"),  # a lone spacing mark stays spacing (NFKC alone gives " ゙")
        ("「東京」、大阪。・", "「東京」、大阪。・"),  # Japanese punctuation kept full-width
        ("｢東京｣､大阪｡･", "「東京」、大阪。・"),  # half-width punctuation widened
        ("1995〜2001年", "1995〜2001年"),  # WAVE DASH kept
        ("1995～2001年", "1995〜2001年"),  # FULLWIDTH TILDE -> WAVE DASH, not '~'
        ("a~b", "a~b"),  # ASCII tilde untouched
        ("東京\u3000大阪", "東京 大阪"),  # ideographic space -> space (documented choice)
        ("a\u00a0b", "a b"),  # NBSP -> space
        ("ゼ\u200bロ\u200c幅\u200d\ufeff", "ゼロ幅"),
        ("a\x00b\x07c\x7fd\x9fe", "abcde"),  # controls removed
        ("a\tb", "a\tb"),  # tab kept
        ("一\r\n二\r三", "一\n二\n三"),
        ("行末   \n次\t \n", "行末\n次\n"),  # trailing whitespace stripped
        ("a\n\n\n\n\n\nb", "a\n\n\nb"),  # 5 blank lines -> 2
        ("a\n\n\nb", "a\n\n\nb"),  # 2 blank lines kept
        ("a \n \n \n \n b", "a\n\n\n b"),  # whitespace-only lines count as blank
        ("①㍻", "1平成"),  # compatibility characters spelled out (plain NFKC)
    ],
)
def test_normalize(raw: str, want: str) -> None:
    assert normalize(raw) == want


def test_never_splits_dakuten() -> None:
    voiced = "がぎぐげござじずぜぞだぢづでどばびぶべぼぱぴぷぺぽガギグゲゴザジズゼゾダヂヅデドバビブベボパピプペポヴ"
    out = normalize(voiced + "ｶﾞｷﾞｸﾞｹﾞｺﾞﾊﾟﾋﾟﾌﾟﾍﾟﾎﾟｳﾞ")
    assert "\u3099" not in out and "\u309a" not in out and "゛" not in out
    assert out == unicodedata.normalize("NFC", out)


@settings(max_examples=1500, deadline=None)
@given(texts)
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=1500, deadline=None)
@given(texts)
def test_normalize_output_is_clean(text: str) -> None:
    out = normalize(text)
    assert "\r" not in out and "\uff5e" not in out and "\u200b" not in out and "\ufeff" not in out
    assert not any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in out)
    assert "\n\n\n\n" not in out
    assert all(line == line.rstrip() for line in out.split("\n"))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Hello, World!", "hello world"),
        ("「東京」は晴れ。", "東京は晴れ"),
        ("2024年1月15日更新", "1999年12月31日更新"),  # numbers and dates differ only
        ("残り3個", "残り120個"),
        ("ＡＢＣ　１２３", "abc 999"),
        ("価格：1,234円", "価格 9999円"),
        ("東京・大阪〜名古屋", "東京大阪名古屋"),
    ],
)
def test_hash_key_merges(a: str, b: str) -> None:
    assert normalize_for_hash(a) == normalize_for_hash(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("かがく", "かかく"),  # dakuten carries meaning
        ("ハート", "ハト"),  # the prolonged sound mark is a letter
        ("東京", "京東"),
        ("abc", "abd"),
        ("ぱん", "はん"),
    ],
)
def test_hash_key_keeps_letters(a: str, b: str) -> None:
    assert normalize_for_hash(a) != normalize_for_hash(b)


def test_hash_key_shape() -> None:
    assert normalize_for_hash("「東京」は　2024年１月15日、晴れ。Ｏｋ！") == "東京は0年0月0日晴れok"
    assert normalize_for_hash("1,234,567円") == "0円"


@settings(max_examples=1500, deadline=None)
@given(texts)
def test_normalize_for_hash_is_idempotent(text: str) -> None:
    once = normalize_for_hash(text)
    assert normalize_for_hash(once) == once
    assert not any(c.isspace() for c in once)


def test_idempotent_on_real_japanese(manpages_ja) -> None:
    for path in manpages_ja[:40]:
        text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        once = normalize(text)
        assert normalize(once) == once, path
        assert normalize_for_hash(normalize_for_hash(text)) == normalize_for_hash(text), path
