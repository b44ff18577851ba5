"""examples/domain-adaptation/adapt.py, the code path a user copies, on tiny real data: a tiny model
pre-trained on 40 Japanese man pages is adapted to 25 others; the report has the domain, general and
instruction losses before and after, the domain loss falls, and the lineage walks back to both."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_kiban

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_domain_adaptation_example_on_tiny_data(
    ja_tree: Path, manpages_ja: list[Path], tmp_path: Path
) -> None:
    # the "demo": corpus, tokenizer, shards and a tiny model trained on them
    demo = tmp_path / "demo"
    run_kiban("curate", str(ja_tree), "--out", str(demo / "corpus"))
    run_kiban(
        "tokenizer", "train", str(demo / "corpus"), "--out", str(demo / "tokenizer"), "--vocab-size", "1000"
    )
    run_kiban(
        "tokenize",
        str(demo / "corpus"),
        "--tokenizer",
        str(demo / "tokenizer"),
        "--out",
        str(demo / "tokens"),
    )
    run_kiban(
        "train",
        str(ROOT / "examples/train-tiny.yaml"),
        "--set",
        f"data.shards={demo / 'tokens'}",
        "--set",
        f"out_dir={demo / 'model'}",
        "--set",
        "batch.max_steps=30",
        "--set",
        "model.overrides={max_seq_len: 256}",
    )
    # the domain: man pages the demo never saw
    docs = tmp_path / "manuals" / "man1"
    docs.mkdir(parents=True)
    for page in manpages_ja[60:140]:
        shutil.copy(page, docs / page.name)
    (docs.parent / "kiban-source.yaml").write_text(
        "source: jm-project\nlicense: LicenseRef-JM\n", encoding="utf-8"
    )

    spec = importlib.util.spec_from_file_location("adapt", ROOT / "examples/domain-adaptation/adapt.py")
    adapt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(adapt)
    out = tmp_path / "domain"
    rc = adapt.main(
        [
            "--model",
            str(demo / "model"),
            "--general-tokens",
            str(demo / "tokens"),
            "--general-eval-fraction",
            "0.1",
            "--docs",
            str(docs.parent),
            "--topic",
            "Linux",
            "--out",
            str(out),
            "--seq-len",
            "256",
            "--cpt-steps",
            "20",
            "--sft-epochs",
            "3",
            "--micro-batch",
            "4",
            "--threads",
            "1",
            "--eval-batches",
            "2",
            "--answer-chars",
            "40",
        ]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    base, cpt, sft = report["rows"].values()
    assert cpt["domain_loss"] < base["domain_loss"]  # adapted to the held-out domain pages
    assert all(isinstance(r["general_loss"], float) for r in (base, cpt, sft))  # forgetting is measured
    assert sft["instruction_loss"] < cpt["instruction_loss"]  # the held-out questions' answers got likelier
    assert "| + LoRA instructions (merged) |" in (out / "report.md").read_text()
    chat = (out / "instructions" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(chat) >= 6 and "Linuxのマニュアルの「" in json.loads(chat[0])["messages"][1]["content"]
    assert run_kiban("lineage", str(out / "sft-merged")).returncode == 0
    lineage = json.loads(run_kiban("lineage", str(out / "sft-merged"), "--json").stdout)
    text = json.dumps(lineage)
    assert str(demo / "corpus") in text and str(out / "corpus") in text  # both corpora, through base and cpt
