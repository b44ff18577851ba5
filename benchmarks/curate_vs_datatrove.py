"""kiban curate vs datatrove: throughput and near-duplicate quality on the same Japanese corpus.

    .venv/bin/python benchmarks/curate_vs_datatrove.py --docs 3000 --workers 2

One run builds (or reuses) the labelled corpus of `benchmarks/_corpus.py`, then runs both tools
with equivalent pipelines on its JSONL shards, each with `--workers` processes:

- datatrove 0.10.1 (in its own venv, `benchmarks/.venv-datatrove`, created on first use):
  JsonlReader → GopherRepetitionFilter → FineWebQualityFilter → GopherQualityFilter (FineWeb-2's
  Japanese thresholds) → JsonlWriter → MinHash (signatures, buckets, cluster, filter; 14 buckets ×
  8 hashes over word 5-grams from spaCy-ja/SudachiPy, FineWeb-2's settings) → JsonlWriter.
- kiban: `kiban curate SHARDS --out DIR --workers N --json` with its default config (normalize,
  language id, Swallow/llm-jp quality rules, PII redaction, exact + MinHash LSH dedup on character
  5-grams, Parquet out). kiban does strictly more work per document than the datatrove pipeline.

Throughput is input documents / wall-clock seconds of the whole tool process (interpreter start,
imports, every stage, output), venv creation excluded.

Near-duplicate quality is measured on each tool's *dedup input* (the documents its quality
filters let through), so a filter that drops a document never counts for or against dedup. A
planted pair (original, variant) is positive when its true character-5-gram Jaccard is ≥ 0.8
(exact copies included) and both members reached dedup. A positive pair is caught when dedup
removed either member (tools may keep the variant instead of the original); every other removal,
including a second removal from the same pair, is a false positive:

    precision = caught positive pairs / documents removed by dedup
    recall    = caught positive pairs / positive pairs

The fraction of pairs caught per similarity bin shows each tool's S-curve (below 0.8, removals are
false positives by the definition above).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import CorpusInfo, build_corpus  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
DATATROVE_VENV = HERE / ".venv-datatrove"
# The Japanese path of datatrove 0.10.1 and nothing else: its core, orjson for JSONL, regex and
# xxhash for text utils and MinHash, spaCy's `ja` language with SudachiPy and its core dictionary
# (what `load_word_tokenizer("jpn_Jpan")` builds). Pinned where they set the speed.
DATATROVE_REQUIREMENTS = [
    "datatrove==0.10.1",
    "orjson",
    "regex",
    "xxhash<4",
    "tokenizers",  # imported by datatrove.pipeline.dedup's __init__
    "spacy==3.8.18",
    "sudachipy==0.7.0",
    "sudachidict-core==20261015",
]
SIMILARITY_THRESHOLD = 0.8
BINS = [
    ("<0.5", 0.0, 0.5),
    *((f"{lo / 10:.1f}–{(lo + 1) / 10:.1f}", lo / 10, (lo + 1) / 10) for lo in range(5, 10)),
]
TARGETS = {"docs_per_s_ratio": 10.0, "precision": 0.95, "recall": 0.90}

# Runs under the datatrove venv's python: `python driver.py CONFIG_JSON`. Written to
# benchmarks/.work/ on every run, so this string is the only copy.
DATATROVE_DRIVER = r"""
import json
import sys
import time

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature,
)
from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.typeshelper import Languages


def stages(corpus_dir, work, workers, ja):
    lang = Languages.japanese__jpan
    # FineWeb-2's MinHash settings (huggingface/fineweb-2, fineweb-2-pipeline.py).
    mh = MinhashConfig(
        hash_config=HashConfig(hash_fc="xxhash", precision=64), num_buckets=14, hashes_per_bucket=8, n_grams=5
    )

    def excluded(name):
        return JsonlWriter(f"{work}/removed/{name}", output_filename="${rank}.jsonl", compression=None)

    # FineWeb-2's filters for jpn_Jpan, wired as in fineweb-2-pipeline.py with the thresholds of
    # configs/jpn_Jpan.yml; like FineWeb-2 we do not apply the C4 filters.
    yield "filter+signatures", LocalPipelineExecutor(
        pipeline=[
            JsonlReader(corpus_dir, glob_pattern="*.jsonl", compression=None),
            GopherRepetitionFilter(
                language=lang, dup_para_frac=0, dup_line_char_frac=0, dup_para_char_frac=0,
                dup_line_frac=ja["dup_line_frac"], top_n_grams=ja["top_n_grams"], dup_n_grams=ja["dup_n_grams"],
                exclusion_writer=excluded("gopher_repetition"),
            ),
            FineWebQualityFilter(
                language=lang, short_line_thr=999, char_duplicates_ratio=0.1,
                line_punct_thr=ja["line_punct_thr"], new_line_ratio=ja["new_line_ratio"],
                exclusion_writer=excluded("fineweb_quality"),
            ),
            GopherQualityFilter(
                language=lang, max_avg_word_length=ja["max_avg_word_length"],
                min_avg_word_length=ja["min_avg_word_length"], stop_words=ja["stopwords"],
                max_non_alpha_words_ratio=ja["max_non_alpha_words_ratio"], min_stop_words=2,
                exclusion_writer=excluded("gopher_quality"),
            ),
            JsonlWriter(f"{work}/filtered", output_filename="${rank}.jsonl", compression=None),
            MinhashDedupSignature(output_folder=f"{work}/signatures", config=mh, language=lang),
        ],
        tasks=workers, workers=workers, logging_dir=f"{work}/logs/1",
    )
    yield "buckets", LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(input_folder=f"{work}/signatures", output_folder=f"{work}/buckets", config=mh)],
        tasks=mh.num_buckets, workers=workers, logging_dir=f"{work}/logs/2",
    )
    yield "cluster", LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids", config=mh)],
        tasks=1, workers=1, logging_dir=f"{work}/logs/3",
    )
    # Re-reads the filter output with the same number of tasks, so document indices match stage 1's.
    yield "dedup filter", LocalPipelineExecutor(
        pipeline=[
            JsonlReader(f"{work}/filtered", glob_pattern="*.jsonl", compression=None),
            MinhashDedupFilter(input_folder=f"{work}/remove_ids", exclusion_writer=excluded("minhash")),
            JsonlWriter(f"{work}/output", output_filename="${rank}.jsonl", compression=None),
        ],
        tasks=workers, workers=workers, logging_dir=f"{work}/logs/4",
    )


def main():
    cfg = json.loads(sys.argv[1])
    seconds = {}
    for name, executor in stages(cfg["corpus_dir"], cfg["work"], cfg["workers"], cfg["thresholds"]):
        t0 = time.perf_counter()
        executor.run()
        seconds[name] = time.perf_counter() - t0
    print("STAGE_SECONDS " + json.dumps(seconds))


if __name__ == "__main__":  # datatrove's executor starts workers with forkserver, which re-imports us
    main()
"""

# huggingface/fineweb-2, configs/jpn_Jpan.yml: FineWeb-2's per-language filter thresholds.
FINEWEB2_JPN_THRESHOLDS = {
    "dup_line_frac": 0.375,
    "dup_n_grams": [[5, 0.307], [6, 0.283], [7, 0.264], [8, 0.248], [9, 0.234], [10, 0.223]],
    "top_n_grams": [[2, 0.121], [3, 0.129], [4, 0.145]],
    "line_punct_thr": 0.167,
    "new_line_ratio": 0.162,
    "max_avg_word_length": 5,
    "min_avg_word_length": 1,
    "max_non_alpha_words_ratio": 0.759,
    "stopwords": ["の", "に", "を", "は", "た", "て", "が", "と", "で", "年", "し", "・", "月", "れ", "さ"],
}


@dataclass
class ToolRun:
    """One tool's run: how long it took and which documents reached dedup and survived it."""

    tool: str
    seconds: float
    input_docs: int
    reached_dedup: set[str]
    kept: set[str]
    filter_drops: Counter[str] = field(default_factory=Counter)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.input_docs / self.seconds


@dataclass
class DedupScore:
    """Near-duplicate quality of one run against the planted labels (see the module docstring)."""

    reached_dedup: int
    removed: int
    positive_pairs: int
    caught: int
    precision: float
    recall: float
    f1: float
    removed_outside_pairs: int
    """Removed documents that belong to no planted pair: originals with no planted copy."""
    bins: dict[str, dict[str, float | None]]
    """Per similarity bin (and `exact`): evaluable pairs and the fraction caught."""


# --- the datatrove side --------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_datatrove_venv(venv: Path = DATATROVE_VENV) -> Path:
    """Create the datatrove venv and install DATATROVE_REQUIREMENTS unless already done."""
    marker = venv / "kiban-requirements.txt"
    wanted = "\n".join(DATATROVE_REQUIREMENTS) + "\n"
    if marker.exists() and marker.read_text() == wanted and venv_python(venv).exists():
        return venv_python(venv)
    print(f"creating {venv} (datatrove and spaCy-ja/SudachiPy, ~600 MB) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *DATATROVE_REQUIREMENTS], check=True)
    marker.write_text(wanted)
    return venv_python(venv)


def _jsonl_ids(folder: Path) -> set[str]:
    ids: set[str] = set()
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            ids.update(json.loads(line)["id"] for line in f if line.strip())
    return ids


def run_datatrove(python: Path, corpus: CorpusInfo, workers: int) -> ToolRun:
    work = WORK / "runs" / "datatrove"
    shutil.rmtree(work, ignore_errors=True)  # datatrove skips tasks its logs mark completed
    work.mkdir(parents=True)
    driver = WORK / "datatrove_driver.py"
    driver.write_text(DATATROVE_DRIVER.lstrip())
    cfg = {
        "corpus_dir": str(Path(corpus.files[0]).parent),
        "work": str(work),
        "workers": workers,
        "thresholds": FINEWEB2_JPN_THRESHOLDS,
    }
    log = work / "datatrove.log"
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            [str(python), str(driver), json.dumps(cfg)], stdout=subprocess.PIPE, stderr=out, text=True
        )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"datatrove failed (exit {proc.returncode}); see {log}")
    stage_seconds = next(
        (
            json.loads(line.split(" ", 1)[1])
            for line in proc.stdout.splitlines()
            if line.startswith("STAGE_SECONDS")
        ),
        {},
    )
    drops = Counter({p.name: len(_jsonl_ids(p)) for p in (work / "removed").iterdir() if p.name != "minhash"})
    return ToolRun(
        tool="datatrove",
        seconds=seconds,
        input_docs=corpus.docs,
        reached_dedup=_jsonl_ids(work / "filtered"),
        kept=_jsonl_ids(work / "output"),
        filter_drops=drops,
        stage_seconds=stage_seconds,
    )


# --- the kiban side ------------------------------------------------------------------------------


def kiban_command() -> list[str]:
    exe = Path(sys.executable).parent / "kiban"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("kiban")
    if found is None:
        raise SystemExit("no `kiban` command: run `make setup` (it installs kiban into .venv) first")
    return [found]


def _is_dedup_drop(reason: str, duplicate_of: str | None) -> bool:
    """kiban names its dedup drops `dedup_exact` / `dedup_near` and says which document they copy."""
    return duplicate_of is not None or reason.startswith("dedup")


def run_kiban(corpus: CorpusInfo, workers: int, config: Path | None, overrides: list[str]) -> ToolRun:
    import pyarrow.parquet as pq  # kiban's own dependency, present in the project venv

    out = WORK / "runs" / "kiban"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*kiban_command(), "curate", *corpus.files, "--out", str(out), "--workers", str(workers), "--json"]
    if config is not None:
        cmd += ["--config", str(config)]
    for kv in overrides:
        cmd += ["--set", kv]
    log = WORK / "runs" / "kiban.log"
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"kiban curate failed (exit {proc.returncode}); see {log}")

    kept = {
        i
        for p in sorted(out.glob("part-*.parquet"))
        for i in pq.read_table(p, columns=["id"])["id"].to_pylist()
    }
    dedup_removed: set[str] = set()
    drops: Counter[str] = Counter()
    rejected = sorted((out / "rejected").rglob("*.parquet")) if (out / "rejected").exists() else []
    for p in rejected:
        t = pq.read_table(p).to_pydict()
        dup_of = t.get("duplicate_of", [None] * len(t["id"]))
        for doc_id, reason, of in zip(t["id"], t["reason"], dup_of, strict=True):
            if _is_dedup_drop(reason, of):
                dedup_removed.add(doc_id)
            else:
                drops[reason] += 1
    dup_report = out / "dedup" / "duplicates.parquet"  # removed id, kept id, kind
    if dup_report.exists():
        dedup_removed |= set(pq.read_table(dup_report, columns=["id"])["id"].to_pylist())
    if not rejected:
        # Without rejected/ we cannot tell filter drops from dedup drops: count every drop as dedup.
        print(
            "warning: kiban wrote no rejected/; treating every dropped document as a dedup removal",
            file=sys.stderr,
        )
        dedup_removed = _all_ids(corpus) - kept
    return ToolRun(
        tool="kiban",
        seconds=seconds,
        input_docs=corpus.docs,
        reached_dedup=kept | dedup_removed,
        kept=kept,
        filter_drops=drops,
    )


def _all_ids(corpus: CorpusInfo) -> set[str]:
    return _jsonl_ids(Path(corpus.files[0]).parent)


# --- scoring -------------------------------------------------------------------------------------


def score_dedup(run: ToolRun, labels: list[dict]) -> DedupScore:
    removed = run.reached_dedup - run.kept
    in_pairs: set[str] = set()
    positives = caught = 0
    per_bin: dict[str, list[int]] = {name: [0, 0] for name, _, _ in BINS} | {"exact": [0, 0]}
    for label in labels:
        v, o, sim = label["id"], label["original_id"], label["jaccard"]
        in_pairs.update((v, o))
        if v not in run.reached_dedup or o not in run.reached_dedup:
            continue
        hit = v in removed or o in removed
        name = "exact" if label["kind"] == "exact" else next(n for n, _, hi in BINS if sim < hi or hi == 1.0)
        per_bin[name][0] += 1
        per_bin[name][1] += hit
        if sim >= SIMILARITY_THRESHOLD:
            positives += 1
            caught += hit
    precision = caught / len(removed) if removed else 1.0
    recall = caught / positives if positives else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DedupScore(
        reached_dedup=len(run.reached_dedup),
        removed=len(removed),
        positive_pairs=positives,
        caught=caught,
        precision=precision,
        recall=recall,
        f1=f1,
        removed_outside_pairs=len(removed - in_pairs),
        bins={k: {"pairs": n, "caught": (c / n if n else None)} for k, (n, c) in per_bin.items()},
    )


# --- the report ----------------------------------------------------------------------------------


def report(
    corpus: CorpusInfo, runs: dict[str, list[ToolRun]], scores: dict[str, DedupScore], workers: int
) -> dict:
    tools = {}
    for tool, rs in runs.items():
        last = rs[-1]
        tools[tool] = {
            "seconds": [round(r.seconds, 2) for r in rs],
            "docs_per_s": round(statistics.median(r.docs_per_s for r in rs), 2),
            "after_filters": len(last.reached_dedup),
            "after_dedup": len(last.kept),
            "filter_drops": dict(last.filter_drops),
            "stage_seconds": {k: round(v, 2) for k, v in last.stage_seconds.items()},
            "dedup": asdict(scores[tool]),
        }
    out: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv])}
    out["corpus"] = {**corpus.params, "originals": corpus.originals, "planted": corpus.planted}
    out["workers"] = workers
    out["tools"] = tools
    if "datatrove" in tools and "kiban" in tools:
        out["docs_per_s_ratio"] = round(tools["kiban"]["docs_per_s"] / tools["datatrove"]["docs_per_s"], 2)
        # Each repeat runs both tools back to back, so its ratio is less exposed to drifting load.
        pairs = zip(runs["kiban"], runs["datatrove"], strict=True)
        out["docs_per_s_ratio_per_repeat"] = [round(k.docs_per_s / d.docs_per_s, 2) for k, d in pairs]
    return out


def print_report(r: dict) -> None:
    c, tools = r["corpus"], r["tools"]
    print(
        f"corpus: {c['docs']} docs ({c['originals']} originals + {c['planted']} planted near-duplicates), "
        f"seed {c['seed']}, {c['shards']} shards; {r['workers']} workers each"
    )
    print(f"\n{'tool':<10} {'seconds':>16} {'docs/s':>8} {'after filters':>14} {'after dedup':>12}")
    for name, t in tools.items():
        secs = ",".join(f"{s:.1f}" for s in t["seconds"])
        print(
            f"{name:<10} {secs:>16} {t['docs_per_s']:>8.1f} {t['after_filters']:>14} {t['after_dedup']:>12}"
        )
    if "docs_per_s_ratio" in r:
        ratio = r["docs_per_s_ratio"]
        verdict = "met" if ratio >= TARGETS["docs_per_s_ratio"] else "NOT met"
        per = ", ".join(f"{x:.1f}x" for x in r["docs_per_s_ratio_per_repeat"])
        print(
            f"\nkiban / datatrove docs/s: {ratio:.2f}x (target ≥ {TARGETS['docs_per_s_ratio']:.0f}x: {verdict}); "
            f"per repeat: {per}"
        )
    for name, t in tools.items():
        if t["filter_drops"]:
            drops = ", ".join(f"{k} {v}" for k, v in sorted(t["filter_drops"].items(), key=lambda kv: -kv[1]))
            print(f"{name} filter drops: {drops}")
        if t["stage_seconds"]:
            print(
                f"{name} stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in t["stage_seconds"].items())
            )

    print(
        f"\nnear-duplicates on each tool's dedup input (positive: planted pair with Jaccard ≥ {SIMILARITY_THRESHOLD})"
    )
    print(
        f"{'tool':<10} {'input':>6} {'removed':>8} {'pairs+':>7} {'caught':>7} {'precision':>10} {'recall':>7} {'F1':>6}"
    )
    for name, t in tools.items():
        d = t["dedup"]
        print(
            f"{name:<10} {d['reached_dedup']:>6} {d['removed']:>8} {d['positive_pairs']:>7} {d['caught']:>7} "
            f"{d['precision']:>10.3f} {d['recall']:>7.3f} {d['f1']:>6.3f}"
        )
    if "kiban" in tools:
        d = tools["kiban"]["dedup"]
        f1_ok = "datatrove" not in tools or d["f1"] >= tools["datatrove"]["dedup"]["f1"]
        ok = d["precision"] >= TARGETS["precision"] and d["recall"] >= TARGETS["recall"] and f1_ok
        print(
            f"kiban target (precision ≥ {TARGETS['precision']}, recall ≥ {TARGETS['recall']}, "
            f"F1 ≥ datatrove's): {'met' if ok else 'NOT met'}"
        )

    print("\nfraction of planted pairs caught, by true Jaccard (pairs whose both members reached dedup)")
    names = list(tools)
    print(f"{'bin':<8} " + " ".join(f"{n + ' (n)':>18}" for n in names))
    for b in [name for name, _, _ in BINS] + ["exact"]:
        cells = []
        for n in names:
            x = tools[n]["dedup"]["bins"][b]
            frac = "-" if x["caught"] is None else f"{x['caught']:.2f}"
            cells.append(f"{frac:>11} ({x['pairs']:>4})")
        print(f"{b:<8} " + " ".join(f"{cell:>18}" for cell in cells))
    for name, t in tools.items():
        print(f"{name}: removed documents outside any planted pair: {t['dedup']['removed_outside_pairs']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=3000, help="documents in the corpus (originals + planted)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for each tool")
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool; the order alternates")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed")
    ap.add_argument("--tools", default="datatrove,kiban", help="comma-separated subset of datatrove,kiban")
    ap.add_argument(
        "--kiban-config", type=Path, default=None, help="curate.yaml for kiban (default: its defaults)"
    )
    ap.add_argument(
        "--kiban-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to kiban as --set (repeatable)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = ap.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if unknown := set(tools) - {"datatrove", "kiban"}:
        ap.error(f"--tools: unknown {sorted(unknown)}")

    corpus = build_corpus(WORK / "corpus", docs=args.docs, seed=args.seed, shards=args.workers)
    labels = json.loads(Path(corpus.labels_path).read_text())
    python = ensure_datatrove_venv() if "datatrove" in tools else None

    runs: dict[str, list[ToolRun]] = {t: [] for t in tools}
    for i in range(args.repeats):
        for tool in tools if i % 2 == 0 else tools[::-1]:
            if tool == "datatrove":
                assert python is not None
                run = run_datatrove(python, corpus, args.workers)
            else:
                run = run_kiban(corpus, args.workers, args.kiban_config, args.kiban_set)
            runs[tool].append(run)
            if not args.json:
                print(
                    f"[{i + 1}/{args.repeats}] {tool}: {run.seconds:.1f} s, {run.docs_per_s:.1f} docs/s",
                    file=sys.stderr,
                )
    scores = {tool: score_dedup(rs[-1], labels) for tool, rs in runs.items()}
    result = report(corpus, runs, scores, args.workers)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
