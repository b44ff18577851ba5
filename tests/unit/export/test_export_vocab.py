"""The tokenizer conversion (kiban BPE → llama.cpp SPM) and the RoPE row reordering, without llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models

from kiban.errors import DataError
from kiban.export.gguf import gguf_name, halves_to_pairs
from kiban.export.vocab import BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, spm_vocab
from kiban.model.config import ModelConfig
from kiban.model.llama import rope_cos_sin


def test_vocab_of_a_trained_tokenizer(trained_tiny_model_dir: Path) -> None:
    text = (trained_tiny_model_dir / "tokenizer.json").read_text(encoding="utf-8")
    tok = Tokenizer.from_str(text)
    v = spm_vocab(text, vocab_size=1024)  # padded past the tokenizer's 1000 ids
    assert len(v.tokens) == len(v.scores) == len(v.types) == 1024
    assert [v.tokens[i] for i in range(1000)] == [tok.id_to_token(i) for i in range(1000)]
    assert v.types[:4] == [UNKNOWN, CONTROL, CONTROL, CONTROL]
    assert v.types[4:260] == [BYTE] * 256 and v.tokens[4 + 0xE3] == "<0xE3>"
    assert v.types[1000:] == [UNUSED] * 24 and v.tokens[1000] == "[PAD1000]"
    assert (v.bos_id, v.eos_id, v.unk_id, v.pad_id, v.add_bos) == (1, 2, 0, 3, True)
    # the score orders merged tokens by the rank of the merge that makes them
    merges = json.loads(text)["model"]["merges"]
    first, tenth = ("".join(m if isinstance(m, list) else m.split(" ")) for m in (merges[0], merges[9]))
    assert v.scores[tok.token_to_id(first)] == 0.0 > v.scores[tok.token_to_id(tenth)] == -9.0
    assert v.types[tok.token_to_id(first)] == NORMAL


def test_a_token_no_merge_makes_is_refused_by_name(tiny_model_dir: Path) -> None:
    # conftest's hand-built tokenizer has "ます" (and "ま", "す") but no merges: llama.cpp would join them
    text = (tiny_model_dir / "tokenizer.json").read_text(encoding="utf-8")
    with pytest.raises(DataError, match="ます"):
        spm_vocab(text)


def test_other_tokenizers_are_refused_naming_the_field(trained_tiny_model_dir: Path) -> None:
    unigram = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], unk_id=0, byte_fallback=True))
    with pytest.raises(DataError, match="field 'model'"):
        spm_vocab(unigram.to_str())
    tok = json.loads((trained_tiny_model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tok["pre_tokenizer"] = {"type": "Whitespace"}
    with pytest.raises(DataError, match="field 'pre_tokenizer'"):
        spm_vocab(json.dumps(tok))
    tok["pre_tokenizer"], tok["normalizer"] = None, {"type": "NFKC"}
    with pytest.raises(DataError, match="field 'normalizer'"):
        spm_vocab(json.dumps(tok))
    with pytest.raises(DataError, match="vocab_size is 10"):
        spm_vocab((trained_tiny_model_dir / "tokenizer.json").read_text(encoding="utf-8"), vocab_size=10)


def _rotate_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def _rotate_pairs(x: torch.Tensor, theta: float) -> torch.Tensor:
    """llama.cpp's LLAMA_ROPE_TYPE_NORM: pair (2i, 2i+1) rotated by pos * theta^(-2i/d)."""
    T, d = x.shape
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freqs  # (T, d/2)
    a, b = x[:, 0::2].double(), x[:, 1::2].double()
    out = torch.empty(T, d, dtype=torch.float64)
    out[:, 0::2] = a * ang.cos() - b * ang.sin()
    out[:, 1::2] = a * ang.sin() + b * ang.cos()
    return out


def test_reordered_rows_give_the_same_attention_scores_under_llama_cpp_rope() -> None:
    cfg = ModelConfig(vocab_size=8, dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden=8, max_seq_len=12)
    g = torch.Generator().manual_seed(0)
    wq = torch.randn(32, 32, generator=g, dtype=torch.float64)  # (n_heads * hd, dim)
    wk = torch.randn(16, 32, generator=g, dtype=torch.float64)  # (n_kv * hd, dim)
    x = torch.randn(12, 32, generator=g, dtype=torch.float64)  # (T, dim)
    cos, sin = (t.double() for t in rope_cos_sin(cfg))
    wq2 = torch.from_numpy(halves_to_pairs(wq.numpy(), n_heads=2))
    wk2 = torch.from_numpy(halves_to_pairs(wk.numpy(), n_heads=1))
    k = _rotate_half(x @ wk.T, cos, sin)  # kiban: (T, 16)
    k2 = _rotate_pairs(x @ wk2.T, cfg.rope_theta)  # llama.cpp
    for h in range(2):
        q = _rotate_half(x @ wq.T[:, 16 * h : 16 * h + 16], cos, sin)
        q2 = _rotate_pairs(x @ wq2.T[:, 16 * h : 16 * h + 16], cfg.rope_theta)
        assert torch.allclose(q @ k.T, q2 @ k2.T, atol=1e-9)
    # and the reordering is a real change (without it the scores differ)
    q_wrong = _rotate_pairs(x @ wq.T[:, :16], cfg.rope_theta)
    assert not torch.allclose(
        q_wrong @ _rotate_pairs(x @ wk.T, cfg.rope_theta).T, (_rotate_half(x @ wq.T[:, :16], cos, sin) @ k.T)
    )
    with pytest.raises(DataError, match="heads"):
        halves_to_pairs(np.zeros((6, 4)), n_heads=4)


def test_tensor_names() -> None:
    assert gguf_name("layers.0.self_attn.o_proj.weight") == "blk.0.attn_output.weight"
    assert gguf_name("layers.11.post_attention_layernorm.weight") == "blk.11.ffn_norm.weight"
    assert gguf_name("norm.weight") == "output_norm.weight" and gguf_name("lm_head.weight") == "output.weight"
    with pytest.raises(DataError, match="rotary"):
        gguf_name("layers.0.self_attn.rotary.weight")
