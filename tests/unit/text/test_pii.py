from __future__ import annotations

import doctest
import importlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kiban.config import from_dict
from kiban.errors import ConfigError
from kiban.text import PiiConfig, PiiMatch, find_pii, redact
from kiban.text.pii import KINDS, corporate_check_digit, luhn_ok, my_number_check_digit

pii_module = importlib.import_module("kiban.text.pii")
FW = str.maketrans("0123456789-", "０１２３４５６７８９－")


def kinds(text: str, cfg: PiiConfig | None = None) -> list[tuple[str, str]]:
    return [(m.kind, m.text) for m in find_pii(text, cfg)]


def test_docstring_examples() -> None:
    assert doctest.testmod(pii_module).failed == 0


# --- check digits against published examples ------------------------------------------------------


def test_my_number_check_digit() -> None:
    assert my_number_check_digit("12345678901") == 8  # 123456789018, the example used in 総務省 material
    assert my_number_check_digit("00000000000") == 0


def test_corporate_check_digit() -> None:
    assert corporate_check_digit("000012050002") == 7  # 国税庁 7000012050002
    assert corporate_check_digit("123456789012") == 7  # worked example 7123456789012


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005") and luhn_ok("3530111333300000")
    assert not luhn_ok("4111111111111121")


# --- positives, kind by kind ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("連絡はtaro.yamada@example.co.jpまで", "taro.yamada@example.co.jp"),
        ("Mail: a_b+tag@sub.example.com.", "a_b+tag@sub.example.com"),
        ("「hanako-1984@mail.example.jp」", "hanako-1984@mail.example.jp"),
    ],
)
def test_email(text: str, found: str) -> None:
    assert kinds(text) == [("email", found)]


@pytest.mark.parametrize(
    "phone",
    [
        "03-1234-5678",  # 2-4-4 Tokyo
        "045-123-4567",  # 3-3-4
        "0467-12-3456",  # 4-2-4
        "04992-1-2345",  # 5-1-4
        "0980-12-3456",  # Okinawa, 0 in the third digit of a 4-digit area code
        "0312345678",
        "090-1234-5678",
        "080-1234-5678",
        "070-1234-5678",
        "060-1234-5678",
        "050-1234-5678",
        "09012345678",
        "0120-123-456",
        "0120-12-3456",
        "0800-123-4567",
        "0570-123-456",
        "+81-90-1234-5678",
        "+81 3 1234 5678",
        "+81312345678",
        "＋８１ ９０ １２３４ ５６７８",
        "０９０－１２３４－５６７８",
        "０３（１２３４）５６７８",
        "03(1234)5678",
        "(03)1234-5678",
        "（03）1234-5678",
        "090‐1234‐5678",  # U+2010
        "090‑1234‑5678",  # U+2011
        "090–1234–5678",  # en dash
        "090—1234—5678",  # em dash
        "090ー1234ー5678",  # katakana prolonged sound mark used as a hyphen
        "090―1234―5678",  # horizontal bar
        "090 1234 5678",
        "090\u30001234\u30005678",
        "03 - 1234 - 5678",
        "03.1234.5678",
        "+81 (0)3 1234 5678",
    ],
)
def test_phone(phone: str) -> None:
    for text in (
        phone,
        f"電話：{phone}、",
        f"TEL.{phone}",
        f"TEL{phone}",
        f"Fax:{phone}",
        f"お問い合わせは{phone}まで",
    ):
        assert kinds(text) == [("phone", phone)], text


@pytest.mark.parametrize(
    "text",
    [
        "〒100-0001 東京都千代田区",
        "〒 100-0001",
        "郵便番号：100-0001",
        "郵便番号は1000001",
        "〒１００－０００１",
    ],
)
def test_postal_code(text: str) -> None:
    assert [k for k, _ in kinds(text)] == ["postal_code"]


@pytest.mark.parametrize(
    "text",
    [
        "マイナンバー：123456789018",
        "個人番号 1234 5678 9018",
        "My Number: 1234-5678-9018",
        "番号は１２３４５６７８９０１８です",
        "1234 5678 9018",  # no context, but the 4-4-4 card layout
        "1234-5678-9018",
        "123456789018（マイナンバー）",  # context after
    ],
)
def test_my_number(text: str) -> None:
    assert [k for k, _ in kinds(text)] == ["my_number"]


@pytest.mark.parametrize(
    "text", ["カード番号 4111 1111 1111 1111 有効期限 12/28", "4111-1111-1111-1111", "4111111111111111"]
)
def test_credit_card_visa(text: str) -> None:
    assert [k for k, _ in kinds(text)] == ["credit_card"]


@pytest.mark.parametrize(
    "number",
    [
        "5555555555554444",  # Mastercard 51-55
        "2223003122003222",  # Mastercard 2-series
        "378282246310005",  # Amex 15
        "3782 822463 10005",  # Amex 4-6-5
        "3530111333300000",  # JCB
        "30569309025904",  # Diners 14
        "6011111111111117",  # Discover
        "4222222222222",  # Visa 13
    ],
)
def test_credit_card_issuers(number: str) -> None:
    assert kinds(f"決済：{number}。") == [("credit_card", number)]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("口座番号 1234567", "1234567"),
        ("普通預金 口座1234567", "1234567"),
        ("当座 765-1234567", "765-1234567"),
        ("Account No. 7654321", "7654321"),
    ],
)
def test_bank_account(text: str, found: str) -> None:
    assert kinds(text) == [("bank_account", found)]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("接続元 192.168.10.23 から", "192.168.10.23"),
        ("サーバー203.0.113.5に", "203.0.113.5"),
        ("ssh dev 10.1.2.3", "10.1.2.3"),  # a word ending in v is no "v" version prefix
        ("IPv6 2001:db8:85a3::8a2e:370:7334 です", "2001:db8:85a3::8a2e:370:7334"),
        ("2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:0db8:0000:0000:0000:ff00:0042:8329"),
        ("fe80::1ff:fe23:4567:890a%eth0", "fe80::1ff:fe23:4567:890a"),
        ("::ffff:192.0.2.128", "::ffff:192.0.2.128"),
    ],
)
def test_ip_address(text: str, found: str) -> None:
    assert kinds(text) == [("ip_address", found)]


def test_corporate_number_is_tagged_not_redacted() -> None:
    text = "株式会社例示（法人番号 7000012050002）"
    r = redact(text)
    assert r.text == text and r.counts == {} and r.tagged == {"corporate_number": 1}
    r = redact(text, PiiConfig(corporate_number="redact"))
    assert r.text == "株式会社例示（法人番号 <PII:corporate_number>）" and r.counts == {"corporate_number": 1}
    assert find_pii(text, PiiConfig(corporate_number="ignore")) == []


def test_corporate_number_without_context() -> None:
    assert kinds("4011001098993") == [("corporate_number", "4011001098993")]
    # also a valid EAN-13 (a JAN code): only with the word 法人番号
    assert kinds("4901234567894") == []


def test_mixed_document() -> None:
    text = (
        "山田太郎（taro@example.jp、090-1234-5678）\n"
        "〒150-0001 東京都渋谷区。マイナンバー 123456789018、カード 4111 1111 1111 1111。\n"
        "振込先：普通 1234567。ログ 203.0.113.5 / 2001:db8::1。version 2.4.6.8, 2024-01-15, 1,234,567円。"
    )
    assert [k for k, _ in kinds(text)] == [
        "email",
        "phone",
        "postal_code",
        "my_number",
        "credit_card",
        "bank_account",
        "ip_address",
        "ip_address",
    ]
    r = redact(text)
    assert r.counts == {
        "email": 1,
        "phone": 1,
        "postal_code": 1,
        "my_number": 1,
        "credit_card": 1,
        "bank_account": 1,
        "ip_address": 2,
    }
    assert "<PII:phone>" in r.text and "version 2.4.6.8, 2024-01-15, 1,234,567円" in r.text


def test_matches_are_sorted_non_overlapping_and_exact() -> None:
    text = "03-1234-5678 090-1234-5678 taro@example.jp 4111 1111 1111 1111 203.0.113.5"
    ms = find_pii(text)
    assert [m.kind for m in ms] == ["phone", "phone", "email", "credit_card", "ip_address"]
    for a, b in zip(ms, ms[1:], strict=False):
        assert a.end <= b.start
    assert all(text[m.start : m.end] == m.text for m in ms)
    assert isinstance(ms[0], PiiMatch)


# --- look-alikes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-15",
        "2024/01/15 12:30:45",
        "令和6年1月15日",
        "2024年01月15日",
        "12:30",
        "v1.2.3",
        "Python 3.11.7",
        "version 2.4.6.8",
        "ver.10.0.0.1",
        "v1.2.3.4",
        "ISBN 978-4-00-000000-2",
        "ISBN978-4-10-109205-8",
        "ISBN: 4-00-000000-0",
        "9784101092058",  # a bare ISBN-13 (valid EAN-13)
        "1,234,567円",
        "12345678円",
        "￥1,234,567",
        "預金残高1234567円",
        "100-0001",  # a postal code shape without 〒
        "1234567",  # 7 digits without a bank context
        "03-1234-567",  # too short for a phone
        "090-1234-56789",  # too long
        "090-123-45678",  # wrong grouping for a mobile
        "0012-345-6789",  # 00 is the international prefix
        "123456789012",  # 12 digits without context or 4-4-4 layout (valid check digit or not)
        "マイナンバー：123456789013",  # wrong check digit
        "1234 5678 9013",
        "カード番号 4093 1677 6576 3390",  # a card failing Luhn; 1677 6576 3390 passes My Number's check
        "電話番号 123456789018",  # 番号 of another kind of number is no My Number context
        "4111 1111 1111 1112",  # Luhn fails
        "1234 5678 9012 3452",  # Luhn-valid, no issuer starts with 1
        "法人番号 1000012050002",  # wrong check digit
        "ABC-03-1234-5678",  # inside a product code
        "SKU09012345678X",
        "0.0312345678",  # a decimal
        "2024.01.15",
        "3.14159265358979",
        "255.255.255.0",  # a netmask
        "127.0.0.1",
        "999.1.1.1",
        "1.2.3.4.5",
        "00:1A:2B:3C:4D:5E",  # a MAC address
        "std::vector<int> a::b",
        "電話番号は未定です",
        "user at example dot com",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert kinds(text) == [], text
    assert redact(f"本文{text}です。").counts == {}


# --- configuration --------------------------------------------------------------------------------


def test_disabled_and_selected_kinds() -> None:
    text = "taro@example.jp 090-1234-5678"
    assert find_pii(text, PiiConfig(enabled=False)) == []
    assert kinds(text, PiiConfig(kinds=["phone"])) == [("phone", "090-1234-5678")]
    assert redact(text, PiiConfig(placeholder="[{kind}]")).text == "[email] [phone]"
    assert redact(text, PiiConfig(placeholder="■")).text == "■ ■"


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="pii.kinds: unknown kind 'ssn'"):
        from_dict(PiiConfig, {"kinds": ["phone", "ssn"]}, where="curate.yaml")
    with pytest.raises(ConfigError, match="corporate_number"):
        from_dict(PiiConfig, {"corporate_number": "drop"}, where="curate.yaml")
    with pytest.raises(ConfigError, match="pii.placeholder"):
        from_dict(PiiConfig, {"placeholder": "<{name}>"}, where="curate.yaml")
    assert PiiConfig().kinds == list(KINDS)


# --- properties -----------------------------------------------------------------------------------

filler = st.text(alphabet="あいうえおかきくけこさしすせそ漢字東京、。「」 \n", max_size=30)
digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


@st.composite
def my_numbers(draw: st.DrawFn) -> str:
    base = draw(st.text(alphabet="0123456789", min_size=11, max_size=11))
    d = base + str(my_number_check_digit(base))
    return draw(
        st.sampled_from(
            [f"マイナンバー {d}", f"{d[:4]} {d[4:8]} {d[8:]}", f"個人番号：{d[:4]}-{d[4:8]}-{d[8:]}"]
        )
    )


@st.composite
def phones(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["mobile", "tokyo", "area3", "free"]))
    n = lambda k: draw(st.text(alphabet="0123456789", min_size=k, max_size=k))  # noqa: E731
    if kind == "mobile":
        p = f"0{draw(st.sampled_from('56789'))}0-{draw(st.sampled_from('123456789'))}{n(3)}-{n(4)}"
    elif kind == "tokyo":
        p = f"03-{draw(st.sampled_from('23456789'))}{n(3)}-{n(4)}"
    elif kind == "area3":
        p = f"0{draw(st.sampled_from('123456789'))}{draw(st.sampled_from('123456789'))}-{n(3)}-{n(4)}"
    else:
        p = f"0120-{n(3)}-{n(3)}"
    return draw(st.sampled_from([p, p.translate(FW), p.replace("-", " "), p.replace("-", "")]))


emails = st.from_regex(r"[a-z][a-z0-9._]{0,10}[a-z0-9]@[a-z]{2,10}\.(com|jp|co\.jp|org)", fullmatch=True)


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["4", "51", "55", "2221", "3528", "6011", "65"]))
    body = prefix + draw(st.text(alphabet="0123456789", min_size=15 - len(prefix), max_size=15 - len(prefix)))
    d = next(body + c for c in "0123456789" if luhn_ok(body + c))
    return draw(
        st.sampled_from(
            [
                d,
                " ".join(d[i : i + 4] for i in range(0, 16, 4)),
                "-".join(d[i : i + 4] for i in range(0, 16, 4)),
            ]
        )
    )


def _digits_of(s: str) -> str:
    return "".join(c for c in s.translate(str.maketrans("０１２３４５６７８９", "0123456789")) if c.isdigit())


@settings(max_examples=300, deadline=None)
@given(filler, st.one_of(phones(), emails, my_numbers(), cards()), filler)
def test_redaction_leaves_no_valid_pii(before: str, pii: str, after: str) -> None:
    r = redact(f"{before} {pii} {after}")
    assert sum(r.counts.values()) == 1, (pii, r)
    if "@" in pii:
        assert pii not in r.text
    else:
        assert _digits_of(pii)[-10:] not in _digits_of(r.text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(filler, phones(), emails, my_numbers(), cards(), digits), max_size=8))
def test_redaction_is_idempotent(parts: list[str]) -> None:
    once = redact(" ".join(parts))
    twice = redact(once.text)
    assert twice.text == once.text and twice.counts == {}


@st.composite
def decoys(draw: st.DrawFn) -> str:
    y, m, d = draw(st.integers(1900, 2099)), draw(st.integers(1, 12)), draw(st.integers(1, 28))
    v = draw(st.lists(st.integers(0, 99), min_size=3, max_size=3))
    isbn12 = "9784" + draw(st.text(alphabet="0123456789", min_size=8, max_size=8))
    isbn = isbn12 + str((10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(isbn12)) % 10) % 10)
    base11 = draw(st.text(alphabet="0123456789", min_size=11, max_size=11))
    bad_my = base11 + str((my_number_check_digit(base11) + draw(st.integers(1, 9))) % 10)
    body15 = "4" + draw(st.text(alphabet="0123456789", min_size=14, max_size=14))
    bad_card = next(body15 + c for c in "0123456789" if not luhn_ok(body15 + c))
    base12 = draw(st.text(alphabet="0123456789", min_size=12, max_size=12))
    bad_corp = str(corporate_check_digit(base12) % 9 + 1) + base12
    assume(corporate_check_digit(base12) != int(bad_corp[0]))
    amount = draw(st.integers(1000, 10**9))
    return draw(
        st.sampled_from(
            [
                f"{y}-{m:02d}-{d:02d}",
                f"{y}/{m}/{d}",
                f"令和{draw(st.integers(1, 30))}年{m}月{d}日",
                f"{y}年{m}月{d}日 {m:02d}:{d:02d}",
                f"v{v[0]}.{v[1]}.{v[2]}",
                f"version {v[0]}.{v[1]}.{v[2]}.{m}",
                f"ISBN {isbn[:3]}-{isbn[3]}-{isbn[4:6]}-{isbn[6:12]}-{isbn[12]}",
                f"ISBN{isbn}",
                f"マイナンバー {bad_my}",
                f"{bad_my[:4]} {bad_my[4:8]} {bad_my[8:]}",
                f"カード {bad_card[:4]}-{bad_card[4:8]}-{bad_card[8:12]}-{bad_card[12:]}",
                f"法人番号 {bad_corp}",
                f"{amount:,}円",
            ]
        )
    )


@settings(max_examples=500, deadline=None)
@given(filler, decoys(), filler)
def test_decoys_are_never_redacted(before: str, decoy: str, after: str) -> None:
    text = f"{before} {decoy} {after}"
    assert find_pii(text) == [], decoy
