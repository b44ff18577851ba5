"""LoRA adapters: kiban's saved adapter loads in PEFT with the same logits (1e-4), PEFT's loads in
kiban, `merge` gives a checkpoint transformers loads with the same logits, and only A and B train."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from kiban.errors import DataError
from kiban.finetune import lora
from kiban.model.hf import load_hf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TOKENS = torch.tensor([[1, 40, 41, 300, 7, 99, 12, 260, 5, 77, 78, 79]])


def _adapted(base: Path, *, seed: int = 0, targets: list[str] | None = None) -> torch.nn.Module:
    """The base model with a LoRA whose B is random too (a fresh adapter's B is zero: a no-op)."""
    model = load_hf(base)
    torch.manual_seed(seed)
    lora.inject(model, rank=4, alpha=8.0, dropout=0.0, targets=targets or list(lora_targets()))
    with torch.no_grad():
        for m in lora.lora_layers(model).values():
            m.lora_B.normal_(0, 0.05)
    return model.eval()


def lora_targets() -> tuple[str, ...]:
    from kiban.finetune.config import LORA_TARGETS

    return LORA_TARGETS


def _save(model: torch.nn.Module, out: Path, base: Path, targets: list[str] | None = None) -> Path:
    cfg = lora.adapter_config(
        rank=4, alpha=8.0, dropout=0.0, targets=targets or list(lora_targets()), base=str(base)
    )
    lora.save_adapter(model, out, cfg)
    return out


def test_kiban_adapter_loads_in_peft_with_the_same_logits(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    model = _adapted(tiny_model_dir)
    adapter = _save(model, tmp_path / "adapter", tiny_model_dir)
    with torch.no_grad():
        ours = model(TOKENS)
    hf = LlamaForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(hf, str(adapter)).eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=TOKENS).logits
    assert (ours - theirs).abs().max().item() < 1e-4
    # and the adapter really changes the function (the comparison is not between two base models)
    with torch.no_grad():
        plain = load_hf(tiny_model_dir)(TOKENS)
    assert (ours - plain).abs().max().item() > 1e-3


def test_peft_adapter_loads_in_kiban_and_merges(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from kiban.finetune.merge import merge_adapter

    hf = LlamaForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float32)
    peft_model = get_peft_model(
        hf, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    peft_model.save_pretrained(str(tmp_path / "peft"))
    with torch.no_grad():
        theirs = peft_model.eval()(input_ids=TOKENS).logits

    model = load_hf(tiny_model_dir)
    cfg = lora.load_adapter(model, tmp_path / "peft")
    assert sorted(cfg["target_modules"]) == ["down_proj", "q_proj", "v_proj"]
    with torch.no_grad():
        assert (model.eval()(TOKENS) - theirs).abs().max().item() < 1e-4

    stats = merge_adapter(tmp_path / "peft", tmp_path / "merged", base=tiny_model_dir)
    assert stats["merged_layers"] == 3 * 2  # 3 targets × 2 layers
    merged = LlamaForCausalLM.from_pretrained(tmp_path / "merged", torch_dtype=torch.float32).eval()
    with torch.no_grad():
        assert (merged(input_ids=TOKENS).logits - theirs).abs().max().item() < 1e-4
    assert "lora" not in json.dumps(list(json.loads((tmp_path / "merged" / "config.json").read_text())))


def test_fresh_adapter_is_a_no_op_and_only_lora_trains(tiny_model_dir: Path) -> None:
    model = load_hf(tiny_model_dir)
    with torch.no_grad():
        before = model(TOKENS)
    names = lora.inject(model, rank=2, alpha=4.0, dropout=0.0, targets=["q_proj", "o_proj"])
    assert names == [f"layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "o_proj")]
    with torch.no_grad():
        assert torch.equal(model(TOKENS), before)  # B = 0 at init: the base model's function
    _, loss = model(TOKENS[:, :-1], TOKENS[:, 1:])
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(".lora_A" in n or ".lora_B" in n for n in grads)
    assert lora.trainable(model) == 4 * (2 * 64 + 64 * 2)  # 4 layers × ((r × in) + (out × r)); in = out = 64


def test_adapter_for_another_shape_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _adapted(tiny_model_dir, targets=["q_proj"])
    adapter = _save(model, tmp_path / "a", tiny_model_dir, targets=["q_proj"])
    cfg = json.loads((adapter / lora.ADAPTER_CONFIG).read_text())
    cfg["target_modules"] = ["q_proj", "k_proj"]
    (adapter / lora.ADAPTER_CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="missing .*k_proj"):
        lora.load_adapter(load_hf(tiny_model_dir), adapter)
    shutil.rmtree(adapter)
    with pytest.raises(DataError, match="adapter_config.json: not found"):
        lora.load_adapter(load_hf(tiny_model_dir), adapter)
