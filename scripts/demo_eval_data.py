"""Write the demo's evaluation data from text the demo model never trained on.

    python scripts/demo_eval_data.py MODEL_DIR TOKENS_DIR OUT_DIR

The documents `kiban train` held out (the last `data.eval_fraction` of each token shard, read from
the model's manifest) are decoded back to text and written as

    OUT_DIR/heldout.jsonl        {"text": ...} per document            → task text:heldout.jsonl
    OUT_DIR/JGLUE/datasets/jcommonsenseqa-v1.3/{valid,train}-v1.3.json  → task jcommonsenseqa

The multiple-choice file is a continuation cloze in JCommonsenseQA's published format: the question
is the first half of a held-out line, the right choice its second half, the four others second halves
of other lines. A model that learned Japanese (and these manuals) picks the right one more often
than chance (20%).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from tokenizers import Tokenizer

from kiban.artifacts import read_manifest
from kiban.tokenizer.shards import TokenShards
from kiban.train.data import split_heldout


def heldout_documents(model_dir: Path, tokens_dir: Path) -> list[str]:
    fraction = float(read_manifest(model_dir).config["data"]["eval_fraction"])
    shards = TokenShards.open(tokens_dir)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    _, held = split_heldout(shards, fraction)
    docs = []
    for seg in held:
        starts = [int(s) for s in shards.documents(seg.shard) if seg.start <= int(s) < seg.end] + [seg.end]
        tokens = shards.shard(seg.shard)
        for a, b in zip(starts, starts[1:], strict=False):
            text = tok.decode([int(t) for t in tokens[a:b]], skip_special_tokens=True).strip()
            if text:
                docs.append(text)
    return docs


def cloze_items(docs: list[str], *, n: int, seed: int = 0) -> list[dict]:
    lines = [ln.strip() for d in docs for ln in d.splitlines()]
    lines = sorted({ln for ln in lines if 16 <= len(ln) <= 80})
    rng = random.Random(seed)
    rng.shuffle(lines)
    items = []
    for i, line in enumerate(lines[:n]):
        cut = len(line) // 2
        others = [ln[len(ln) // 2 :] for ln in rng.sample(lines, 8) if ln != line][:4]
        if len(others) < 4:
            continue
        choices = [line[cut:], *others]
        rng.shuffle(choices)
        item = {"q_id": i, "question": line[:cut]} | {f"choice{j}": c for j, c in enumerate(choices)}
        items.append(item | {"label": choices.index(line[cut:])})
    return items


def main() -> None:
    model_dir, tokens_dir, out = (Path(a) for a in sys.argv[1:4])
    docs = heldout_documents(model_dir, tokens_dir)
    if not docs:
        raise SystemExit("no held-out documents: train with data.eval_fraction > 0")
    out.mkdir(parents=True, exist_ok=True)
    with (out / "heldout.jsonl").open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    items = cloze_items(docs, n=120)
    jc = out / "JGLUE" / "datasets" / "jcommonsenseqa-v1.3"
    jc.mkdir(parents=True, exist_ok=True)
    for name, part in (("valid-v1.3.json", items[:100]), ("train-v1.3.json", items[100:])):
        with (jc / name).open("w", encoding="utf-8") as f:
            for item in part:
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"{len(docs)} held-out documents, {len(items)} cloze items → {out}")


if __name__ == "__main__":
    main()
