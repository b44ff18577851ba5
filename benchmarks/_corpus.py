"""The shared benchmark corpus: real Japanese prose with planted, labelled near-duplicates.

Text comes from the Debian documentation packages installed on this machine (manpages-ja's
roff sources, debian-reference-ja's and maint-guide-ja's plain-text renderings). It is cut into
documents of ~1–4 KB (UTF-8) of consecutive prose paragraphs. Originals are made mutually
dissimilar (paragraphs deduplicated exactly, documents with character-5-gram Jaccard ≥ 0.3 to an
earlier one dropped), so the only near-duplicates are the planted ones:

- exact copies of a seeded subset of originals, and
- variants edited by characters (replace, insert, delete) and sentences (delete, insert a
  sentence from another document) until their Jaccard with the original reaches a target drawn
  uniformly from 0.5…1.0; the similarity written to `labels.json` is computed exactly, not the
  target.

Similarity is the Jaccard of the two texts' sets of character 5-grams, as written.

    $ .venv/bin/python benchmarks/_corpus.py --docs 3000 --out benchmarks/.work/corpus
    3000 documents (2400 originals, 600 planted) in 2 shards under benchmarks/.work/corpus

Layout of `--out`: `corpus/shard-NNNNN.jsonl` (id, text, source, license; documents in one
seeded random order), `labels.json`, `params.json` (a rebuild is skipped while it matches).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

VERSION = 2  # bump when the generator's output for the same parameters changes
NGRAM = 5
MIN_DOC_BYTES, MAX_DOC_BYTES = 1024, 4096
ORIGINAL_MAX_JACCARD = 0.3  # originals this similar to an earlier one are dropped
PLANTED_FRACTION = 0.2  # of all documents
EXACT_FRACTION = 0.1  # of the planted documents
SIM_RANGE = (0.5, 1.0)

MAN_ROOT = Path("/usr/share/man/ja")
TEXT_DOCS = {
    "debian-reference-ja": Path("/usr/share/debian-reference/debian-reference.ja.txt.gz"),
    "maint-guide-ja": Path("/usr/share/doc/maint-guide-ja/maint-guide.ja.txt.gz"),
}

_HIRAGANA = re.compile(r"[\u3041-\u309f]")
_JAPANESE = re.compile(r"[\u3000-\u303f\u3041-\u30ff\u4e00-\u9fff\uff01-\uff5e]")
_SENTENCE_END = re.compile(r"(?<=[。！？])")


@dataclass
class Label:
    """One planted document."""

    id: str
    original_id: str
    jaccard: float
    """Exact Jaccard of the two documents' character-5-gram sets."""
    kind: str
    """`exact` (a byte-identical copy) or `edited`."""


# --- reading the installed documentation -------------------------------------------------------

# roff escapes: fonts (\fB, \f(CW, \f[I]), sizes (\s-1), strings (\*(xx), specials (\(em), one-char
# escapes (\&, \c, \%, \:, \/, \,); what they print is dropped, except a few that stand for text.
_ROFF_TEXT = {r"\-": "-", r"\e": "\\", r"\ ": " ", r"\~": " ", r"\(em": "—", r"\(en": "–", r"\(bu": "・"}
_ROFF_ESCAPE = re.compile(
    r"\\(?:f(?:\(..|\[[^\]]*\]|.)|s[+-]?\d+|\*(?:\(..|\[[^\]]*\]|.)|\(..|\[[^\]]*\]|[&c%:/,|^0dhu])"
)
# man(7) font macros and mdoc(7) inline macros: their arguments are running text.
_ROFF_TEXT_MACROS = {"B", "I", "BR", "RB", "BI", "IB", "IR", "RI", "SM", "SB"} | {
    "Nm",
    "Fl",
    "Ar",
    "Pa",
    "Xr",
    "Em",
    "Sy",
    "Li",
    "Cm",
    "Dq",
    "Sq",
    "Ql",
    "Va",
    "Ev",
    "Fn",
    "Dv",
    "Er",
    "Ic",
}


def _unescape(line: str) -> str:
    for k, v in _ROFF_TEXT.items():
        line = line.replace(k, v)
    return _ROFF_ESCAPE.sub("", line)


def _join_lines(lines: list[str]) -> str:
    """Unwrap a paragraph: Japanese lines join without a space, Latin words with one."""
    out = ""
    for line in (ln.strip() for ln in lines):
        if not line:
            continue
        if out and out[-1].isascii() and out[-1].isalnum() and line[0].isascii() and line[0].isalnum():
            out += " "
        out += line
    return out


def man_paragraphs(roff: str) -> Iterator[str]:
    """Crude roff to prose: macro lines break paragraphs, text macros keep their words, no-fill
    blocks (examples, synopses) are skipped."""
    para: list[str] = []
    nofill = False
    for raw in roff.splitlines():
        line = raw.rstrip()
        if line.startswith(('.\\"', "'\\\"", '.\\"')):
            continue
        if line.startswith((".", "'")):
            macro, _, args = line[1:].strip().partition(" ")
            if macro in ("nf", "EX"):
                nofill = True
            elif macro in ("fi", "EE"):
                nofill = False
            if macro in _ROFF_TEXT_MACROS and not nofill:
                para.append(_unescape(args.replace('"', "")))
                continue
            if para:
                yield _join_lines(para)
                para = []
            continue
        if nofill:
            continue
        line = _unescape(line)
        if not line.strip():
            if para:
                yield _join_lines(para)
                para = []
            continue
        para.append(line)
    if para:
        yield _join_lines(para)


def text_paragraphs(text: str) -> Iterator[str]:
    """Paragraphs of a plain-text rendering: blank-line separated, wrapped lines joined."""
    for block in re.split(r"\n\s*\n", text):
        yield _join_lines(block.splitlines())


def is_prose(paragraph: str) -> bool:
    """Mostly Japanese and written in sentences (hiragana), not a table, command or heading."""
    n = len(paragraph)
    return (
        n >= 40
        and len(_JAPANESE.findall(paragraph)) >= 0.5 * n
        and len(_HIRAGANA.findall(paragraph)) >= 0.1 * n
        and paragraph.endswith(("。", "）", ")", "」"))
    )


def package_license(package: str) -> str:
    """The licence of the package's `Files: *` stanza in its DEP-5 copyright file, if it has one."""
    path = Path("/usr/share/doc") / package / "copyright"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown"
    if text.startswith("Format:"):
        m = re.search(r"^Files:\s*\*\s*$.*?^License:\s*(\S+)", text, re.M | re.S)
        if m:
            return m.group(1)
    # manpages-ja: each page keeps its original (DFSG-free) licence, named in its roff comments.
    return f"LicenseRef-{package}-per-page"


def source_texts() -> Iterator[tuple[str, str, list[str]]]:
    """(package, path, prose paragraphs) per installed file, in a fixed order."""
    for package, path in TEXT_DOCS.items():
        if path.exists():
            text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
            yield package, str(path), [p for p in text_paragraphs(text) if is_prose(p)]
    for path in sorted(MAN_ROOT.rglob("*.gz")) if MAN_ROOT.exists() else []:
        try:
            roff = gzip.decompress(path.read_bytes()).decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError):
            continue
        yield "manpages-ja", str(path), [p for p in man_paragraphs(roff) if is_prose(p)]


# --- similarity ----------------------------------------------------------------------------------


def ngrams(text: str, n: int = NGRAM) -> set[str]:
    """>>> sorted(ngrams("東京都庁舎", 3))
    ['京都庁', '東京都', '都庁舎']
    """
    return {text[i : i + n] for i in range(max(len(text) - n + 1, 1))} if text else set()


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


# --- originals -----------------------------------------------------------------------------------


@dataclass
class _Doc:
    text: str
    source: str
    license: str


def _doc_target(rng: random.Random) -> int:
    """A document's size in UTF-8 bytes, log-uniform over 1–4 KB (web pages skew short)."""
    return int(MIN_DOC_BYTES * (MAX_DOC_BYTES / MIN_DOC_BYTES) ** rng.random())


def cut_documents(rng: random.Random) -> list[_Doc]:
    """Groups of consecutive prose paragraphs of one file, each group ~1–4 KB, paragraphs exact-
    deduplicated across all files (manual pages repeat boilerplate)."""
    seen: set[str] = set()
    docs: list[_Doc] = []
    licenses: dict[str, str] = {}
    for package, path, paragraphs in source_texts():
        lic = licenses.setdefault(package, package_license(package))
        target = _doc_target(rng)
        group: list[str] = []
        size = 0
        for p in paragraphs:
            if p in seen:
                continue
            seen.add(p)
            group.append(p)
            size += len(p.encode("utf-8"))
            if size >= target:
                docs.append(_Doc("\n\n".join(group), f"{package}:{path}", lic))
                group, size = [], 0
                target = _doc_target(rng)
        if size >= MIN_DOC_BYTES:
            docs.append(_Doc("\n\n".join(group), f"{package}:{path}", lic))
    return docs


def drop_similar(docs: list[_Doc], max_jaccard: float = ORIGINAL_MAX_JACCARD) -> list[_Doc]:
    """Keep documents whose Jaccard with every earlier kept one is below `max_jaccard`.

    Candidates come from a 1-in-4 sample of each document's n-grams (chosen by crc32, so the
    result does not depend on PYTHONHASHSEED); only candidates get the exact comparison.
    """
    kept: list[_Doc] = []
    kept_grams: list[set[str]] = []
    index: dict[str, list[int]] = {}
    for doc in docs:
        grams = ngrams(doc.text)
        sample = [g for g in grams if zlib.crc32(g.encode()) % 4 == 0]
        hits = Counter(j for g in sample for j in index.get(g, ()))
        floor = max_jaccard * len(sample) * 0.5
        if any(c >= floor and jaccard(grams, kept_grams[j]) >= max_jaccard for j, c in hits.items()):
            continue
        for g in sample:
            index.setdefault(g, []).append(len(kept))
        kept.append(doc)
        kept_grams.append(grams)
    return kept


# --- planted near-duplicates ---------------------------------------------------------------------


def _apply_edits(text: str, edits: list[tuple[str, float, str]]) -> str:
    """Replay edits; positions are fractions of the current length so every edit stays valid."""
    chars = list(text)
    for kind, where, payload in edits:
        i = int(where * len(chars))
        if kind == "replace" and chars:
            chars[min(i, len(chars) - 1)] = payload
        elif kind == "insert":
            chars.insert(i, payload)
        elif kind == "delete" and len(chars) > 1:
            del chars[min(i, len(chars) - 1)]
        elif kind in ("drop_sentence", "add_sentence"):
            sentences = _SENTENCE_END.split("".join(chars))
            j = min(int(where * len(sentences)), len(sentences) - 1)
            if kind == "drop_sentence" and len(sentences) > 2:
                del sentences[j]
            elif kind == "add_sentence":
                sentences.insert(j, payload)
            chars = list("".join(sentences))
    return "".join(chars)


def make_variant(text: str, target: float, rng: random.Random, donors: list[str]) -> tuple[str, float]:
    """An edited copy of `text` whose exact Jaccard with it is as close to `target` as the edit
    granularity allows: one seeded edit sequence, binary-searched for the shortest prefix that
    reaches the target."""
    alphabet = text.replace("\n", "")
    edits: list[tuple[str, float, str]] = []
    for _ in range(len(text)):
        kind = rng.choices(
            ["replace", "insert", "delete", "drop_sentence", "add_sentence"], [50, 15, 15, 10, 10]
        )[0]
        if kind == "add_sentence":
            donor = _SENTENCE_END.split(rng.choice(donors))
            payload = rng.choice([s for s in donor if s.strip()] or ["。"]).strip("\n")
        else:
            payload = rng.choice(alphabet)
        edits.append((kind, rng.random(), payload))
    grams = ngrams(text)
    lo, hi = 0, len(edits)  # invariant: J(prefix lo) > target or lo == 0; J(prefix hi) <= target
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if jaccard(grams, ngrams(_apply_edits(text, edits[:mid]))) > target:
            lo = mid
        else:
            hi = mid
    best = min(
        (_apply_edits(text, edits[:k]) for k in (lo, hi)),
        key=lambda v: abs(jaccard(grams, ngrams(v)) - target),
    )
    if best == text:  # a no-op prefix: force one real edit, the label must describe a variant
        best = _apply_edits(text, edits[: max(hi, 1)])
    return best, jaccard(grams, ngrams(best))


# --- the whole corpus ----------------------------------------------------------------------------


@dataclass
class CorpusInfo:
    """What `build_corpus` wrote; `files` are the JSONL shards every tool reads."""

    files: list[str]
    labels_path: str
    docs: int
    originals: int
    planted: int
    params: dict


def build_corpus(out_dir: Path, *, docs: int, seed: int = 0, shards: int = 2) -> CorpusInfo:
    """Write the corpus and labels under `out_dir` (reused while its parameters match)."""
    params = {"version": VERSION, "docs": docs, "seed": seed, "shards": shards}
    files = [out_dir / "corpus" / f"shard-{k:05d}.jsonl" for k in range(shards)]
    labels_path = out_dir / "labels.json"
    params_path = out_dir / "params.json"
    if params_path.exists() and all(f.exists() for f in files) and labels_path.exists():
        saved = json.loads(params_path.read_text())
        if saved.get("params") == params:
            return CorpusInfo([str(f) for f in files], str(labels_path), **saved["counts"], params=params)

    rng = random.Random(seed)
    n_planted = round(docs * PLANTED_FRACTION)
    n_originals = docs - n_planted
    originals = drop_similar(cut_documents(rng))  # all of the installed text, ~3 s
    if len(originals) < n_originals:
        raise SystemExit(
            f"only {len(originals)} original documents available from the installed Debian docs, "
            f"{n_originals} needed for --docs {docs}; install manpages-ja, debian-reference-ja, "
            "maint-guide-ja or ask for fewer documents"
        )
    originals = rng.sample(originals, n_originals)  # a random subset spans all packages
    texts = [d.text for d in originals]

    records: list[dict] = [
        {"text": d.text, "source": d.source, "license": d.license, "_orig": i}
        for i, d in enumerate(originals)
    ]
    chosen = rng.sample(range(n_originals), n_planted)
    n_exact = round(n_planted * EXACT_FRACTION)
    planted: list[tuple[int, str, float]] = []  # (original index, kind, jaccard)
    for k, i in enumerate(chosen):
        d = originals[i]
        if k < n_exact:
            text, sim, kind = d.text, 1.0, "exact"
        else:
            target = rng.uniform(*SIM_RANGE)
            text, sim = make_variant(d.text, target, rng, texts[:i] + texts[i + 1 :])
            kind = "edited"
        planted.append((i, kind, sim))
        records.append({"text": text, "source": d.source, "license": d.license, "_planted": len(planted) - 1})

    rng.shuffle(records)
    ids: dict[tuple[str, int], str] = {}
    for n, r in enumerate(records):
        r["id"] = f"doc-{n:06d}"
        key = ("orig", r.pop("_orig")) if "_orig" in r else ("planted", r.pop("_planted"))
        ids[key] = r["id"]
    labels = [
        Label(ids[("planted", k)], ids[("orig", i)], round(sim, 6), kind)
        for k, (i, kind, sim) in enumerate(planted)
    ]

    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(records) // shards)
    for k, f in enumerate(files):
        with f.open("w", encoding="utf-8") as fh:
            for r in records[k * per_shard : (k + 1) * per_shard]:
                row = {"id": r["id"], "text": r["text"], "source": r["source"], "license": r["license"]}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    labels_path.write_text(json.dumps([asdict(x) for x in labels], ensure_ascii=False, indent=1) + "\n")
    counts = {"docs": len(records), "originals": n_originals, "planted": n_planted}
    params_path.write_text(json.dumps({"params": params, "counts": counts}, indent=1) + "\n")
    return CorpusInfo([str(f) for f in files], str(labels_path), **counts, params=params)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=3000, help="documents in all, originals and planted")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / ".work" / "corpus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shards", type=int, default=2, help="JSONL files to split the corpus into")
    args = ap.parse_args()
    info = build_corpus(args.out, docs=args.docs, seed=args.seed, shards=args.shards)
    print(
        f"{info.docs} documents ({info.originals} originals, {info.planted} planted) "
        f"in {len(info.files)} shards under {args.out}"
    )


if __name__ == "__main__":
    main()
