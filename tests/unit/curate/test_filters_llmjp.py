"""llm-jp-corpus rules: each crafted document trips exactly the rule named, clean prose passes."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiban.config import from_dict
from kiban.curate.filters.llmjp import RULES, LlmJpConfig, compression_ratio, llmjp_reason
from kiban.errors import ConfigError

# Ordinary Japanese prose written for these tests (same text as test_filters_japanese.py).
PROSE = """\
私の住んでいる町は、海と山に挟まれた小さな港町です。朝になると漁船が次々に港へ戻ってきて、市場には威勢のいい声が響きます。子どものころは、祖父に連れられてよくその様子を見に行きました。獲れたばかりの魚が氷の上に並べられ、買い付けに来た人たちが真剣な顔で値段を確かめている光景は、今でもはっきりと覚えています。

町の北側には古い神社があり、毎年秋になると祭りが開かれます。祭りの日には通りに屋台が並び、普段は静かな商店街も大勢の人でにぎわいます。神輿を担ぐのは地元の若者たちで、彼らは何週間も前から準備を重ねてきました。最近は町を離れる人が増えたため、担ぎ手を集めるのが難しくなったと聞きますが、それでも伝統を守ろうとする人たちの熱意は変わりません。

一方で、町の暮らしは少しずつ変わりつつあります。駅前には新しい図書館ができ、週末になると家族連れや学生が集まるようになりました。館内には地域の歴史をまとめた資料室もあって、昔の写真や地図を自由に見ることができます。私は時間があるとそこへ行き、祖父が話してくれた昔の港の姿を写真の中に探しています。変わっていくものと変わらないものの両方を大切にしながら、この町で暮らしていきたいと考えています。
"""


def reason(text: str, **overrides: object) -> str | None:
    rule = llmjp_reason(text, LlmJpConfig(**overrides))  # type: ignore[arg-type]
    assert rule is None or rule in RULES, f"{rule} is not documented in RULES"
    return rule


def test_clean_prose_passes() -> None:
    assert reason(PROSE) is None


def test_disabled_keeps_everything() -> None:
    assert reason("no kana", enabled=False) is None


def test_kana_near_start_english() -> None:
    assert reason("This is an English document. " * 20) == "llmjp_kana_near_start"


def test_kana_near_start_kanji_header() -> None:
    # A header of kanji, digits and symbols: the first 50 characters hold no kana.
    header = "2024年1月1日（月）東京都千代田区大手町一丁目　天気予報　気温　降水確率　週間天気　警報注意報　地震情報\n"
    assert len(header) > 50
    assert reason(header + PROSE) == "llmjp_kana_near_start"
    assert reason(header + PROSE, kana_lookup_chars=len(header) + 5) is None


def test_katakana_counts_as_kana() -> None:
    assert reason("コーヒー。" + PROSE) is None


def test_avg_sentence_length_without_kuten() -> None:
    # Sentences ended by line breaks only: HojiChar counts only 。, so this reads as one long run.
    assert reason(PROSE.replace("。", "\n")) == "llmjp_avg_sentence_length"


def test_ng_words_more_than_three_hits() -> None:
    spam = "無修正の動画、出会い系の掲示板、援助交際の募集、オンラインカジノの広告。\n"
    assert reason(PROSE + spam) == "llmjp_ng_words"
    # Three hits are allowed: llm-jp drops only above max_allowed_num=3.
    assert reason(PROSE + "無修正の動画、出会い系の掲示板、援助交際の募集。\n") is None


def test_compression_ratio_too_low() -> None:
    assert compression_ratio("あいう。" * 300) < 0.3
    assert reason("あいう。" * 300) == "llmjp_compression_ratio"


def test_compression_ratio_too_high() -> None:
    rng = random.Random(0)
    noise = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(600))
    text = "あ。" + noise
    assert compression_ratio(text) > 0.7
    assert reason(text, max_avg_sentence_chars=1_000) == "llmjp_compression_ratio"


def test_compression_ratio_of_prose_is_in_band() -> None:
    assert 0.3 <= compression_ratio(PROSE) <= 0.7
    assert compression_ratio("") == 0.0


def test_rules_are_prefixed() -> None:
    assert set(RULES) == {
        "llmjp_kana_near_start",
        "llmjp_avg_sentence_length",
        "llmjp_ng_words",
        "llmjp_compression_ratio",
    }


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="min_compression_ratio"):
        from_dict(LlmJpConfig, {"min_compression_ratio": 0.8, "max_compression_ratio": 0.5})
    with pytest.raises(ConfigError, match="kana_lookup_chars"):
        from_dict(LlmJpConfig, {"kana_lookup_chars": 0})


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=600))
def test_any_text_gets_a_documented_verdict(text: str) -> None:
    assert reason(text) in {None, *RULES}


def test_lone_surrogate_does_not_raise() -> None:
    assert reason(PROSE + "\ud83d") in {None, *RULES}
