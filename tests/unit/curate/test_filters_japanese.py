"""Swallow corpus rules: each crafted document trips exactly the rule named, clean prose passes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiban.config import from_dict
from kiban.curate.filters.japanese import (
    RULES,
    SwallowConfig,
    load_ng_words,
    ng_word_chars,
    ng_word_hits,
    swallow_reason,
)
from kiban.errors import ConfigError

# Three paragraphs of ordinary Japanese prose (written for these tests), 524 characters.
PROSE = """\
私の住んでいる町は、海と山に挟まれた小さな港町です。朝になると漁船が次々に港へ戻ってきて、市場には威勢のいい声が響きます。子どものころは、祖父に連れられてよくその様子を見に行きました。獲れたばかりの魚が氷の上に並べられ、買い付けに来た人たちが真剣な顔で値段を確かめている光景は、今でもはっきりと覚えています。

町の北側には古い神社があり、毎年秋になると祭りが開かれます。祭りの日には通りに屋台が並び、普段は静かな商店街も大勢の人でにぎわいます。神輿を担ぐのは地元の若者たちで、彼らは何週間も前から準備を重ねてきました。最近は町を離れる人が増えたため、担ぎ手を集めるのが難しくなったと聞きますが、それでも伝統を守ろうとする人たちの熱意は変わりません。

一方で、町の暮らしは少しずつ変わりつつあります。駅前には新しい図書館ができ、週末になると家族連れや学生が集まるようになりました。館内には地域の歴史をまとめた資料室もあって、昔の写真や地図を自由に見ることができます。私は時間があるとそこへ行き、祖父が話してくれた昔の港の姿を写真の中に探しています。変わっていくものと変わらないものの両方を大切にしながら、この町で暮らしていきたいと考えています。
"""
PARAGRAPHS = [p for p in PROSE.split("\n") if p]

# Unique sentences made of one repeated bigram: passes every rule before the n-gram rules.
_NOUNS = "春夏秋冬朝昼夜山川海空雲雨風雪花鳥月星森林石砂岩谷池湖島港町村".replace("", " ").split()
REPEATED_BIGRAM = "\n".join(f"{a}{b}は、" + "ああ" * 9 + "。" for a in _NOUNS[:6] for b in _NOUNS[6:12])

# Template (SEO-style) sentences: each unique, but nearly every 5..10-gram occurs twice or more.
_PLACES = ["北海道", "東北地方", "関東地方", "中部地方", "近畿地方", "九州地方"]
_THINGS = ["美しい紅葉", "雄大な山並み", "珍しい野鳥", "古いお寺", "満開の桜"]
TEMPLATE = "\n".join(f"{p}では{t}を見ることができます。" for p in _PLACES for t in _THINGS)


def reason(text: str, **overrides: object) -> str | None:
    rule = swallow_reason(text, SwallowConfig(**overrides))  # type: ignore[arg-type]
    assert rule is None or rule in RULES, f"{rule} is not documented in RULES"
    return rule


def test_clean_prose_passes() -> None:
    assert len(PROSE) >= 400
    assert reason(PROSE) is None


def test_disabled_keeps_everything() -> None:
    assert reason("短い", enabled=False) is None


def test_min_length() -> None:
    assert reason(PARAGRAPHS[0]) == "swallow_min_length"


def test_japanese_fraction() -> None:
    text = "This page is mostly written in English with a little Japanese. " * 8 + PARAGRAPHS[0]
    assert reason(text) == "swallow_japanese_fraction"


def test_min_japanese_chars() -> None:
    text = "今日は天気が良いので、公園まで散歩に行きました。" * 15 + " " * 50  # 360 Japanese of 410
    assert reason(text) == "swallow_min_japanese_chars"


def test_hiragana_fraction() -> None:
    text = "\n".join(
        f"国立大学法人東京工業大学情報理工学院数理計算科学系第{i}研究室" for i in "一二三四五六七八九十" * 2
    )
    assert reason(text) == "swallow_hiragana_fraction"


def test_katakana_fraction() -> None:
    text = (
        "スマートフォンのアプリケーションをダウンロードしてインストールする。\n"
        "デジタルカメラのメモリーカードをフォーマットしてからデータをバックアップ。\n"
    ) * 8
    assert reason(text) == "swallow_katakana_fraction"


def test_dup_paragraph_fraction() -> None:
    text = PROSE + "お問い合わせはこちらのフォームからどうぞ。\n" * 5
    assert reason(text) == "swallow_dup_paragraph_fraction"


def test_dup_paragraph_char_fraction() -> None:
    # 1 of 4 lines is a copy (≤ 30%) but it holds 154 of 673 characters (> 20%).
    text = "\n".join([*PARAGRAPHS, PARAGRAPHS[0]])
    assert reason(text) == "swallow_dup_paragraph_char_fraction"


def test_dup_sentence_fraction() -> None:
    text = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。" * 20
    assert reason(text) == "swallow_dup_sentence_fraction"


def test_dup_sentence_char_fraction() -> None:
    # A long sentence closes each paragraph: lines stay unique, 2 of 22 sentences are copies,
    # but the copies hold more than 20% of the characters.
    tail = "この記事の内容は掲載した時点の情報に基づいており、その後に料金や営業時間などが変更されている場合がありますので、お出かけの前に必ず公式の案内をご確認ください。"
    text = "\n".join(p + tail for p in PARAGRAPHS)
    assert reason(text) == "swallow_dup_sentence_char_fraction"


def test_avg_sentence_length_too_short() -> None:
    words = ["さくら", "もみじ", "すすき", "ききょう", "なでしこ", "ふじ", "あやめ", "つばき", "ゆり", "はぎ"]
    text = "".join(f"{a}と{b}です。" for a in words for b in words if a != b)
    assert reason(text) == "swallow_avg_sentence_length"


def test_avg_sentence_length_too_long() -> None:
    # Sentences of 100–200 characters: no single one is too long, but the mean is above 90.
    text = "\n".join(p.replace("。", "、") + "。" for p in PARAGRAPHS)
    assert reason(text) == "swallow_avg_sentence_length"


def test_max_sentence_length() -> None:
    clauses = [
        "朝早く起きて窓を開けると",
        "冷たい空気が部屋いっぱいに流れ込み",
        "遠くの山々はまだ薄い霧に包まれていて",
        "庭の木々では小鳥たちがにぎやかに鳴き交わしていたので",
        "私はしばらくその様子をぼんやりと眺めながら",
        "温かいお茶をゆっくりと飲み",
        "今日はどこへ出かけようかと考えていたのだが",
        "結局のところ天気予報を確かめてから決めることにして",
        "ひとまず朝ごはんの支度を始めたところ",
        "台所の棚に買い置きのパンが一つも残っていないことに気づき",
        "仕方なく近所のパン屋まで歩いて行くことになった",
    ]
    text = PROSE + "、".join(clauses) + "。\n"
    assert reason(text) == "swallow_max_sentence_length"


def test_ellipsis_fraction() -> None:
    sentences = [s + "。" for p in PARAGRAPHS for s in p.split("。") if s]
    text = "\n".join(s[:-1] + "…" if i % 3 == 0 else s for i, s in enumerate(sentences))
    assert reason(text) == "swallow_ellipsis_fraction"


def test_ellipsis_after_nfkc() -> None:
    # kiban normalizes before filtering: NFKC turns … into "...".
    sentences = [s + "。" for p in PARAGRAPHS for s in p.split("。") if s]
    text = "\n".join(s[:-1] + "..." if i % 3 == 0 else s for i, s in enumerate(sentences))
    assert reason(text) == "swallow_ellipsis_fraction"


def test_nfkc_periods_end_sentences() -> None:
    # Academic style 「，．」 becomes ",." under NFKC; a "." before Japanese text still ends a sentence.
    academic = PROSE.replace("。", ".").replace("、", ",")
    assert reason(academic) is None
    assert reason(PROSE + "円周率は3.14159で、example.comはドメイン名の例として使われます。\n") is None


def test_ng_word_fraction() -> None:
    text = PROSE + "無修正のアダルト動画、出会い系、援助交際、オンラインカジノ、即日融資はこちら。\n"
    assert reason(text) == "swallow_ng_word_fraction"


def test_ng_words_custom_list(tmp_path) -> None:
    path = tmp_path / "ng.txt"
    path.write_text("# our own list\n港町\n祭り  # inline comment\n", encoding="utf-8")
    assert load_ng_words(str(path)) == ("港町", "祭り")
    assert ng_word_hits("港町の祭りと港町", str(path)) == ["港町", "祭り", "港町"]
    assert ng_word_chars(PROSE, str(path)) == 2 + 2 * 2
    assert (
        reason(PROSE, ng_words_path=str(path), max_ng_word_char_fraction=0.001) == "swallow_ng_word_fraction"
    )


def test_starter_ng_list_loads() -> None:
    words = load_ng_words()
    assert 30 <= len(words) <= 100
    assert not ng_word_hits(PROSE)


def test_top_2gram_fraction() -> None:
    assert reason(REPEATED_BIGRAM) == "swallow_top_2gram_fraction"


@pytest.mark.parametrize("n", [2, 3, 4])
def test_top_ngram_fraction_each_n(n: int) -> None:
    only_n = {n: SwallowConfig().max_top_ngram_fraction[n]}
    rule = reason(REPEATED_BIGRAM, max_top_ngram_fraction=only_n, max_dup_ngram_fraction={})
    assert rule == f"swallow_top_{n}gram_fraction"


def test_dup_5gram_fraction() -> None:
    assert reason(TEMPLATE) == "swallow_dup_5gram_fraction"


@pytest.mark.parametrize("n", [5, 6, 7, 8, 9, 10])
def test_dup_ngram_fraction_each_n(n: int) -> None:
    only_n = {n: SwallowConfig().max_dup_ngram_fraction[n]}
    rule = reason(TEMPLATE, max_top_ngram_fraction={}, max_dup_ngram_fraction=only_n)
    assert rule == f"swallow_dup_{n}gram_fraction"


def test_ngram_rules_only_read_the_head() -> None:
    # The repetitive tail lies beyond the cap, so only the clean head is measured.
    text = PROSE + "\n" + REPEATED_BIGRAM
    assert reason(text) == "swallow_top_2gram_fraction"
    assert reason(text, ngram_max_chars=len(PROSE)) is None


def test_every_rule_is_documented() -> None:
    cfg = SwallowConfig()
    names = {f"swallow_top_{n}gram_fraction" for n in cfg.max_top_ngram_fraction}
    names |= {f"swallow_dup_{n}gram_fraction" for n in cfg.max_dup_ngram_fraction}
    assert names <= set(RULES)
    assert all(name.startswith("swallow_") for name in RULES)


def test_config_from_yaml_like_data() -> None:
    cfg = from_dict(SwallowConfig, {"min_chars": 200, "max_top_ngram_fraction": {"2": 0.25}})
    assert cfg.min_chars == 200
    assert cfg.max_top_ngram_fraction == {2: 0.25}


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="min_avg_sentence_chars"):
        from_dict(SwallowConfig, {"min_avg_sentence_chars": 100, "max_avg_sentence_chars": 50})
    with pytest.raises(ConfigError, match="max_dup_ngram_fraction"):
        from_dict(SwallowConfig, {"max_dup_ngram_fraction": {"five": 0.1}})
    with pytest.raises(ConfigError, match="ng_words_path"):
        from_dict(SwallowConfig, {"ng_words_path": "/nonexistent/ng.txt"})


_JA_TEXT = st.lists(
    st.sampled_from(list("あいうアイウ漢字。、！…\n ab.!?ー") + ["・・・", "港町", "無修正"]), max_size=600
).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(_JA_TEXT, st.text(max_size=600)))
def test_any_text_gets_a_documented_verdict(text: str) -> None:
    assert reason(text) in {None, *RULES}
    lenient = {
        "min_chars": 0,
        "min_japanese_chars": 0,
        "min_japanese_fraction": 0.0,
        "min_avg_sentence_chars": 0.0,
    }
    assert reason(text, **lenient) in {None, *RULES}


def test_lone_surrogate_does_not_raise() -> None:
    assert reason(PROSE + "\ud83d") in {None, *RULES}


def test_run_statistics_match_a_plain_count() -> None:
    # the n-gram rules count from the sorted hashes' run starts; check against np.unique
    import numpy as np

    from kiban.curate.filters.japanese import _top_count

    rng = np.random.default_rng(0)
    for _ in range(500):
        h = rng.integers(0, rng.integers(1, 20), rng.integers(2, 60))
        s = np.sort(h)
        new = s[1:] != s[:-1]
        _, counts = np.unique(h, return_counts=True)
        assert _top_count(new) == counts.max()
        assert np.count_nonzero(new) + 1 == len(counts)
