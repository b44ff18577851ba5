"""kiban tokenize vs the raw `tokenizers` batch encoder, and characters per token by vocabulary size.

    .venv/bin/python benchmarks/tokenize_vs_tokenizers.py --workers 1 --repeats 5

One run:

1. curates (or reuses) the demo corpus from the installed Debian Japanese documentation
   (`manpages-ja`, `debian-reference-ja`, `maint-guide-ja`; `filters.japanese.enabled=false`,
   as the demo does, since man pages are reference text, not web prose);
2. trains kiban tokenizers at each `--vocab` size (default 8k, 32k, 100k) and prints characters
   per token on the held-out Japanese documents (2 % of documents, chosen by a hash of their id),
   with the vocabulary size actually reached (a small corpus cannot fill 100k with merges seen twice);
3. with the `--throughput-vocab` tokenizer, times, alternating, (a) `kiban tokenize` end to end
   (read Parquet, encode, frame documents with BOS/EOS, write shards and manifest) and (b) the raw
   `tokenizers.Tokenizer.encode_batch` of the same tokenizer on the same texts, already in memory
   and `encode_batch_fast` (no offsets; what kiban calls) of the same tokenizer on the same texts,
   already in memory (no reading, no writing) — the peer's best case. It prints tokens/s and
   docs/s of each (median of `--repeats`) and kiban's ratio to each raw encoder.

Everything goes under `benchmarks/.work/tokenizer/` (git-ignored). `--json` prints one object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import pyarrow.parquet as pq
from tokenizers import Tokenizer

from kiban.config import apply_overrides, from_dict
from kiban.curate.config import CurateConfig
from kiban.curate.pipeline import run as curate
from kiban.tokenizer import TokenizeConfig, TokenizerConfig, tokenize_corpus, train_tokenizer

WORK = Path(__file__).resolve().parent / ".work" / "tokenizer"
SOURCES = ["debian:manpages-ja", "debian:debian-reference-ja", "debian:maint-guide-ja"]


def build_corpus(out: Path) -> Path:
    cfg = from_dict(CurateConfig, apply_overrides({}, ["filters.japanese.enabled=false"]))
    curate(SOURCES, out, cfg, workers=2)  # a finished corpus with the same arguments is reused
    return out


def train_all(corpus: Path, vocabs: list[int]) -> list[dict]:
    rows = []
    for v in vocabs:
        out = WORK / f"tokenizer-{v}"
        t0 = time.perf_counter()
        m = train_tokenizer(corpus, out, TokenizerConfig(vocab_size=v), overwrite=True)
        s = m["stats"]
        rows.append(
            {
                "vocab_requested": v,
                "vocab_size": s["vocab_size"],
                "train_s": round(time.perf_counter() - t0, 2),
                "training_chars": s["training_chars"],
                "held_out_ja_docs": s["held_out"]["ja"]["docs"],
                "held_out_ja_chars": s["held_out"]["ja"]["chars"],
                "ja_chars_per_token": s["held_out"]["ja"]["chars_per_token"],
                "en_chars_per_token": s["held_out"]["en"]["chars_per_token"],
                "unk_tokens": s["unk_tokens"],
            }
        )
    return rows


def throughput(corpus: Path, tok_dir: Path, workers: int, repeats: int) -> dict:
    texts = [
        t
        for p in sorted(corpus.glob("part-*.parquet"))
        for t in pq.read_table(p, columns=["text"])["text"].to_pylist()
    ]
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    tok.encode_special_tokens = True  # as kiban tokenize does
    kiban_s, raw_s, fast_s, n_tokens, raw_tokens = [], [], [], 0, 0
    out = WORK / "tokens"
    order = ["kiban", "raw", "fast"]
    for i in range(repeats):
        for which in order[i % 3 :] + order[: i % 3]:  # rotate so no tool always runs first
            if which == "kiban":
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                m = tokenize_corpus(corpus, tok_dir, out, TokenizeConfig(), workers=workers)
                kiban_s.append(time.perf_counter() - t0)
                n_tokens = m["stats"]["n_tokens"]
            else:
                encode = tok.encode_batch if which == "raw" else tok.encode_batch_fast
                t0 = time.perf_counter()
                encs = encode(texts, add_special_tokens=False)
                (raw_s if which == "raw" else fast_s).append(time.perf_counter() - t0)
                raw_tokens = sum(len(e.ids) for e in encs)
    k, r, f = statistics.median(kiban_s), statistics.median(raw_s), statistics.median(fast_s)
    return {
        "docs": len(texts),
        "chars": sum(len(t) for t in texts),
        "tokens_kiban": n_tokens,  # + BOS and EOS per document
        "tokens_raw": raw_tokens,
        "kiban_s": [round(x, 3) for x in kiban_s],
        "raw_s": [round(x, 3) for x in raw_s],
        "fast_s": [round(x, 3) for x in fast_s],
        "kiban_tokens_per_s": round(n_tokens / k),
        "raw_tokens_per_s": round(raw_tokens / r),
        "kiban_docs_per_s": round(len(texts) / k, 1),
        "raw_docs_per_s": round(len(texts) / r, 1),
        "fast_tokens_per_s": round(raw_tokens / f),
        "fast_docs_per_s": round(len(texts) / f, 1),
        "ratio_kiban_over_raw": round(r / k, 3),  # same documents: a ratio of docs/s
        "ratio_kiban_over_fast": round(f / k, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, nargs="+", default=[8_000, 32_000, 100_000])
    ap.add_argument("--throughput-vocab", type=int, default=32_000)
    ap.add_argument("--workers", type=int, default=1, help="kiban tokenize --workers")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(WORK / "corpus")
    vocabs = sorted(set(args.vocab) | {args.throughput_vocab})
    rows = train_all(corpus, vocabs)
    tp = throughput(corpus, WORK / f"tokenizer-{args.throughput_vocab}", args.workers, args.repeats)
    if args.json:
        print(json.dumps({"tokenizers": rows, "throughput": tp}, ensure_ascii=False))
        return
    print(f"corpus: {tp['docs']} documents, {tp['chars']:,} characters ({', '.join(SOURCES)})\n")
    print("| vocab (asked) | vocab (reached) | train s | held-out ja docs / chars | ja chars/token | <unk> |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['vocab_requested']:,} | {r['vocab_size']:,} | {r['train_s']} | "
            f"{r['held_out_ja_docs']} / {r['held_out_ja_chars']:,} | {r['ja_chars_per_token']} | {r['unk_tokens']} |"
        )
    print(
        f"\nthroughput, vocab {args.throughput_vocab:,}, kiban --workers {args.workers}, median of {args.repeats}:"
    )
    print("| | seconds | tokens/s | docs/s |")
    print("| --- | --- | --- | --- |")
    print(
        f"| kiban tokenize (end to end) | {tp['kiban_s']} | {tp['kiban_tokens_per_s']:,} | {tp['kiban_docs_per_s']:,} |"
    )
    print(
        f"| tokenizers encode_batch (in memory) | {tp['raw_s']} | {tp['raw_tokens_per_s']:,} | {tp['raw_docs_per_s']:,} |"
    )
    print(
        f"| tokenizers encode_batch_fast (in memory) | {tp['fast_s']} | {tp['fast_tokens_per_s']:,} | "
        f"{tp['fast_docs_per_s']:,} |"
    )
    print(
        f"\nkiban / encode_batch: {tp['ratio_kiban_over_raw']}×, kiban / encode_batch_fast: "
        f"{tp['ratio_kiban_over_fast']}× (docs/s; kiban's tokens include BOS and EOS per document)"
    )


if __name__ == "__main__":
    main()
