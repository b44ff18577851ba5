"""Find and redact personal data in Japanese and English text.

One compiled regex finds every candidate in a single pass (e-mail addresses, IPv6, IPv4, and
"number tokens": digit groups joined by hyphens, spaces, parentheses or dots, in ASCII or full-width
digits); each candidate is then validated by its kind's rule, most of them check digits or
context words. What passes becomes a `PiiMatch`; `redact` replaces it by a typed placeholder.
The rules, their sources and their measured precision and recall are in docs/pii.md.

    kind            rule
    email           local@domain.tld
    phone           Japanese numbering plan shapes, 10 or 11 digits from 0, or +81; TEL03-... too
    postal_code     NNN-NNNN right after 〒 or 郵便番号 (a bare NNN-NNNN is not PII)
    my_number       12 digits, valid check digit, and context words or the 4-4-4 grouping
    corporate_number 13 digits, valid check digit (public data: tagged, not redacted, by default)
    credit_card     13-19 digits, Luhn-valid, known issuer prefix and length
    bank_account    7 digits (or branch 3 + 7) after 口座番号, 普通, 当座, 預金, account no.
    ip_address      IPv4 (not after "version"/"v", not loopback or a netmask), IPv6 (not a time)

Look-alikes left alone: dates, times, versions, ISBNs, amounts (1,234,567円), numbers glued to
letters or decimal points (product codes, decimals), and numbers failing their check digit.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "KINDS",
    "PiiConfig",
    "PiiMatch",
    "Redaction",
    "corporate_check_digit",
    "find_pii",
    "luhn_ok",
    "my_number_check_digit",
    "redact",
]

KINDS = ("email", "phone", "postal_code", "my_number", "credit_card", "bank_account", "ip_address")


@dataclass
class PiiConfig:
    """What `redact` looks for and what it writes instead."""

    enabled: bool = True
    """Redact at all; off leaves every document's text untouched."""
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    """Kinds to find and redact: email, phone, postal_code, my_number, credit_card, bank_account,
    ip_address."""
    corporate_number: Literal["tag", "redact", "ignore"] = "tag"
    """法人番号 are public (国税庁 法人番号公表サイト): `tag` counts them in `Redaction.tagged` and
    keeps them, `redact` replaces them like personal data, `ignore` does neither."""
    placeholder: str = "<PII:{kind}>"
    """What replaces each match; `{kind}` becomes the kind's name."""

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"pii.kinds: unknown kind {unknown[0]!r} (known: {', '.join(KINDS)})")
        if self.corporate_number not in ("tag", "redact", "ignore"):
            raise ValueError(
                f"pii.corporate_number must be tag, redact or ignore, got {self.corporate_number!r}"
            )
        try:
            self.placeholder.format(kind="email")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"pii.placeholder: only {{kind}} may be substituted, got {self.placeholder!r}"
            ) from e


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One piece of personal data: its kind and where it is (`text[start:end] == self.text`)."""

    kind: str
    start: int
    end: int
    text: str


@dataclass(slots=True)
class Redaction:
    """The redacted text, how many matches of each kind were replaced, and how many were only
    tagged (left in the text, e.g. corporate numbers)."""

    text: str
    counts: dict[str, int]
    tagged: dict[str, int]


# --- check digits ----------------------------------------------------------------------------------


def my_number_check_digit(base11: str) -> int:
    """Check digit of a 個人番号 (My Number) from its first 11 digits.

    総務省令第85号 (平成26年) 第5条「検査用数字を算出する算式」: with P_n the n-th digit counted from
    the least significant of the 11, Q_n = n+1 for 1 ≤ n ≤ 6 and n-5 for 7 ≤ n ≤ 11,
    r = Σ P_n·Q_n mod 11, the check digit is 0 if r ≤ 1, else 11 - r.

    >>> my_number_check_digit("12345678901")
    8
    """
    total = sum(int(p) * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(reversed(base11), start=1))
    r = total % 11
    return 0 if r <= 1 else 11 - r


def corporate_check_digit(base12: str) -> int:
    """Check digit (the first of 13 digits) of a 法人番号 from the 12 digits after it.

    法人番号の指定等に関する省令 (平成26年財務省令第70号) 第2条, as published by 国税庁: with P_n the
    n-th digit counted from the least significant of the 12, Q_n = 1 for odd n and 2 for even n,
    the check digit is 9 - (Σ P_n·Q_n mod 9).

    >>> corporate_check_digit("000012050002")  # 国税庁's own number, 7000012050002
    7
    """
    total = sum(int(p) * (1 if n % 2 else 2) for n, p in enumerate(reversed(base12), start=1))
    return 9 - total % 9


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B (Luhn) check over all digits, check digit last.

    >>> luhn_ok("4111111111111111"), luhn_ok("4111111111111112")
    (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        x = int(ch)
        if i % 2:
            x = x * 2 - 9 if x > 4 else x * 2
        total += x
    return total % 10 == 0


def _ean13_ok(d: str) -> bool:
    """GS1 EAN-13 / ISBN-13 check digit (weights 1,3 from the left)."""
    total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(d[:12]))
    return (10 - total % 10) % 10 == int(d[12])


def _card_issuer_ok(d: str) -> bool:
    """Issuer prefix (IIN) and length of the major card brands accepted in Japan."""
    n, p2, p3, p4 = len(d), int(d[:2]), int(d[:3]), int(d[:4])
    return (
        (d[0] == "4" and n in (13, 16, 19))  # Visa
        or ((51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16)  # Mastercard
        or (p2 in (34, 37) and n == 15)  # American Express
        or (3528 <= p4 <= 3589 and 16 <= n <= 19)  # JCB
        or ((p2 in (36, 38) or 300 <= p3 <= 305) and 14 <= n <= 19)  # Diners Club
        or ((p4 == 6011 or p2 == 65 or 644 <= p3 <= 649) and 16 <= n <= 19)  # Discover
    )


# --- the candidate regex ---------------------------------------------------------------------------

_D = "[0-9０-９]"
_HYPHENS = "\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d\u30fc\uff70"  # - ‐ ‑ ‒ – — ― − － ー ｰ
_SP = "[ \u3000\u00a0]"
_SEP = f"(?:{_SP}?(?:[{_HYPHENS}]|[()（）]){_SP}?|{_SP}|[.．])"  # dots: phones only (03.1234.5678)
_EMAIL = (
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
_IPV6 = (
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{1,4}|(?=::))(?::[0-9A-Fa-f]{0,4}){2,7}"
    r"(?:(?:\.[0-9]{1,3}){3})?(?![0-9A-Za-z:]|\.[0-9])"
)
_IPV4 = rf"(?<![0-9A-Za-z.．０-９])(?:{_D}{{1,3}}[.．]){{3}}{_D}{{1,3}}(?!{_D}|[.．]{_D})"
# A number token must not continue a word, a decimal/date/time, or a hyphenated code (ABC-123);
# possessive quantifiers stop the engine from retrying shorter tails of a token.
_NUM = (
    # TEL03-1234-5678 / FAX: the one common case of letters glued to a number that is PII.
    r"(?:(?<=(?i:tel))|(?<=(?i:fax))|(?<=ＴＥＬ)|(?<=ＦＡＸ)|(?<![0-9A-Za-z０-９Ａ-Ｚａ-ｚ_@]))"
    r"(?<![0-9０-９][.,/:．，：／])"
    rf"(?<![0-9A-Za-z０-９][{_HYPHENS}])"
    rf"(?:[+＋]{_SP}?)?[(（]?{_D}++(?:{_SEP}{_D}++)*+"
)
# The leading lookahead lets the engine skip the (mostly kana and kanji) positions no candidate can
# start at with one test instead of four alternatives' lookbehinds: 1.9 -> 1.1 ms per 10k chars.
_CANDIDATES = re.compile(
    rf"(?=[0-9A-Za-z０-９+＋(（:])(?:(?P<email>{_EMAIL})|(?P<ipv6>{_IPV6})|(?P<ipv4>{_IPV4})|(?P<num>{_NUM}))"
)

_DIGIT_RUN = re.compile(_D + "+")
_SPACE = re.compile(_SP)
_TO_ASCII = str.maketrans("０１２３４５６７８９．", "0123456789.")
# What after a number token means its last group belongs to something else: letters (a product
# code), a decimal point or date/time separator followed by a digit, a hyphen then a letter.
_GLUED_TAIL = re.compile(rf"[A-Za-zＡ-Ｚａ-ｚ_@]|[.,/:．，：／]{_D}|[{_HYPHENS}][A-Za-z0-9]")
_CURRENCY_TAIL = re.compile(r"\s?(?:円|万|億|ドル|yen|JPY|USD)", re.IGNORECASE)

# Context words, searched in a window before (and for My Number also after) the number.
_POSTAL_CTX = re.compile(r"(?:〒|郵便番号)[\s:：は]{0,3}$")
_BANK_CTX = re.compile(
    r"(?:口座番号|口座|普通|当座|預金|account\s*(?:no\.?|number|#)|acct\.?)[^\n0-9０-９]{0,12}$",
    re.IGNORECASE,
)
# 番号 alone, but not the 番号 of another kind of number (カード番号 4111 1111 1111 1112 is a card
# number that failed its check, not a My Number); and no other digits between word and number.
_MY_NUMBER_CTX = re.compile(
    r"(?:マイナンバー|個人番号|my\s*number|(?<!カード)(?<!電話|口座|法人|注文|会員|郵便|携帯)番号)[^0-9０-９\n]{0,12}$",
    re.IGNORECASE,
)
_MY_NUMBER_CTX_AFTER = re.compile(r"^[^0-9０-９\n]{0,4}(?:マイナンバー|個人番号|my\s*number)", re.IGNORECASE)
_CORPORATE_CTX = re.compile(r"法人番号|corporate\s*(?:number|no)", re.IGNORECASE)
_ISBN_CTX = re.compile(r"ISBN(?:-1[03])?[\s:：]*$", re.IGNORECASE)
_VERSION_CTX = re.compile(r"(?:(?<![A-Za-z])(?:version|ver\.?|v|rev\.?)|バージョン|版)\s*$", re.IGNORECASE)
_CONTEXT_CHARS = 20
# Digit counts any kind can have: postal/bank 7, bank with branch 10, phones 10-12 (+81), My Number
# 12, corporate number 13, cards 13-19.
_LENGTHS = frozenset({7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19})

_NETMASK_OCTETS = {"0", "128", "192", "224", "240", "248", "252", "254", "255"}


def _ok_ipv4(text: str, start: int, cand: str) -> bool:
    octets = cand.translate(_TO_ASCII).split(".")
    if any(int(o) > 255 or (len(o) > 1 and o[0] == "0") for o in octets):
        return False
    if octets[0] == "255" and set(octets) <= _NETMASK_OCTETS:  # 255.255.255.0: a netmask, no host
        return False
    if octets[0] in ("0", "127"):  # unspecified, loopback: nobody's address
        return False
    return not _VERSION_CTX.search(text, max(0, start - 12), start)


def _ok_ipv6(cand: str) -> bool:
    if not any(c.isdigit() for c in cand):  # "dead::beef", "a::b" in code
        return False
    try:
        addr = ipaddress.IPv6Address(cand)
    except ValueError:  # times 12:30:45, MAC addresses
        return False
    return not (addr.is_loopback or addr.is_unspecified)


def _is_phone(groups: list[str]) -> bool:
    """A Japanese number in national form (leading 0), written in a shape people use.

    総務省 電気通信番号計画: fixed lines are 10 digits, 0 + area code + local exchange (6 digits
    together) + 4-digit subscriber number; 0120/0570/0990 are 10 digits written 4-3-3;
    mobile 060/070/080/090, IP phone 050 and free dial 0800 are 11 digits.
    """
    d = "".join(groups)
    lens = [len(g) for g in groups]
    if len(d) == 10:
        if d[1] == "0" or d[2] == "0":  # 00 international prefix; 0X0 numbers are 11 digits
            return False
        if len(groups) == 1:
            return True
        if len(groups) == 3:
            return (2 <= lens[0] <= 5 and lens[0] + lens[1] == 6 and lens[2] == 4) or (
                d.startswith(("0120", "0570", "0990")) and lens == [4, 3, 3]
            )
        return len(groups) == 2 and 2 <= lens[0] <= 6
    if len(d) == 11:
        if not d.startswith(("050", "060", "070", "080", "090")):  # 080 covers 0800
            return False
        return len(groups) == 1 or lens in ([3, 4, 4], [4, 3, 4], [3, 8], [7, 4])
    return False


def _national(groups: list[str]) -> list[str] | None:
    """+81 3 1234 5678 -> ['03', '1234', '5678']; None if the country code is not Japan's."""
    if not groups[0].startswith("81"):
        return None
    rest = groups[0][2:]
    if rest:
        return ["0" + rest, *groups[1:]]
    if len(groups) > 2 and groups[1] == "0":  # +81 (0)3 1234 5678
        return ["0" + groups[2], *groups[3:]]
    return ["0" + groups[1], *groups[2:]] if len(groups) > 1 else None


def _classify(
    text: str,
    groups: list[str],
    seps: list[str],
    start: int,
    end: int,
    *,
    plus: bool,
    whole: bool,
    on: set[str],
) -> str | None:
    """The kind of the digit groups at text[start:end], or None. `whole`: nothing else of the token."""
    d = "".join(groups)
    n = len(d)
    lens = [len(g) for g in groups]
    before = text[max(0, start - _CONTEXT_CHARS) : start]
    plain = not any(c in s for s in seps for c in "()（）")  # only phones are written with parentheses
    if any(c in s for s in seps for c in ".．"):  # 03.1234.5678; never decimals, dates or versions
        dotted_phone = "phone" in on and len(groups) == 3 and all(s in ".．" for s in seps)
        return "phone" if dotted_phone and d[0] == "0" and _is_phone(groups) else None

    if plus:
        national = _national(groups)
        return "phone" if "phone" in on and national and _is_phone(national) else None
    if "postal_code" in on and n == 7 and lens in ([3, 4], [7]) and _POSTAL_CTX.search(before[-8:]):
        return "postal_code"
    if "bank_account" in on and lens in ([7], [3, 7]) and plain and _BANK_CTX.search(before):
        return "bank_account"
    if "phone" in on and d[0] == "0" and _is_phone(groups):
        return "phone"
    if "my_number" in on and n == 12 and plain and my_number_check_digit(d[:11]) == int(d[11]):
        after = text[end : end + 16]
        if (
            _MY_NUMBER_CTX.search(before)
            or _MY_NUMBER_CTX_AFTER.match(after)
            or (whole and lens == [4, 4, 4])
        ):
            return "my_number"
    corporate = "corporate_number" in on and n == 13 and plain and corporate_check_digit(d[1:]) == int(d[0])
    if corporate and _CORPORATE_CTX.search(before):
        return "corporate_number"
    if "credit_card" in on and 13 <= n <= 19 and plain and (len(groups) == 1 or min(lens) >= 3):
        # 13-digit Visa numbers are no longer issued, and Japanese JAN product codes (45/49 + 11,
        # EAN-13) pass Luhn one time in ten: a 13-digit valid EAN-13 is read as a product code.
        if _card_issuer_ok(d) and luhn_ok(d) and not (n == 13 and _ean13_ok(d)):
            return "credit_card"
    # Without the word 法人番号, a 13-digit number that is also a valid EAN-13 is more likely a JAN
    # product code or an ISBN than a company.
    if corporate and whole and not _ean13_ok(d):
        return "corporate_number"
    return None


def _number_matches(text: str, m: re.Match[str], on: set[str]) -> tuple[list[PiiMatch], int]:
    """The PII in one number token, and where the scan resumes (before a last group that belongs to
    what follows it: "1111 203.0.113.5" gives the IPv4 alternative another try at "203")."""
    s, e = m.span()
    runs = list(_DIGIT_RUN.finditer(text, s, e))
    # Atoms: groups joined by hyphens or parentheses stay together; a bare space may separate two
    # numbers (03 1234 5678 / 4111 1111 1111 1111 use spaces too, so a match may span atoms).
    atoms: list[list[re.Match[str]]] = [[runs[0]]]
    for prev, run in zip(runs, runs[1:], strict=False):
        if text[prev.end() : run.start()].strip():
            atoms[-1].append(run)
        else:
            atoms.append([run])
    resume = e
    if _GLUED_TAIL.match(text, e) or _CURRENCY_TAIL.match(text, e):
        last = atoms.pop()
        if atoms:
            resume = last[0].start()
    # A later atom with dots (1111 203.0.113.5) may be an IPv4 address: rescan from it.
    dotted = None
    for k in range(1, len(atoms)):
        if len(atoms[k]) > 1 and text[atoms[k][0].end()] in ".．":
            dotted = k
            break
    if dotted is not None:
        resume = atoms[dotted][0].start()
        del atoms[dotted:]
    if not atoms or e - s < 7:  # 7 digits is the shortest kind (postal code, bank account)
        return [], resume
    lo = 1 if _ISBN_CTX.search(text, max(0, s - 12), s) else 0
    out: list[PiiMatch] = []
    _scan(text, s, atoms, lo, len(atoms), on, out)
    out.sort(key=lambda x: x.start)
    return out, resume


def _scan(
    text: str, s: int, atoms: list[list[re.Match[str]]], lo: int, hi: int, on: set[str], out: list[PiiMatch]
) -> None:
    """Greedy, longest first, over atoms[lo:hi]; then each stretch left between matches is scanned
    as a token of its own, as it would be once its neighbours are redacted (so redact is idempotent)."""
    atom_digits = [sum(r.end() - r.start() for r in atom) for atom in atoms[lo:hi]]
    found: list[tuple[int, int]] = []
    i = lo
    while i < hi:
        for j in range(min(hi, i + 6), i, -1):  # 6 atoms cover every kind
            if sum(atom_digits[i - lo : j - lo]) not in _LENGTHS:
                continue
            sub = [r for atom in atoms[i:j] for r in atom]
            groups = [r.group().translate(_TO_ASCII) for r in sub]
            start = s if i == 0 else sub[0].start()  # the first atom keeps a leading "+" or "("
            end = sub[-1].end()
            seps = [text[a.end() : b.start()] for a, b in zip(sub, sub[1:], strict=False)]
            whole = i == lo and j == hi
            kind = _classify(text, groups, seps, start, end, plus=text[start] in "+＋", whole=whole, on=on)
            if kind:
                if text[start] in "(（" and not any(c in "）)" for c in text[start:end]):
                    start += 1  # "(4111..." : the parenthesis is not part of the number
                out.append(PiiMatch(kind, start, end, text[start:end]))
                found.append((i, j))
                i = j
                break
        else:
            i += 1
    if found:
        edges = [lo] + [x for f in found for x in f] + [hi]
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if a < b:
                _scan(text, s, atoms, a, b, on, out)


def find_pii(text: str, cfg: PiiConfig | None = None) -> list[PiiMatch]:
    """Every piece of personal data in `text` (and corporate numbers unless ignored), sorted and
    non-overlapping.

    >>> [(m.kind, m.text) for m in find_pii("連絡先：０９０－１２３４－５６７８、taro@example.jp")]
    [('phone', '０９０－１２３４－５６７８'), ('email', 'taro@example.jp')]
    >>> find_pii("2024-01-15に v1.2.3 を公開（ISBN 978-4-00-000000-2）")
    []
    """
    cfg = cfg or PiiConfig()
    if not cfg.enabled:
        return []
    on = set(cfg.kinds)
    if cfg.corporate_number != "ignore":
        on.add("corporate_number")
    out: list[PiiMatch] = []
    pos = 0
    while m := _CANDIDATES.search(text, pos):
        pos = m.end()
        group = m.lastgroup
        if group == "num":
            if pos - m.start() < 7 and _SPACE.search(text, m.start(), pos) is None:
                continue  # the usual short number: too short for any kind, nothing to rescan
            found, pos = _number_matches(text, m, on)
            out.extend(found)
        elif group == "email":
            if "email" in on:
                out.append(PiiMatch("email", m.start(), m.end(), m.group()))
        elif "ip_address" in on and (
            _ok_ipv4(text, m.start(), m.group()) if group == "ipv4" else _ok_ipv6(m.group())
        ):
            out.append(PiiMatch("ip_address", m.start(), m.end(), m.group()))
    return out


def redact(text: str, cfg: PiiConfig | None = None) -> Redaction:
    """Replace personal data by typed placeholders; count what was replaced and what was tagged.

    >>> r = redact("〒100-0001 東京都千代田区。TEL 03-1234-5678（法人番号 7000012050002）")
    >>> r.text
    '〒<PII:postal_code> 東京都千代田区。TEL <PII:phone>（法人番号 7000012050002）'
    >>> r.counts, r.tagged
    ({'postal_code': 1, 'phone': 1}, {'corporate_number': 1})
    """
    cfg = cfg or PiiConfig()
    counts: dict[str, int] = {}
    tagged: dict[str, int] = {}
    parts: list[str] = []
    pos = 0
    for m in find_pii(text, cfg):
        if m.kind == "corporate_number" and cfg.corporate_number == "tag":
            tagged[m.kind] = tagged.get(m.kind, 0) + 1
            continue
        parts += [text[pos : m.start], cfg.placeholder.format(kind=m.kind)]
        pos = m.end
        counts[m.kind] = counts.get(m.kind, 0) + 1
    if not parts:
        return Redaction(text, counts, tagged)
    parts.append(text[pos:])
    return Redaction("".join(parts), counts, tagged)
