"""Parity with transformers' LlamaForCausalLM, both ways, on a shrunk config (2 layers × 64 dims, GQA)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from safetensors.torch import load_file

from kiban.errors import ConfigError, DataError
from kiban.model.config import ModelConfig, RopeScaling
from kiban.model.hf import config_from_hf, config_to_hf, load_hf, save_hf
from kiban.model.llama import Llama

transformers = pytest.importorskip("transformers")

ATOL = 1e-4


def shrunk(tied: bool, rope_scaling: RopeScaling | None = None) -> ModelConfig:
    return ModelConfig(
        vocab_size=96,
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,  # grouped-query: two query heads per key/value head
        ffn_hidden=160,
        max_seq_len=64,
        rope_theta=30_000.0,  # not the default, so a dropped field shows
        norm_eps=1e-5,
        tie_embeddings=tied,
        rope_scaling=rope_scaling,
    )


def randomized(cfg: ModelConfig, seed: int = 0) -> Llama:
    """A kiban model whose every weight, norms included, is random (ones would hide a mix-up)."""
    torch.manual_seed(seed)
    model = Llama(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5 if p.ndim == 1 else 0.05)
    return model.eval()


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 96, (2, 40), generator=torch.Generator().manual_seed(seed))  # (B, T)


def hf_llama_config(tied: bool, **extra: Any) -> Any:
    return transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_theta=30_000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        **extra,
    )


def hf_logits(directory: Path, x: torch.Tensor) -> torch.Tensor:
    hf = transformers.LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return hf(x).logits


# ---------------------------------------------------------------------------------------------
# kiban -> transformers


@pytest.mark.parametrize("tied", [True, False])
def test_kiban_checkpoint_loads_in_transformers_with_equal_logits(tmp_path: Path, tied: bool) -> None:
    model = randomized(shrunk(tied))
    save_hf(model, tmp_path, bos_token_id=1, eos_token_id=2)
    x = tokens()
    with torch.no_grad():
        ours = model(x)
    torch.testing.assert_close(hf_logits(tmp_path, x), ours, atol=ATOL, rtol=0)

    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["rope_theta"] == 30_000.0
    assert cfg["tie_word_embeddings"] is tied and cfg["torch_dtype"] == "float32"
    assert json.loads((tmp_path / "generation_config.json").read_text()) == {
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    stored = load_file(tmp_path / "model.safetensors")
    assert ("lm_head.weight" in stored) is not tied  # tied weights are stored once
    assert "model.layers.1.self_attn.k_proj.weight" in stored


def test_llama3_rope_scaling_matches_transformers(tmp_path: Path) -> None:
    scaling = RopeScaling(factor=4.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=16)
    model = randomized(shrunk(False, scaling))
    save_hf(model, tmp_path)
    x = tokens()
    with torch.no_grad():
        ours = model(x)
    torch.testing.assert_close(hf_logits(tmp_path, x), ours, atol=ATOL, rtol=0)
    assert load_hf(tmp_path).cfg.rope_scaling == scaling
    # and the scaling matters: without it, logits differ
    plain = Llama(shrunk(False))
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (plain.eval()(x) - ours).abs().max() > 1e-3


def test_bfloat16_export_round_trips(tmp_path: Path) -> None:
    model = randomized(shrunk(True))
    save_hf(model, tmp_path, dtype=torch.bfloat16)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded = load_hf(tmp_path, dtype=None)
    assert loaded.embed_tokens.weight.dtype == torch.bfloat16
    torch.testing.assert_close(loaded.embed_tokens.weight, model.embed_tokens.weight.to(torch.bfloat16))


def test_save_keeps_other_files_in_the_directory(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    save_hf(randomized(shrunk(True)), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ]


# ---------------------------------------------------------------------------------------------
# transformers -> kiban


@pytest.mark.parametrize(("tied", "shard"), [(True, None), (False, None), (False, "40KB")])
def test_transformers_checkpoint_loads_in_kiban_with_equal_logits(
    tmp_path: Path, tied: bool, shard: str | None
) -> None:
    torch.manual_seed(2)
    hf = transformers.LlamaForCausalLM(hf_llama_config(tied)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.5 if p.ndim == 1 else 0.05)
    hf.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    if shard:
        assert (tmp_path / "model.safetensors.index.json").is_file()
        assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model = load_hf(tmp_path)
    assert model.cfg == shrunk(tied)
    x = tokens()
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(x).logits, atol=ATOL, rtol=0)


def test_missing_weight_is_named(tmp_path: Path) -> None:
    save_hf(randomized(shrunk(False)), tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    del stored["model.layers.1.mlp.up_proj.weight"]
    from safetensors.torch import save_file

    save_file(stored, tmp_path / "model.safetensors")
    with pytest.raises(DataError, match=r"missing model\.layers\.1\.mlp\.up_proj\.weight"):
        load_hf(tmp_path)


def test_pickle_checkpoints_are_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config_to_hf(shrunk(True))))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(DataError, match="pytorch_model.bin"):
        load_hf(tmp_path)


# ---------------------------------------------------------------------------------------------
# config.json


def test_config_round_trip() -> None:
    for cfg in (shrunk(True), shrunk(False, RopeScaling(factor=32.0, original_max_seq_len=8192))):
        assert config_from_hf(config_to_hf(cfg)) == cfg


def test_transformers_5_rope_parameters_are_read() -> None:
    d = config_to_hf(shrunk(True))
    del d["rope_theta"], d["rope_scaling"]
    d["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}  # fmt: skip
    cfg = config_from_hf(d)
    assert cfg.rope_theta == 500000.0 and cfg.rope_scaling == RopeScaling()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"attention_bias": True}, "attention_bias"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"head_dim": 32}, "head_dim"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling"),
        ({"model_type": "qwen2"}, "model_type"),
        ({"num_key_value_heads": 3}, "n_kv_heads"),
    ],
)
def test_unsupported_configs_are_refused_by_field(change: dict[str, Any], field: str) -> None:
    d = {**config_to_hf(shrunk(True)), **change}
    with pytest.raises(ConfigError, match=field):
        config_from_hf(d, where="in/config.json")
