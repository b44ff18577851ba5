"""Gopher and C4 rules: each crafted document trips exactly the rule named, clean prose passes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiban.config import from_dict
from kiban.curate.filters.english import (
    C4_RULES,
    GOPHER_RULES,
    RULES,
    C4Config,
    GopherConfig,
    c4_reason,
    gopher_reason,
)
from kiban.errors import ConfigError

# Three paragraphs of ordinary English prose written for these tests, 196 words.
PROSE = """\
The old lighthouse at the end of the harbour has stood for more than a century. It was built after a winter storm wrecked three fishing boats on the rocks, and for decades a keeper and his family lived in the small cottage beside it. Today the light is automatic, but the town still treats the building as a kind of landmark, and visitors walk out along the breakwater to take photographs of it at sunset.

Inside, a volunteer group has opened a modest museum. The rooms are filled with maps, logbooks and tools that were used to maintain the lamp, together with letters written by the keepers to their relatives inland. Reading them, you get a sense of how isolated the work could be, especially during the long weeks when bad weather kept the supply boat away.

The museum is open on weekends from April to October. Admission is free, although donations help to pay for repairs to the roof and the iron railings, which suffer badly from the salt air. If you plan to visit, bring a warm jacket: even in summer, the wind at the top of the tower can be surprisingly cold.
"""
PARAGRAPHS = [p for p in PROSE.split("\n") if p]
SENTENCES = [s.strip() + "." for p in PARAGRAPHS for s in p.split(". ") if s.strip()]

_ADJ = ["red", "blue", "green", "small", "large", "wooden"]
_NOUN = ["chair", "table", "lamp", "shelf", "desk"]
TEMPLATE = "\n".join(
    f"The {a} {n} is available in our online store with free delivery today." for a in _ADJ for n in _NOUN
)


def gopher(text: str, **overrides: object) -> str | None:
    rule = gopher_reason(text, GopherConfig(**overrides))  # type: ignore[arg-type]
    assert rule is None or rule in GOPHER_RULES, f"{rule} is not documented in GOPHER_RULES"
    return rule


def c4(text: str, **overrides: object) -> str | None:
    rule = c4_reason(text, C4Config(**overrides))  # type: ignore[arg-type]
    assert rule is None or rule in C4_RULES, f"{rule} is not documented in C4_RULES"
    return rule


def test_clean_prose_passes_both_families() -> None:
    assert gopher(PROSE) is None
    assert c4(PROSE) is None


def test_disabled_keeps_everything() -> None:
    assert gopher("short", enabled=False) is None
    assert c4("{ lorem ipsum }", enabled=False) is None


# --- Gopher quality rules -------------------------------------------------------------------


def test_gopher_word_count_too_few() -> None:
    assert gopher(PARAGRAPHS[0][:200]) == "gopher_word_count"


def test_gopher_word_count_too_many() -> None:
    assert gopher(PROSE, max_words=100) == "gopher_word_count"


def test_gopher_mean_word_length() -> None:
    assert gopher("a b c d e f g h i j " * 10) == "gopher_mean_word_length"
    assert gopher("Pneumonoultramicroscopicsilicovolcanoconiosis " * 60) == "gopher_mean_word_length"


def test_gopher_symbol_word_ratio_hash() -> None:
    assert gopher(PROSE + " #travel #harbour #sunset" * 10) == "gopher_symbol_word_ratio"


def test_gopher_symbol_word_ratio_ellipsis() -> None:
    text = PROSE.replace(",", "…").replace(" the ", " the... ")  # 31 ellipses in 196 words
    assert gopher(text) == "gopher_symbol_word_ratio"


def test_gopher_bullet_lines() -> None:
    items = ["fresh apples from local farms", "organic pears and plums", "bread baked with whole wheat"]
    text = "\n".join(f"• {item} number {i}" for i in range(10) for item in items)
    assert gopher(text) == "gopher_bullet_lines"


def test_gopher_ellipsis_lines() -> None:
    text = "\n".join(s[:-1] + "..." if i % 2 == 0 else s for i, s in enumerate(SENTENCES))
    assert gopher(text) == "gopher_ellipsis_lines"


def test_gopher_alpha_words() -> None:
    numbers = " ".join(str(1000 + 37 * i) for i in range(60))
    assert gopher(PROSE + "\n" + numbers) == "gopher_alpha_words"


def test_gopher_stop_words() -> None:
    text = " ".join(
        f"{c} {f}" for c in ["ripe", "fresh", "sweet", "crisp"] for f in ["apples", "pears", "plums"] * 5
    )
    assert gopher(text) == "gopher_stop_words"


def test_gopher_stop_words_need_two_different_ones() -> None:
    text = " ".join(f"the {f}" for f in ["apples", "pears", "plums", "grapes", "melons"] * 12)
    assert gopher(text) == "gopher_stop_words"
    assert gopher(text + " and cherries") != "gopher_stop_words"


# --- Gopher repetition rules ----------------------------------------------------------------


def test_gopher_dup_line_fraction() -> None:
    text = "\n".join(SENTENCES + ["Click here to subscribe to our newsletter."] * 10)
    assert gopher(text) == "gopher_dup_line_fraction"


def test_gopher_dup_paragraph_fraction() -> None:
    # 3 of 8 paragraphs are copies of a one-line paragraph; only 3 of 26 lines are copies.
    unique = ["\n".join(SENTENCES[i : i + 4]) for i in range(0, 16, 4)]
    text = "\n\n".join(unique + ["Share this post."] * 4)
    assert gopher(text) == "gopher_dup_paragraph_fraction"


def test_gopher_dup_line_char_fraction() -> None:
    # 1 of 4 lines (and paragraphs) is a copy (≤ 30%), but it holds > 20% of the characters.
    text = "\n\n".join([*PARAGRAPHS, PARAGRAPHS[2]])
    assert gopher(text) == "gopher_dup_line_char_fraction"


def test_gopher_dup_paragraph_char_fraction() -> None:
    # A repeated paragraph repeats its lines too; switch the line rule off to reach this one.
    text = "\n\n".join([*PARAGRAPHS, PARAGRAPHS[2]])
    assert gopher(text, max_dup_line_char_fraction=1.0) == "gopher_dup_paragraph_char_fraction"


def test_gopher_top_2gram_fraction() -> None:
    text = PROSE + "\n" + " ".join(["New York"] * 80)
    assert gopher(text) == "gopher_top_2gram_fraction"


@pytest.mark.parametrize("n", [2, 3, 4])
def test_gopher_top_ngram_fraction_each_n(n: int) -> None:
    only_n = {n: GopherConfig().max_top_ngram_fraction[n]}
    text = PROSE + "\n" + " ".join(["visit New York City"] * 40)
    assert (
        gopher(text, max_top_ngram_fraction=only_n, max_dup_ngram_fraction={})
        == f"gopher_top_{n}gram_fraction"
    )


@pytest.mark.parametrize("n", [5, 6, 7, 8, 9, 10])
def test_gopher_dup_ngram_fraction_each_n(n: int) -> None:
    only_n = {n: GopherConfig().max_dup_ngram_fraction[n]}
    assert (
        gopher(TEMPLATE, max_top_ngram_fraction={}, max_dup_ngram_fraction=only_n)
        == f"gopher_dup_{n}gram_fraction"
    )


def test_gopher_template_spam_is_caught_by_defaults() -> None:
    assert gopher(TEMPLATE) is not None


# --- C4 -------------------------------------------------------------------------------------


def test_c4_lorem_ipsum() -> None:
    assert c4(PROSE + "\nLorem Ipsum dolor sit amet, consectetur adipiscing elit.") == "c4_lorem_ipsum"


def test_c4_curly_bracket() -> None:
    assert c4(PROSE + "\nfunction init() { return 1; }") == "c4_curly_bracket"
    assert c4(PROSE + "\n{", drop_curly_bracket=False) is None


def test_c4_javascript() -> None:
    warning = "Please enable JavaScript in your browser to view this page."
    text = "\n".join([*SENTENCES[:3], *[warning] * 4])
    assert c4(text) == "c4_javascript"
    assert c4(PROSE + "\n" + warning) is None  # one warning line among many is tolerated


def test_c4_policy() -> None:
    notices = [
        "This website uses cookies to improve your experience.",
        "By continuing you agree to our Terms of Use.",
        "Read our Privacy Policy for details.",
        "See our Cookie Policy.",
    ]
    text = "\n".join([*SENTENCES[:3], *notices])
    assert c4(text) == "c4_policy"


def test_c4_too_few_sentences_menu() -> None:
    menu = "\n".join(["Home", "About us", "Products and services", "Contact", "Site map"] * 3)
    assert c4(menu) == "c4_too_few_sentences"


def test_c4_too_few_sentences_short_lines_do_not_count() -> None:
    # Every line ends in a period, but C4 keeps only lines of at least 5 words.
    assert c4("Great view.\nNice food.\nWill return.\nFive stars.") == "c4_too_few_sentences"
    assert c4("Two sentences only here. That is not enough for C4.") == "c4_too_few_sentences"
    assert c4("") == "c4_too_few_sentences"


def test_rule_tables() -> None:
    assert set(RULES) == set(GOPHER_RULES) | set(C4_RULES)
    assert all(k.startswith("gopher_") for k in GOPHER_RULES)
    assert all(k.startswith("c4_") for k in C4_RULES)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="min_words"):
        from_dict(GopherConfig, {"min_words": 500, "max_words": 100})
    with pytest.raises(ConfigError, match="min_mean_word_chars"):
        from_dict(GopherConfig, {"min_mean_word_chars": 12.0})


_EN_TEXT = st.lists(
    st.sampled_from(
        ["the", "and", "of", "cat", "#", "...", "•", "{", "\n", "\n\n", "javascript", "Lorem ipsum", "."]
    ),
    max_size=300,
).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(_EN_TEXT, st.text(max_size=600)))
def test_any_text_gets_a_documented_verdict(text: str) -> None:
    assert gopher(text) in {None, *GOPHER_RULES}
    assert gopher(text, min_words=0) in {None, *GOPHER_RULES}
    assert c4(text) in {None, *C4_RULES}


def test_lone_surrogate_does_not_raise() -> None:
    assert gopher(PROSE + "\ud83d") is None
    assert c4(PROSE + "\ud83d") is None
