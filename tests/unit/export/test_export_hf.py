"""`kiban export --format hf`: a clean directory that transformers loads to the same logits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from kiban.errors import ConfigError, DataError
from kiban.export.hf import export_hf
from kiban.model.hf import load_hf
from kiban.serve.integrity import verify_model


def test_clean_directory_with_lineage_and_same_logits(trained_tiny_model_dir: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    src = tmp_path / "ckpt"
    shutil.copytree(trained_tiny_model_dir, src)
    (src / "training_state").mkdir()
    (src / "training_state" / "state.json").write_text("{}")
    (src / "metrics.jsonl").write_text("{}\n")
    out = export_hf(src, tmp_path / "hf", dtype="float32")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "generation_config.json",
        "manifest.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "model" and manifest["licenses"] == {"LicenseRef-JM": 60, "GPL-3+": 40}
    assert manifest["inputs"][0]["kind"] == "checkpoint"
    assert "LicenseRef-JM: 60" in (out / "README.md").read_text()
    assert verify_model(out).verified  # what `kiban serve` checks before loading

    ids = torch.tensor([[1, 300, 301, 502, 77, 9]])
    want = load_hf(src)(ids)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, want, atol=1e-4)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok("日本語の文書").input_ids == tok.backend_tokenizer.encode("日本語の文書").ids


def test_bf16_and_refusals(trained_tiny_model_dir: Path, tmp_path: Path) -> None:
    out = export_hf(trained_tiny_model_dir, tmp_path / "bf16", dtype="bfloat16")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert load_hf(out, dtype=None).embed_tokens.weight.dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="not empty"):
        export_hf(trained_tiny_model_dir, out)
    with pytest.raises(ConfigError, match="--dtype"):
        export_hf(trained_tiny_model_dir, tmp_path / "x", dtype="int8")
    with pytest.raises(DataError, match="config.json"):
        export_hf(tmp_path / "x", tmp_path / "y")
