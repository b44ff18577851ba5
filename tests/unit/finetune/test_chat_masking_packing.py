"""Chat rendering and packing: the loss is taken on assistant turns only (prompt tokens contribute
exactly zero), and packed conversations do not see each other (same logits as alone in a row)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kiban.finetune.chat_data import ChatRenderer, load_examples, read_chat_jsonl
from kiban.finetune.packing import attention_mask, pack
from kiban.model.hf import load_hf
from kiban.model.llama import IGNORE_INDEX

CONVERSATIONS = [
    [
        {"role": "system", "content": "丁寧に答えてください。"},
        {"role": "user", "content": "ls とは？"},
        {"role": "assistant", "content": "ディレクトリの内容を表示します。"},
        {"role": "user", "content": "cp は？"},
        {"role": "assistant", "content": "ファイルをコピーします。"},
    ],
    [{"role": "user", "content": "日本語ですか"}, {"role": "assistant", "content": "はい、です。"}],
    [{"role": "user", "content": "abc"}, {"role": "assistant", "content": "def ghi"}],
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_only_assistant_turns_are_supervised(tiny_model_dir: Path, tmp_path: Path) -> None:
    renderer = ChatRenderer(tiny_model_dir)
    path = _write(
        tmp_path / "c.jsonl", [json.dumps({"messages": c}, ensure_ascii=False) for c in CONVERSATIONS]
    )
    examples, bad = load_examples(path, renderer, seq_len=256)
    assert not bad and len(examples) == 3
    ex = examples[0]
    supervised = [t for t, a in zip(ex.ids, ex.assistant, strict=True) if a]
    # exactly the assistant turns as the template closes them (" content</s>", twice), nothing else
    assert renderer.tokenizer.decode(supervised, skip_special_tokens=False).replace(" ", "") == (
        "ディレクトリの内容を表示します。</s>ファイルをコピーします。</s>"
    )
    prompt = [t for t, a in zip(ex.ids, ex.assistant, strict=True) if not a]
    assert "ls とは" in renderer.tokenizer.decode(prompt) and "表示" not in renderer.tokenizer.decode(prompt)


def test_prompt_tokens_contribute_zero_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    renderer = ChatRenderer(tiny_model_dir)
    path = _write(tmp_path / "c.jsonl", [json.dumps({"messages": CONVERSATIONS[0]}, ensure_ascii=False)])
    examples, _ = load_examples(path, renderer, seq_len=256)
    rows = pack(examples, seq_len=200, pad_id=3, pack=True, seed=0)
    model = load_hf(tiny_model_dir)
    logits = model(rows.tokens, position_ids=rows.positions, attn_mask=attention_mask(rows.docs))
    logits.retain_grad()
    loss = F.cross_entropy(logits.flatten(0, 1), rows.targets.flatten(), ignore_index=IGNORE_INDEX)
    loss.backward()
    prompt = rows.targets[0] == IGNORE_INDEX
    assert prompt.sum() > 20 and (~prompt).sum() == examples[0].supervised
    assert logits.grad[0][prompt].abs().max().item() == 0.0  # prompt positions: no gradient at all
    assert logits.grad[0][~prompt].abs().sum(-1).min().item() > 0  # every assistant position: some
    # and the fused training loss is the same number
    _, fused = model(
        rows.tokens,
        rows.targets,
        return_logits=False,
        position_ids=rows.positions,
        attn_mask=attention_mask(rows.docs),
    )
    assert abs(fused.item() - loss.item()) < 1e-5


def test_packed_conversations_do_not_see_each_other(tiny_model_dir: Path, tmp_path: Path) -> None:
    renderer = ChatRenderer(tiny_model_dir)
    path = _write(
        tmp_path / "c.jsonl", [json.dumps({"messages": c}, ensure_ascii=False) for c in CONVERSATIONS]
    )
    examples, _ = load_examples(path, renderer, seq_len=256)
    packed = pack(examples, seq_len=256, pad_id=3, pack=True, seed=0)
    assert len(packed) == 1 and set(packed.docs[0].tolist()) == {-1, 0, 1, 2}
    model = load_hf(tiny_model_dir)
    with torch.no_grad():
        together = model(packed.tokens, position_ids=packed.positions, attn_mask=attention_mask(packed.docs))[
            0
        ]
        for d in range(3):
            at = packed.docs[0] == d
            alone = model(packed.tokens[0][at][None])[0]  # the conversation alone, plain causal attention
            assert (together[at] - alone).abs().max().item() < 1e-5
        # without the mask the later conversations would read the earlier ones: the test can fail
        leaky = model(packed.tokens)[0]
        at = packed.docs[0] == 2
        assert (leaky[at] - model(packed.tokens[0][at][None])[0]).abs().max().item() > 1e-3
    unpacked = pack(examples, seq_len=256, pad_id=3, pack=False, seed=0)
    assert len(unpacked) == 3 and unpacked.supervised == packed.supervised


def test_malformed_lines_are_quarantined_with_line_numbers(tiny_model_dir: Path, tmp_path: Path) -> None:
    good = json.dumps({"messages": CONVERSATIONS[1]}, ensure_ascii=False)
    lines = [
        good,
        "",  # blank: skipped, not an error
        "[1, 2]",
        '{"messages": []}',
        json.dumps({"messages": [{"role": "user", "content": 5}]}),
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}),
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "system", "content": "s"},
                    {"role": "assistant", "content": "a"},
                ]
            }
        ),
        json.dumps(
            {"messages": [{"role": "user", "content": "長い" * 400}, {"role": "assistant", "content": "x"}]}
        ),
        "{oops",
        good,
    ]
    path = _write(tmp_path / "c.jsonl", lines)
    path.write_bytes(path.read_bytes() + b'{"messages": "\xff"}\n')
    parsed, _ = read_chat_jsonl(path)
    assert [n for n, _ in parsed] == [1, 7, 8, 10]
    examples, bad = load_examples(path, ChatRenderer(tiny_model_dir), seq_len=128)
    assert [e.line for e in examples] == [1, 10]
    assert [(q.line, q.reason) for q in bad] == [
        (3, "not_an_object"),
        (4, "no_messages"),
        (5, "bad_message"),
        (6, "no_assistant_turn"),
        (7, "template_refused"),  # the Llama-2 template takes a system message first only
        (8, "too_long"),
        (9, "not_json"),
        (11, "not_utf8"),
    ]


def test_a_model_without_chat_template_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from kiban.errors import DataError

    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    del cfg["chat_template"]
    (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="no chat_template"):
        ChatRenderer(copy)


def test_unpacked_rows_take_the_plain_causal_path_with_the_same_loss(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """One conversation per row: `_loss` skips the document mask, and the loss is unchanged."""
    from kiban.finetune.loop import _loss

    renderer = ChatRenderer(tiny_model_dir)
    path = _write(
        tmp_path / "c.jsonl", [json.dumps({"messages": c}, ensure_ascii=False) for c in CONVERSATIONS]
    )
    examples, _ = load_examples(path, renderer, seq_len=256)
    rows = pack(examples, seq_len=256, pad_id=3, pack=False, seed=0)
    assert int(rows.docs.max()) == 0 and int(rows.docs.min()) == -1  # one conversation, then padding
    model = load_hf(tiny_model_dir)
    with torch.no_grad():
        masked = model(
            rows.tokens,
            rows.targets,
            return_logits=False,
            position_ids=rows.positions,
            attn_mask=attention_mask(rows.docs),
        )[1]
        plain = _loss(model, rows, torch.device("cpu"))
    assert abs(masked.item() - plain.item()) < 1e-5
