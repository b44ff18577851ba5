"""Domain adaptation, end to end: take a model, adapt it to one package's manuals, and measure it.

    .venv/bin/python examples/domain-adaptation/adapt.py                        # on `make demo`'s outputs
    .venv/bin/python examples/domain-adaptation/adapt.py --model out/demo/model \\
        --general-tokens out/demo/tokens --package aptitude-doc-ja --out out/domain

Copy this file and change the defaults: it only calls `kiban` commands (printed as it runs them)
and `kiban.finetune.heldout_loss`. The steps:

1. curate the domain documents (a Debian package the demo never trained on, by default aptitude's
   Japanese manual; or `--docs DIR`, any folder of your own documents) and tokenize them with the
   model's own tokenizer;
2. continue pre-training the model on them (`kiban train --init-from`), with a replay of the
   original token shards (`--replay`, 25 % of every batch) against forgetting;
3. write a small instruction set from the manuals (one question per page, answered by the page's
   opening sentences) and instruction-tune the continued model on it with LoRA
   (`kiban finetune examples/finetune-lora.yaml`), then fold the adapter in (`kiban finetune merge`);
4. report, for the base, continued and instruction-tuned models: the held-out domain loss (the last
   20 % of the manual's pages, never trained on), the general held-out loss (the demo's held-out
   tail: forgetting, measured), and the held-out instructions' answer loss.

Writes `OUT/report.json` and `OUT/report.md` (the table), next to each stage's artifact directory,
each with its manifest: `kiban lineage OUT/sft-merged` walks back to both corpora.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KIBAN = [sys.executable, "-m", "kiban.cli"]


def sh(*args: str) -> str:
    """Run one kiban command, printed first; its output goes through, the last line comes back."""
    print("$ kiban " + " ".join(args), flush=True)
    proc = subprocess.run(
        [*KIBAN, *args], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    sys.stderr.write(proc.stderr[-2000:])
    if proc.returncode != 0:
        sys.exit(f"kiban {args[0]} failed ({proc.returncode}): {proc.stdout[-2000:]}")
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "", flush=True)
    return proc.stdout


def instructions(corpus: Path, topic: str, *, max_answer_chars: int = 120) -> list[dict]:
    """One conversation per document: "what does the page <title> say?", answered by its first
    sentences that read as prose (navigation lines and headings skipped)."""
    import pyarrow.parquet as pq

    rows = []
    for part in sorted(corpus.glob("part-*.parquet")):
        rows += pq.read_table(part, columns=["id", "text"]).to_pylist()
    out = []
    for row in sorted(rows, key=lambda r: r["id"]):
        lines = [x.strip() for x in row["text"].split("\n") if x.strip()]
        if not lines:
            continue
        title = lines[0][:60]
        prose = [x for x in lines[1:] if "。" in x and len(x) >= 30]
        if not prose:
            continue
        sentences = re.findall(r"[^。]*。", prose[0])
        answer = ""
        for s in sentences:
            if len(answer) + len(s) > max_answer_chars and answer:
                break
            answer += s
        if len(answer) < 10:
            continue
        out.append(
            {
                "messages": [
                    {
                        "role": "system",
                        "content": f"{topic}のマニュアルに基づいて、日本語で簡潔に答えてください。",
                    },
                    {
                        "role": "user",
                        "content": f"{topic}のマニュアルの「{title}」には何と書かれていますか？",
                    },
                    {"role": "assistant", "content": answer.strip()},
                ]
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model", type=Path, default=ROOT / "out/demo/model", help="the base model (kiban or HF Llama dir)"
    )
    ap.add_argument(
        "--general-tokens",
        type=Path,
        default=ROOT / "out/demo/tokens",
        help="token shards of the model's original data (replayed; their held-out tail is 'general')",
    )
    ap.add_argument(
        "--general-eval-fraction", type=float, default=0.02, help="the base run's data.eval_fraction"
    )
    ap.add_argument("--package", default="aptitude-doc-ja", help="a Debian package of Japanese manuals")
    ap.add_argument(
        "--docs", type=Path, default=None, help="a folder of your own documents instead of --package"
    )
    ap.add_argument(
        "--topic", default=None, help="what the manuals are about, for the questions (default: the package)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "out/domain")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--cpt-steps", type=int, default=60, help="continual pre-training steps")
    ap.add_argument("--sft-epochs", type=int, default=4, help="instruction-tuning epochs")
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument(
        "--answer-chars", type=int, default=120, help="longest answer written into the instruction set"
    )
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    topic = args.topic or (
        args.docs.name if args.docs else args.package.removesuffix("-doc-ja").removesuffix("-ja")
    )
    domain_fraction = 0.2

    # 1. the domain corpus, tokenized with the model's own tokenizer
    if args.docs is not None:
        sh("curate", str(args.docs), "--out", str(out / "corpus"), "--overwrite")
    else:
        subprocess.run(["bash", str(ROOT / "scripts/install-debian-docs.sh"), args.package], check=False)
        sh(
            "curate",
            f"debian:{args.package}",
            "--out",
            str(out / "corpus"),
            "--config",
            str(ROOT / "examples/curate-technical-docs.yaml"),
            "--overwrite",
        )
    sh(
        "tokenize",
        str(out / "corpus"),
        "--tokenizer",
        str(args.model),
        "--out",
        str(out / "tokens"),
        "--overwrite",
    )

    # 2. continual pre-training with replay of the original data
    sh(
        "train",
        str(ROOT / "examples/train-xs.yaml"),
        "--init-from",
        str(args.model),
        "--replay",
        str(args.general_tokens),
        "--replay-ratio",
        "0.25",
        "--set",
        f"data.shards={out / 'tokens'}",
        "--set",
        f"data.eval_fraction={domain_fraction}",
        "--set",
        f"data.seq_len={args.seq_len}",
        "--set",
        f"out_dir={out / 'cpt'}",
        "--set",
        f"batch.max_steps={args.cpt_steps}",
        "--set",
        f"batch.micro_batch={args.micro_batch}",
        "--set",
        "batch.grad_accum=1",
        "--set",
        f"schedule.warmup_steps={max(1, args.cpt_steps // 10)}",
        "--set",
        "optim.lr=0.0003",
        "--set",
        f"threads={args.threads}",
        "--set",
        "checkpoint_every=0",
        "--set",
        f"eval_every={args.cpt_steps}",
        "--set",
        f"eval_batches={args.eval_batches}",
    )

    # 3. an instruction set from the manuals, LoRA on the continued model, merged
    chat = instructions(out / "corpus", topic, max_answer_chars=args.answer_chars)
    random.Random(0).shuffle(chat)
    n_eval = max(1, len(chat) // 5)
    (out / "instructions").mkdir(exist_ok=True)
    for name, part in (("eval.jsonl", chat[:n_eval]), ("train.jsonl", chat[n_eval:])):
        text = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in part)
        (out / "instructions" / name).write_text(text, encoding="utf-8")
    print(f"instructions: {len(chat) - n_eval} to train on, {n_eval} held out → {out / 'instructions'}/")
    license_ = json.loads((out / "corpus" / "manifest.json").read_text())["licenses"]
    sh(
        "finetune",
        str(ROOT / "examples/finetune-lora.yaml"),
        "--set",
        f"base={out / 'cpt'}",
        "--set",
        f"data.train={out / 'instructions/train.jsonl'}",
        "--set",
        f"data.eval={out / 'instructions/eval.jsonl'}",
        "--set",
        f"data.seq_len={args.seq_len}",
        "--set",
        f"data.license={max(license_, key=license_.get) if license_ else 'unknown'}",
        "--set",
        f"batch.epochs={args.sft_epochs}",
        "--set",
        f"out_dir={out / 'sft'}",
        "--set",
        f"threads={args.threads}",
    )
    sh("finetune", "merge", str(out / "sft"), "--out", str(out / "sft-merged"))

    # 4. the report: domain and general held-out loss, before and after each stage
    from kiban.finetune import heldout_loss

    def losses(model: Path) -> dict[str, float]:
        kw = {"seq_len": args.seq_len, "batches": args.eval_batches, "micro_batch": args.micro_batch}
        return {
            "domain_loss": heldout_loss(model, out / "tokens", eval_fraction=domain_fraction, **kw),
            "general_loss": heldout_loss(
                model, args.general_tokens, eval_fraction=args.general_eval_fraction, **kw
            ),
        }

    sft = json.loads((out / "sft" / "manifest.json").read_text())["stats"]
    rows = {
        "base": {**losses(args.model), "instruction_loss": None},
        "continued (kiban train --init-from)": {
            **losses(out / "cpt"),
            "instruction_loss": sft["init_eval_loss"],
        },
        "+ LoRA instructions (merged)": {**losses(out / "sft-merged"), "instruction_loss": sft["eval_loss"]},
    }
    report = {
        "model": str(args.model),
        "domain": args.docs and str(args.docs) or f"debian:{args.package}",
        "held_out": {
            "domain": f"last {domain_fraction:.0%} of the domain's documents",
            "general": f"last {args.general_eval_fraction:.0%} of {args.general_tokens}'s documents",
            "instructions": f"{n_eval} held-out questions (loss on the answer tokens)",
        },
        "rows": rows,
    }
    (out / "report.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    lines = [
        "| model | domain held-out loss | general held-out loss | held-out instruction loss |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        il = "" if r["instruction_loss"] is None else f"{r['instruction_loss']:.3f}"
        lines.append(f"| {name} | {r['domain_loss']:.3f} | {r['general_loss']:.3f} | {il} |")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"report: {out / 'report.json'}; lineage: kiban lineage {out / 'sft-merged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
