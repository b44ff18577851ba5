"""Precision and recall of kiban's PII redactor on a seeded, labelled set of Japanese sentences.

    .venv/bin/python benchmarks/pii_eval.py [--items 2400] [--seed 20240115] [--show-errors 10]

Every item is a Japanese (sometimes English) sentence with planted personal data of one kind, in
the formats people write (hyphens, spaces, parentheses, full-width digits, +81, card groupings),
or a look-alike that must stay (dates, times, versions, ISBNs and JAN codes, amounts, numbers with a
wrong check digit, bare postal-code shapes, product codes, netmasks). A few formats kiban does not
claim to catch is planted on purpose (a Tokyo number split 3-2-4, "034-12-5678", which matches no
area-code shape) so the phone recall stays honest.

A prediction is a true positive when it overlaps a planted span of the same kind. Corporate
numbers count when tagged. The run exits 1 when a check-digit-validated kind (my_number,
credit_card, corporate_number) falls below 0.99 precision or recall.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from kiban.text.pii import KINDS, PiiConfig, corporate_check_digit, find_pii, luhn_ok, my_number_check_digit

GATED = ("my_number", "credit_card", "corporate_number")
FULL_WIDTH = str.maketrans("0123456789-()+", "０１２３４５６７８９－（）＋")
NAMES = ["山田", "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "中村", "小林", "加藤"]
OPENERS = [
    "{n}さんの{what}は{x}です。",
    "{what}：{x}（平日9時〜18時）",
    "詳細は{x}までお願いします。",
    "【{what}】{x}\n2024年3月1日更新",
    "{n}様 {what} {x} 以上、よろしくお願いいたします。",
    "Please contact {x} by Friday.",
    "申込書に{x}と記入してください。",
]


@dataclass
class Item:
    text: str
    gold: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, start, end)


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def nz(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("123456789") for _ in range(n))


def maybe_wide(rng: random.Random, s: str) -> str:
    return s.translate(FULL_WIDTH) if rng.random() < 0.25 else s


# --- planted personal data: (kind, surface form, context words put before it) ---------------------


def gen_email(rng: random.Random) -> tuple[str, str, str]:
    user = rng.choice(["taro", "hanako.sato", "k-suzuki", "info", "yamada_t", "m.ito+news"]) + digits(
        rng, rng.randint(0, 4)
    )
    host = rng.choice(
        ["example.co.jp", "mail.example.jp", "example.com", "univ.example.ac.jp", "example.ne.jp"]
    )
    return "email", f"{user}@{host}", rng.choice(["メール", "E-mail", "連絡先"])


def gen_phone(rng: random.Random) -> tuple[str, str, str]:
    shape = rng.choice(
        ["mobile", "tokyo", "osaka", "area3", "area4", "area5", "ip", "free", "free0800", "intl", "hard"]
    )
    sep = rng.choice(["-", "-", "-", " ", "", "‐", "−", "ー"])
    if shape == "mobile":
        p = [f"0{rng.choice('6789')}0", nz(rng, 1) + digits(rng, 3), digits(rng, 4)]
    elif shape == "tokyo":
        p = ["03", nz(rng, 1) + digits(rng, 3), digits(rng, 4)]
    elif shape == "osaka":
        p = ["06", nz(rng, 1) + digits(rng, 3), digits(rng, 4)]
    elif shape == "area3":
        p = ["0" + nz(rng, 2), nz(rng, 1) + digits(rng, 2), digits(rng, 4)]
    elif shape == "area4":
        p = ["0" + nz(rng, 3), nz(rng, 1) + digits(rng, 1), digits(rng, 4)]
    elif shape == "area5":
        p = ["0" + nz(rng, 4), nz(rng, 1), digits(rng, 4)]
    elif shape == "ip":
        p = ["050", nz(rng, 1) + digits(rng, 3), digits(rng, 4)]
    elif shape == "free":
        p = ["0120", digits(rng, 3), digits(rng, 3)]
    elif shape == "free0800":
        p = ["0800", digits(rng, 3), digits(rng, 4)]
    elif shape == "intl":
        national = [f"{rng.choice('6789')}0", nz(rng, 1) + digits(rng, 3), digits(rng, 4)]
        s = rng.choice(["-", " "])
        return "phone", maybe_wide(rng, "+81" + s + s.join(national)), "TEL"
    else:
        form = rng.choice(["dots", "zero", "odd", "extension"])
        local = f"{nz(rng, 1)}{digits(rng, 3)}"
        if form == "dots":
            return "phone", f"03.{local}.{digits(rng, 4)}", "TEL"
        if form == "zero":
            return "phone", f"+81 (0)3 {local} {digits(rng, 4)}", "Tel"
        if form == "odd":  # not claimed: 4-2-4 split of a 2-digit area code
            return "phone", f"03{local[0]}-{local[1:3]}-{local[3]}{digits(rng, 3)}", "TEL "
        return "phone", f"03{local}{digits(rng, 4)}", "内線"
    if rng.random() < 0.15 and len(p[0]) <= 4:
        s = f"({p[0]}){p[1]}-{p[2]}" if rng.random() < 0.5 else f"{p[0]}({p[1]}){p[2]}"
    else:
        s = sep.join(p)
    return "phone", maybe_wide(rng, s), rng.choice(["電話", "TEL", "携帯", "連絡先", "お問い合わせ"])


def gen_postal(rng: random.Random) -> tuple[str, str, str]:
    code = f"{digits(rng, 3)}-{digits(rng, 4)}" if rng.random() < 0.8 else digits(rng, 7)
    return "postal_code", maybe_wide(rng, code), rng.choice(["〒", "〒 ", "郵便番号：", "郵便番号 "])


def valid_my_number(rng: random.Random) -> str:
    base = digits(rng, 11)
    return base + str(my_number_check_digit(base))


def gen_my_number(rng: random.Random) -> tuple[str, str, str]:
    d = valid_my_number(rng)
    form = rng.choice(["plain", "444", "444-"])
    s = d if form == "plain" else (" " if form == "444" else "-").join([d[:4], d[4:8], d[8:]])
    ctx = (
        rng.choice(["マイナンバー：", "個人番号 ", "My Number: ", "番号は"])
        if form == "plain"
        else rng.choice(["", "マイナンバー "])
    )
    return "my_number", maybe_wide(rng, s), ctx


def valid_corporate(rng: random.Random) -> str:
    base = digits(rng, 12)
    return str(corporate_check_digit(base)) + base


def ean13_ok(d: str) -> bool:
    return (10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(d[:12])) % 10) % 10 == int(d[12])


def gen_corporate(rng: random.Random) -> tuple[str, str, str]:
    d = valid_corporate(rng)
    if rng.random() < 0.6:
        return (
            "corporate_number",
            maybe_wide(rng, d),
            rng.choice(["法人番号 ", "法人番号：", "Corporate Number "]),
        )
    while ean13_ok(d):  # without the word 法人番号 kiban reads a valid EAN-13 as a JAN/ISBN code
        d = valid_corporate(rng)
    return "corporate_number", d, "登録 "


def luhn_complete(body: str) -> str:
    return next(body + c for c in "0123456789" if luhn_ok(body + c))


def gen_card(rng: random.Random) -> tuple[str, str, str]:
    brand = rng.choice(["visa", "mc", "mc2", "amex", "jcb", "diners", "discover"])
    prefix, n = {
        "visa": ("4", 16),
        "mc": (str(rng.randint(51, 55)), 16),
        "mc2": (str(rng.randint(2221, 2720)), 16),
        "amex": (rng.choice(["34", "37"]), 15),
        "jcb": (str(rng.randint(3528, 3589)), 16),
        "diners": (rng.choice(["36", "38", "300", "305"]), 14),
        "discover": (rng.choice(["6011", "65", "644"]), 16),
    }[brand]
    d = luhn_complete(prefix + digits(rng, n - 1 - len(prefix)))
    if n == 16:
        sep = rng.choice(["", " ", "-"])
        s = sep.join(d[i : i + 4] for i in range(0, 16, 4))
    elif n == 15:
        s = rng.choice(["", " "]).join([d[:4], d[4:10], d[10:]])
    else:
        s = d
    return "credit_card", maybe_wide(rng, s), rng.choice(["カード番号 ", "クレジットカード：", "Card: ", ""])


def gen_bank(rng: random.Random) -> tuple[str, str, str]:
    acct = digits(rng, 7)
    s = f"{digits(rng, 3)}-{acct}" if rng.random() < 0.3 else acct
    ctx = rng.choice(
        ["口座番号 ", "口座番号：", "普通 ", "普通預金 ", "当座 ", "Account No. ", "振込先 普通預金 口座"]
    )
    return "bank_account", maybe_wide(rng, s), ctx


def gen_ip(rng: random.Random) -> tuple[str, str, str]:
    if rng.random() < 0.7:
        first = rng.choice([10, 172, 192, 203, 198, 133, 210, 61, 1])
        ip = ".".join([str(first)] + [str(rng.randint(0, 255)) for _ in range(3)])
    else:
        groups = [format(rng.randint(0, 0xFFFF), "x") for _ in range(8)]
        groups[0] = "2001"
        if rng.random() < 0.5:
            ip = ":".join(groups)
        else:
            ip = ":".join(groups[:3]) + "::" + ":".join(groups[6:])
    return "ip_address", ip, rng.choice(["接続元 ", "IP: ", "サーバー", "from "])


GENERATORS = {
    "email": gen_email,
    "phone": gen_phone,
    "postal_code": gen_postal,
    "my_number": gen_my_number,
    "credit_card": gen_card,
    "bank_account": gen_bank,
    "ip_address": gen_ip,
    "corporate_number": gen_corporate,
}


# --- look-alikes that must stay -------------------------------------------------------------------


def gen_decoy(rng: random.Random) -> str:
    y, m, d = rng.randint(1950, 2035), rng.randint(1, 12), rng.randint(1, 28)
    bad_my = (lambda b: b + str((my_number_check_digit(b) + rng.randint(1, 9)) % 10))(digits(rng, 11))
    bad_corp = (lambda b: str(corporate_check_digit(b) % 9 + 1) + b)(digits(rng, 12))
    bad_card = (lambda b: next(b + c for c in "0123456789" if not luhn_ok(b + c)))("4" + digits(rng, 14))
    isbn = (lambda b: b + str((10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(b)) % 10) % 10))(
        "9784" + digits(rng, 8)
    )
    jan = (lambda b: b + str((10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(b)) % 10) % 10))(
        rng.choice(["45", "49"]) + digits(rng, 10)
    )
    choices = [
        f"{y}-{m:02d}-{d:02d}",
        f"{y}/{m:02d}/{d:02d}",
        f"{y}.{m}.{d}",
        f"令和{rng.randint(1, 9)}年{m}月{d}日",
        f"{y}年{m}月{d}日 {rng.randint(0, 23)}:{rng.randint(0, 59):02d}",
        f"{rng.randint(9, 12)}:00〜{rng.randint(17, 21)}:30",
        f"{rng.randint(1950, 2000)}〜{rng.randint(2001, 2030)}年",
        f"v{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
        f"Python {rng.randint(2, 3)}.{rng.randint(0, 13)}.{rng.randint(0, 9)}",
        f"version {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        f"ISBN {isbn[:3]}-{isbn[3]}-{isbn[4:6]}-{isbn[6:12]}-{isbn[12]}",
        f"ISBN{isbn}",
        isbn,
        f"JANコード{jan}",
        jan,
        f"{rng.randint(1000, 99_999_999):,}円",
        f"¥{rng.randint(1000, 9_999_999):,}",
        f"{rng.randint(1_000_000, 9_999_999)}円",
        f"{digits(rng, 3)}-{digits(rng, 4)}",  # postal shape without 〒
        digits(rng, 7),  # account shape without context
        f"03-{digits(rng, 4)}-{digits(rng, 3)}",  # too short
        f"090-{digits(rng, 4)}-{digits(rng, 5)}",  # too long
        f"マイナンバー：{bad_my}",
        f"{bad_my[:4]} {bad_my[4:8]} {bad_my[8:]}",
        f"法人番号 {bad_corp}",
        f"カード番号 {bad_card[:4]} {bad_card[4:8]} {bad_card[8:12]} {bad_card[12:]}",
        f"ABC-{digits(rng, 4)}-{digits(rng, 4)}",
        f"型番 XJ{digits(rng, 10)}",
        f"注文番号 {nz(rng, 1)}{digits(rng, 9)}",  # (one starting with 0 would be a Tokyo phone number)
        f"0.{digits(rng, 10)}",
        "255.255.255.0",
        "127.0.0.1",
        f"{rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
        ":".join(format(rng.randint(0, 255), "02X") for _ in range(6)),  # MAC address
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
        f"pp. {rng.randint(1, 300)}-{rng.randint(301, 999)}",
        f"第{rng.randint(1, 30)}条第{rng.randint(1, 9)}項",
    ]
    return rng.choice(choices)


def make_items(n_items: int, seed: int) -> list[Item]:
    rng = random.Random(seed)
    kinds = list(GENERATORS)
    items: list[Item] = []
    for k in range(n_items):
        opener = rng.choice(OPENERS)
        n = rng.choice(NAMES)
        if k % 3 == 2:  # one item in three carries only a look-alike
            decoy = gen_decoy(rng)
            items.append(Item(opener.format(n=n, what="参照", x=decoy)))
            continue
        kind, surface, ctx = GENERATORS[kinds[k % len(kinds)]](rng)
        head, _, tail = opener.format(n=n, what="情報", x="\0").partition("\0")
        if rng.random() < 0.3:  # add a look-alike in the same sentence
            tail = tail + " " + gen_decoy(rng) + "。"
        text = head + ctx + surface + tail
        start = len(head) + len(ctx)
        items.append(Item(text, [(kind, start, start + len(surface))]))
    return items


def evaluate(items: list[Item], show_errors: int) -> tuple[dict[str, tuple[int, int, int]], float]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    shown = 0
    cfg = PiiConfig()
    t0 = time.perf_counter()
    predictions = [find_pii(item.text, cfg) for item in items]
    elapsed_s = time.perf_counter() - t0
    for item, preds in zip(items, predictions, strict=True):
        matched = set()
        for p in preds:
            hit = next(
                (
                    g
                    for g in item.gold
                    if g[0] == p.kind and p.start < g[2] and g[1] < p.end and g not in matched
                ),
                None,
            )
            if hit:
                tp[p.kind] += 1
                matched.add(hit)
            else:
                fp[p.kind] += 1
                if shown < show_errors:
                    print(f"  FP {p.kind:16} {p.text!r:32} in {item.text!r}")
                    shown += 1
        for g in item.gold:
            if g not in matched:
                fn[g[0]] += 1
                if shown < show_errors:
                    print(f"  FN {g[0]:16} {item.text[g[1] : g[2]]!r:32} in {item.text!r}")
                    shown += 1
    chars = sum(len(item.text) for item in items)
    kinds = [*KINDS, "corporate_number"]
    return {k: (tp[k], fp[k], fn[k]) for k in kinds}, chars / elapsed_s


def ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2400)
    ap.add_argument("--seed", type=int, default=20240115)
    ap.add_argument("--show-errors", type=int, default=10)
    args = ap.parse_args()
    items = make_items(args.items, args.seed)
    n_decoy = sum(1 for it in items if not it.gold)
    print(
        f"{len(items)} items ({len(items) - n_decoy} with planted PII, {n_decoy} look-alike only), seed {args.seed}"
    )
    table, chars_per_s = evaluate(items, args.show_errors)
    print(f"\n{'kind':18}{'tp':>6}{'fp':>6}{'fn':>6}{'precision':>11}{'recall':>9}")
    failed = []
    for kind, (t, f, n) in table.items():
        p, r = ratio(t, t + f), ratio(t, t + n)
        print(f"{kind:18}{t:6}{f:6}{n:6}{p:11.4f}{r:9.4f}")
        if kind in GATED and (p < 0.99 or r < 0.99):
            failed.append(kind)
    t, f, n = (sum(v[i] for v in table.values()) for i in range(3))
    print(f"{'overall':18}{t:6}{f:6}{n:6}{ratio(t, t + f):11.4f}{ratio(t, t + n):9.4f}")
    print(f"\nthroughput: {chars_per_s / 1e6:.2f} M chars/s (find_pii, one core)")
    if failed:
        print(f"FAIL: below 0.99 precision or recall: {', '.join(failed)}")
        return 1
    print("OK: my_number, credit_card and corporate_number at or above 0.99 precision and recall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
