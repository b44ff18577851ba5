"""The model alone: parameter counts, loss, backward, meta-device init, the torch-free package import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from kiban.model.config import ModelConfig, preset
from kiban.model.llama import Llama, num_params


@pytest.mark.parametrize("name", ["tiny", "xs"])
@pytest.mark.parametrize("tied", [True, False])
def test_param_count_equals_config(name: str, tied: bool) -> None:
    cfg = preset(name, tie_embeddings=tied)
    model = Llama(cfg)
    assert num_params(model) == cfg.n_params()["total"]
    assert (model.lm_head.weight is model.embed_tokens.weight) == tied


def test_state_dict_names_are_hf_names_without_prefix() -> None:
    names = set(Llama(preset("tiny", n_layers=1, tie_embeddings=False)).state_dict())
    assert names == {
        "embed_tokens.weight",
        "layers.0.input_layernorm.weight",
        "layers.0.self_attn.q_proj.weight",
        "layers.0.self_attn.k_proj.weight",
        "layers.0.self_attn.v_proj.weight",
        "layers.0.self_attn.o_proj.weight",
        "layers.0.post_attention_layernorm.weight",
        "layers.0.mlp.gate_proj.weight",
        "layers.0.mlp.up_proj.weight",
        "layers.0.mlp.down_proj.weight",
        "norm.weight",
        "lm_head.weight",
    }


def test_loss_is_cross_entropy_of_logits_ignoring_minus_100() -> None:
    torch.manual_seed(0)
    model = Llama(preset("tiny"))
    tokens = torch.randint(0, 512, (2, 12))
    targets = torch.randint(0, 512, (2, 12))
    targets[0, :5] = -100
    logits, loss = model(tokens, targets)
    assert logits.shape == (2, 12, 512)
    expected = F.cross_entropy(logits.reshape(-1, 512), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, expected)
    assert torch.equal(model(tokens), logits)


def test_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = Llama(preset("tiny", tie_embeddings=False))
    tokens = torch.randint(0, 512, (2, 16))
    _, loss = model(tokens, tokens.roll(-1, dims=1))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_init_scales_residual_projections() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=256, dim=256, n_layers=8, n_heads=4, n_kv_heads=2, ffn_hidden=512)
    model = Llama(cfg)
    assert model.layers[0].self_attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.layers[0].mlp.down_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert torch.equal(model.norm.weight, torch.ones(256))


def test_causal_later_tokens_do_not_change_earlier_logits() -> None:
    torch.manual_seed(0)
    model = Llama(preset("tiny"))
    tokens = torch.randint(0, 512, (1, 10))
    changed = tokens.clone()
    changed[0, 7:] = (changed[0, 7:] + 1) % 512
    torch.testing.assert_close(model(tokens)[:, :7], model(changed)[:, :7])


def test_too_long_sequence_is_refused() -> None:
    model = Llama(preset("tiny", max_seq_len=8))
    with pytest.raises(ValueError, match="max_seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_meta_device_build_then_to_empty_and_init() -> None:
    """How FSDP2 builds large models: shapes on meta, storage later, then init_weights()."""
    cfg = preset("tiny")
    with torch.device("meta"):
        model = Llama(cfg)
    model.to_empty(device="cpu")
    model.init_weights()
    reference = Llama(cfg)
    torch.testing.assert_close(model.rope_cos, reference.rope_cos)
    assert model.lm_head.weight is model.embed_tokens.weight
    assert torch.isfinite(model(torch.zeros(1, 4, dtype=torch.long))).all()


def test_package_import_does_not_import_torch() -> None:
    code = "import sys, kiban.model; kiban.model.preset('tiny'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_training_loss_without_logits_matches_the_plain_one() -> None:
    # the chunked, fused output projection + cross-entropy gives the same loss and gradients
    import torch

    from kiban.model.config import preset
    from kiban.model.llama import Llama

    for tied in (True, False):
        torch.manual_seed(0)
        m = Llama(preset("tiny", tie_embeddings=tied))
        x, y = torch.randint(0, 512, (3, 40)), torch.randint(0, 512, (3, 40))
        y[0, :5] = -100
        _, plain = m(x, y)
        plain.backward()
        g_plain = {n: p.grad.clone() for n, p in m.named_parameters()}
        m.zero_grad()
        logits, fused = m(x, y, return_logits=False)
        fused.backward()
        assert logits is None
        assert torch.allclose(plain, fused, atol=1e-6)
        for n, p in m.named_parameters():
            assert torch.allclose(g_plain[n], p.grad, atol=1e-6), n
        with torch.no_grad():
            assert torch.allclose(m(x, y, return_logits=False)[1], plain, atol=1e-6)
