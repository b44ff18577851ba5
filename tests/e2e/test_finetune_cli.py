"""`kiban finetune` and `kiban finetune merge` end to end through the CLI, on the tiny model and
instructions written from real Debian man pages (manpages-ja): the example config runs, bad lines
are quarantined by line, the held-out assistant loss falls, the adapter's lineage walks back, and the
merged checkpoint loads in transformers with the logits of base + adapter."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.conftest import ja_texts, run_kiban

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune-lora.yaml"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def man_instructions(pages: list[Path], n: int) -> list[dict]:
    """One question per man page, answered by its NAME line: "ls - ディレクトリの内容を…"."""
    out = []
    for text in ja_texts(pages, n * 2):
        lines = text.split("\n")
        if "名前" not in lines:
            continue
        name_line = lines[lines.index("名前") + 1]
        if " - " not in name_line:
            continue
        cmd, desc = name_line.split(" - ", 1)
        out.append(
            {
                "messages": [
                    {"role": "system", "content": "Debian のマニュアルに基づいて答えてください。"},
                    {"role": "user", "content": f"{cmd.strip()} コマンドは何をしますか？"},
                    {"role": "assistant", "content": desc.strip()[:60]},
                ]
            }
        )
        if len(out) == n:
            break
    return out


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory: pytest.TempPathFactory, manpages_ja: list[Path]) -> Path:
    rows = [json.dumps(r, ensure_ascii=False) for r in man_instructions(manpages_ja[:200], 40)]
    assert len(rows) >= 30
    rows.insert(2, '{"messages": [{"role": "user", "content": "壊れた行"')  # line 3: not JSON
    rows.insert(5, json.dumps({"messages": [{"role": "robot", "content": "x"}]}))  # line 6: bad role
    path = tmp_path_factory.mktemp("chat") / "train.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_example_config_lora_then_merge(tiny_model_dir: Path, chat_file: Path, tmp_path: Path) -> None:
    from transformers import LlamaForCausalLM

    from kiban.artifacts import read_manifest, walk_lineage
    from kiban.finetune import lora
    from kiban.model.hf import load_hf

    out = tmp_path / "sft"
    sets = [f"base={tiny_model_dir}", f"data.train={chat_file}", f"out_dir={out}", "batch.epochs=4"]
    proc = run_kiban("finetune", str(EXAMPLE), *[a for s in sets for a in ("--set", s)], "--json")
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    assert done["event"] == "done" and done["quarantined"] == 2
    assert done["eval_loss"] < done["init_eval_loss"] - 0.5, done  # the held-out answers got likelier
    q = [json.loads(x) for x in (out / "quarantine" / "train.jsonl.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in q] == [(3, "not_json"), (6, "bad_message")]
    assert "messages[0].role" in q[1]["detail"]

    m = read_manifest(out)
    assert m.kind == "adapter"
    assert [i["kind"] for i in m.inputs] == ["model", "chat-data"]
    assert m.licenses == {"CC-BY-4.0": done["train_examples"] + done["eval_examples"], "unknown": 1}
    assert not walk_lineage(out).problems()
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and cfg["lora_alpha"] == 16 and len(cfg["target_modules"]) == 7

    merged = tmp_path / "merged"
    run_kiban("finetune", "merge", str(out), "--out", str(merged))
    tokens = torch.tensor([[1, 40, 41, 300, 7, 99, 12, 260]])
    ours = load_hf(tiny_model_dir)
    lora.load_adapter(ours, out)
    hf = LlamaForCausalLM.from_pretrained(merged, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        assert (hf(input_ids=tokens).logits - ours.eval()(tokens)).abs().max().item() < 1e-4
    mm = read_manifest(merged)
    assert [i["kind"] for i in mm.inputs] == ["adapter", "model"] and mm.licenses == m.licenses
    assert run_kiban("lineage", str(merged)).returncode == 0


@pytest.mark.slow
def test_full_finetune_writes_a_checkpoint(tiny_model_dir: Path, chat_file: Path, tmp_path: Path) -> None:
    from transformers import LlamaForCausalLM

    from kiban.artifacts import read_manifest
    from kiban.finetune import load_finetune_config, run

    out = tmp_path / "full"
    cfg = load_finetune_config(
        EXAMPLE,
        [
            f"base={tiny_model_dir}",
            f"data.train={chat_file}",
            f"out_dir={out}",
            "method=full",
            "optim.lr=0.001",
        ],
    )
    stats = run(cfg)
    assert stats["trainable_params"] == stats["total_params"]
    assert stats["eval_loss"] < stats["init_eval_loss"]
    assert read_manifest(out).kind == "checkpoint"
    LlamaForCausalLM.from_pretrained(out)  # loads unchanged
    again = run(cfg)  # a finished run of the same config does nothing
    assert again["already_complete"] is True


def test_bad_config_and_data_are_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = run_kiban("finetune", str(EXAMPLE), "--set", "lora.target_modules=[lm_head]", check=False)
    assert bad.returncode == 2 and "lora.target_modules: 'lm_head'" in bad.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("not json\n", encoding="utf-8")
    proc = run_kiban(
        "finetune",
        str(EXAMPLE),
        "--set",
        f"base={tiny_model_dir}",
        "--set",
        f"data.train={empty}",
        "--set",
        f"out_dir={tmp_path / 'o'}",
        check=False,
    )
    assert proc.returncode == 2 and "no usable conversation (1 quarantined" in proc.stderr
