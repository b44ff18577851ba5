"""Metrics against the reference implementations, on fixed (prediction, gold) fixtures.

The char_f1 values were computed once with llm-jp-eval's own code path, `fuzz.token_sort_ratio(
normalize(pred).strip(), normalize(gold)) / 100` with fuzzywuzzy 0.18.0 and python-Levenshtein 0.27.5
(the pair llm-jp-eval pins), and are kept here as golden values: neither package is a kiban
dependency (fuzzywuzzy is GPL-2.0). set_f1's were checked against a transcription of llm-jp-eval's.
"""

from __future__ import annotations

import doctest
import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiban.evaluate import metrics
from kiban.evaluate.metrics import (
    acc,
    acc_norm,
    bits_per_byte,
    bits_per_char,
    bits_per_unit_stderr,
    char_f1,
    exact_match,
    mean_stderr,
    normalize,
    set_f1,
    token_sort_ratio,
)


def test_docstring_examples() -> None:
    assert doctest.testmod(metrics).failed == 0


# --- normalization and exact match --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＡＢＣ１２３！", "ABC123!"),  # full-width ASCII
        ("ｶﾀｶﾅ ｶﾞ", "カタカナ ガ"),  # half-width kana, voiced mark composed
        ("①　㍻", "1 平成"),  # circled digit, ideographic space, era ligature
        ("", ""),
    ],
)
def test_normalize_is_nfkc(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("東京", "東京", 1.0),
        ("  東京\n", "東京", 1.0),  # the prediction is stripped
        ("東京", " 東京", 0.0),  # the gold is not (llm-jp-eval)
        ("ＡＢＣ", "ABC", 1.0),  # NFKC on both sides
        ("ﾄｳｷｮｳ", "トウキョウ", 1.0),
        ("東京都", "東京", 0.0),
        ("", "", 1.0),
        ("", "東京", 0.0),
    ],
)
def test_exact_match(pred: str, gold: str, expected: float) -> None:
    assert exact_match(pred, gold) == expected


# --- char_f1: fuzzywuzzy's token_sort_ratio ------------------------------------------------------

LLM_JP_EVAL_CHAR_F1 = [
    ("東京都", "東京", 0.8),
    ("ＡＢＣ１２３", "ABC123", 1.0),
    ("", "", 1.0),
    ("", "東京", 0.0),
    ("東京", "", 0.0),
    ("café au lait", "cafe au lait", 0.96),  # fuzzywuzzy drops U+0080..U+00FF: "caf au lait"
    ("「吾輩は猫である」", "吾輩は猫である", 1.0),  # punctuation is not a token character
    ("The Quick brown", "brown the quick", 1.0),  # lower case, tokens sorted
    ("ｶﾀｶﾅ", "カタカナ", 1.0),
    ("犬_猫", "犬 猫", 0.67),  # "_" is a word character
    ("①②", "12", 1.0),
    ("。、！", "", 1.0),  # both process to "": equal
    ("  回答: 大阪府  ", "大阪府", 0.67),
    ("東京タワー", "東京スカイツリー", 0.46),
    ("徳川家康は江戸幕府を開いた。", "江戸幕府を開いたのは徳川家康である。", 0.53),
    ("abcd", "abce", 0.75),
    ("ab", "abcdef", 0.5),
]


@pytest.mark.parametrize(("pred", "gold", "expected"), LLM_JP_EVAL_CHAR_F1)
def test_char_f1_equals_llm_jp_eval(pred: str, gold: str, expected: float) -> None:
    assert char_f1(pred, gold) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("bbbbaaaabb", "bcaaaa", 62),  # 62.5: Python's round goes to the even neighbour
        ("bbaababaaa", "cbbccb", 38),  # 37.5
        ("abc", "abd", 67),
        ("abcdefg", "a", 25),
    ],
)
def test_token_sort_ratio_rounds_half_to_even_like_fuzzywuzzy(a: str, b: str, expected: int) -> None:
    assert token_sort_ratio(a, b) == expected


def _lcs_dp(a: str, b: str) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


@given(st.text(alphabet="abc東京ー ", max_size=30), st.text(alphabet="abc東京ー ", max_size=30))
def test_bit_parallel_lcs_equals_dynamic_programming(a: str, b: str) -> None:
    assert metrics._lcs_length(a, b) == _lcs_dp(a, b)


def test_char_f1_on_long_answers_is_fast() -> None:
    a = "日本の首都は東京であり、" * 300
    b = "東京は日本の首都である。" * 300
    assert 0.0 < char_f1(a, b) <= 1.0  # 3,600 characters each: bit-parallel, well under a second


# --- set_f1 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("犬\n猫\n猫", "猫\n犬\n鳥", 0.8),  # predicted lines are a set: P = 2/2, R = 2/3
        ("猫\n猫", "猫\n猫", 2 / 3),  # gold lines are a list: R = 1/2
        (" 東京 \nＯｓａｋａ", "Osaka\n東京\n京都", 0.8),  # lines stripped, NFKC
        ("a\n\nb", "a\nb", 0.8),  # the empty line is a predicted item
        ("", "", 1.0),
        ("", "犬", 0.0),
        ("x", "y", 0.0),
    ],
)
def test_set_f1_equals_llm_jp_eval(pred: str, gold: str, expected: float) -> None:
    assert set_f1(pred, gold) == pytest.approx(expected, abs=1e-15)


# --- multiple choice --------------------------------------------------------------------------


def test_acc_picks_the_first_of_tied_choices_as_np_argmax() -> None:
    assert acc([-3.0, -1.5, -2.0], 1) == 1.0
    assert acc([-1.5, -3.0, -1.5], 2) == 0.0  # tie: index 0 wins
    assert acc([-1.5, -3.0, -1.5], {0, 2}) == 1.0  # several gold choices


def test_acc_norm_divides_by_characters_not_bytes_or_tokens() -> None:
    lls = [-6.0, -4.0]
    choices = ["東京都庁舎", "大阪"]  # 5 and 2 characters (15 and 6 bytes)
    assert acc(lls, 1) == 1.0
    assert acc_norm(lls, choices, 0) == 1.0  # -1.2 per character beats -2.0
    with pytest.raises(ValueError, match="2 log-likelihoods for 3 choices"):
        acc_norm(lls, [*choices, "京都"], 0)
    assert acc_norm([-1.0, -2.0], ["", "a"], 1) == 1.0  # an empty choice never wins


# --- rolling log-likelihood and standard errors -------------------------------------------------


def test_bits_per_byte_and_char_are_one_ratio_over_the_task() -> None:
    lls, texts = [-10.0, -30.0], ["日本", "abc"]  # 6 + 3 bytes, 2 + 3 characters
    assert bits_per_byte(lls, texts) == pytest.approx(40 / math.log(2) / 9)
    assert bits_per_char(lls, texts) == pytest.approx(40 / math.log(2) / 5)
    with pytest.raises(ValueError, match="empty"):
        bits_per_byte([0.0], [""])


def test_mean_stderr_is_lm_evals() -> None:
    xs = [1.0, 0.0, 1.0, 1.0, 0.0]
    assert mean_stderr(xs) == pytest.approx(statistics.stdev(xs) / math.sqrt(len(xs)))
    assert mean_stderr([1.0]) is None


def test_bits_per_unit_stderr_is_the_ratio_delta_method() -> None:
    lls, units = [-10.0, -30.0, -20.0], [6, 9, 9]
    r = sum(lls) / sum(units)
    residual = sum((a - r * b) ** 2 for a, b in zip(lls, units, strict=True))
    expected = math.sqrt(residual / 6) / 8 / math.log(2)
    assert bits_per_unit_stderr(lls, units) == pytest.approx(expected)
    assert bits_per_unit_stderr([-1.0], [3]) is None
    # proportional texts: no spread in the ratio, no error
    assert bits_per_unit_stderr([-2.0, -4.0], [1, 2]) == pytest.approx(0.0)
