"""`kiban plan`: published parameter counts, and every FLOP and memory term against a hand computation."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from dataclasses import replace

import pytest

from kiban.errors import ConfigError
from kiban.model.config import preset
from kiban.train import plan as plan_module
from kiban.train.plan import DEVICES, GIB, check_fits, format_plan, load_model_config, plan

TINY = preset("tiny")  # vocab 512, dim 64, 2 layers, 4/2 heads, ffn 128, tied: 106,816 parameters


def test_planner_does_not_import_torch() -> None:
    code = (
        "import sys, kiban.train.plan as p; p.plan(p.preset('8b'), tokens=1); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_doctests() -> None:
    assert doctest.testmod(plan_module).failed == 0


@pytest.mark.parametrize(
    ("name", "total", "embedding", "output"),
    [
        # Meta's model cards / safetensors index totals.
        ("8b", 8_030_261_248, 128_256 * 4096, 128_256 * 4096),
        ("70b", 70_553_706_496, 128_256 * 8192, 128_256 * 8192),
        ("1b", 1_235_814_400, 128_256 * 2048, 0),  # Llama-3.2-1B ties its head to the embedding
    ],
)
def test_published_parameter_counts(name: str, total: int, embedding: int, output: int) -> None:
    p = plan(preset(name), tokens=10**9)
    assert p.params_total == total
    assert p.params_embedding == embedding
    assert p.params_output == output
    assert p.params_non_embedding == total - embedding - output


def test_flops_per_token_tied_by_hand() -> None:
    # tied: the embedding table is the output head, so every parameter does a matmul per token.
    p = plan(TINY, tokens=1000, device="h100", seq_len=128)
    attention = 12 * 2 * 4 * 16 * 128  # 12 · L · H · Dh · T
    assert p.attention_flops_per_token == attention == 196_608
    assert p.flops_per_token == 6 * 106_816 + attention
    assert p.flops_total == p.flops_per_token * 1000


def test_flops_per_token_untied_excludes_the_lookup_table() -> None:
    untied = replace(TINY, tie_embeddings=False)
    p = plan(untied, tokens=1, seq_len=64)
    assert p.params_total == 106_816 + 512 * 64
    assert p.params_flops == 106_816  # the head counts, the lookup does not
    assert p.flops_per_token == 6 * 106_816 + 12 * 2 * 4 * 16 * 64


def test_flops_8b_by_hand() -> None:
    p = plan(preset("8b"), tokens=15 * 10**12)
    assert p.flops_per_token == 6 * (8_030_261_248 - 525_336_576) + 12 * 32 * 32 * 128 * 8192
    assert p.seq_len == 8192  # defaults to model.max_seq_len


def test_memory_terms_by_hand_ddp_bf16() -> None:
    n, s, b, h = 106_816, 128, 2, 64
    m = plan(TINY, tokens=1, device="h100", micro_batch=b, seq_len=s, strategy="ddp").memory["ddp"]
    assert (m.weights, m.gradients, m.master_weights, m.adam_states) == (2 * n, 2 * n, 4 * n, 8 * n)
    assert m.activations == 2 * 34 * s * b * h  # Korthikanti Eq. 1 without the a·s² term, 2 layers
    assert m.logits == s * b * 512 * 4
    assert m.fsdp_buffers == 0
    assert m.total == 16 * n + 2 * 34 * s * b * h + s * b * 512 * 4
    assert m.limit == int(80 * GIB * 0.9)


def test_memory_terms_by_hand_fsdp() -> None:
    n, per_layer = 106_816, 36_992
    m = plan(TINY, tokens=1, gpus=4, micro_batch=2, seq_len=128, strategy="fsdp").memory["fsdp"]
    assert (m.weights, m.gradients, m.master_weights, m.adam_states) == (2 * n // 4, 2 * n // 4, n, 2 * n)
    assert m.fsdp_buffers == 3 * per_layer * 2  # two units of weights in flight + one of gradients


def test_cpu_is_fp32_without_master_weights() -> None:
    n, s, h = 106_816, 128, 64
    m = plan(TINY, tokens=1, device="cpu", strategy="ddp").memory["ddp"]
    assert (m.weights, m.gradients, m.master_weights, m.adam_states) == (4 * n, 4 * n, 0, 8 * n)
    assert m.activations == 2 * 34 * s * h * 2  # fp32 activations: twice the 16-bit bytes


@pytest.mark.parametrize("name", ["tiny", "1b", "8b"])
def test_fsdp_less_than_ddp_when_sharded_and_equal_on_one(name: str) -> None:
    many = plan(preset(name), tokens=1, gpus=8).memory
    assert many["fsdp"].total < many["ddp"].total
    one = plan(preset(name), tokens=1, gpus=1).memory
    assert one["fsdp"].total == one["ddp"].total


def test_recompute_reduces_activations() -> None:
    model = preset("8b")
    full = plan(model, tokens=1, recompute=False).memory["ddp"].activations
    re = plan(model, tokens=1, recompute=True).memory["ddp"].activations
    s, h, layers = 8192, 4096, 32
    assert re == layers * 2 * s * h + 34 * s * h  # layer inputs + one layer rebuilt
    assert re < full / 10


def test_chinchilla_is_20_tokens_per_parameter() -> None:
    p = plan(preset("8b"), tokens=15 * 10**12)
    assert p.chinchilla_tokens == 20 * 8_030_261_248
    assert p.tokens_per_param == pytest.approx(15e12 / 8_030_261_248)


def test_wall_clock_scales_inversely_with_gpus_and_mfu() -> None:
    model = preset("1b")
    base = plan(model, tokens=10**11, gpus=1, mfu=0.4)
    assert plan(model, tokens=10**11, gpus=8, mfu=0.4).wall_clock_s == pytest.approx(base.wall_clock_s / 8)
    assert plan(model, tokens=10**11, gpus=1, mfu=0.2).wall_clock_s == pytest.approx(base.wall_clock_s * 2)
    assert base.wall_clock_s == pytest.approx(base.flops_total / (989.4e12 * 0.4))
    assert base.tokens_per_s == pytest.approx(10**11 / base.wall_clock_s)


def test_8b_on_one_a100_with_ddp_is_refused_with_the_numbers() -> None:
    with pytest.raises(ConfigError) as e:
        check_fits(preset("8b"), micro_batch=1, seq_len=8192, device="a100", gpus=1, strategy="ddp")
    msg = str(e.value)
    assert "a100" in msg and "ddp" in msg and "72.00 GiB" in msg and "adam_states 59.83" in msg
    assert "weights and optimizer states alone" in msg


def test_activation_bound_refusal_suggests_batch_and_recompute() -> None:
    with pytest.raises(ConfigError, match="smaller micro_batch.*activation checkpointing"):
        check_fits(preset("1b"), micro_batch=8, seq_len=8192, device="h100", gpus=8, strategy="fsdp")
    check_fits(
        preset("1b"), micro_batch=8, seq_len=8192, device="h100", gpus=8, strategy="fsdp", recompute=True
    )


def test_tiny_fits_on_cpu() -> None:
    check_fits(TINY, micro_batch=8, seq_len=128, device="cpu")


def test_cpu_device_is_measured_from_this_machine() -> None:
    cpu = DEVICES["cpu"]
    assert cpu.peak_bf16_tflops is None and cpu.memory_gib > 0
    assert 0 < cpu.peak_tflops() < 100  # an estimate; cached for the process
    assert cpu.peak_tflops() == cpu.peak_tflops()


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        plan(TINY, tokens=1, device="tpu")
    with pytest.raises(ConfigError, match="mfu"):
        plan(TINY, tokens=1, mfu=1.5)
    with pytest.raises(ConfigError, match="seq_len 256 exceeds"):
        plan(TINY, tokens=1, seq_len=256)
    with pytest.raises(ConfigError, match="gpus"):
        plan(TINY, tokens=1, gpus=0)


def test_format_and_json() -> None:
    p = plan(preset("8b"), tokens=15 * 10**12, gpus=8, device="h100")
    text = format_plan(p)
    assert "8,030,261,248" in text and "NO FIT" in text and "fits" in text and "GiB" in text
    d = json.loads(json.dumps(p.to_dict()))
    assert d["params_total"] == 8_030_261_248
    assert d["memory"]["fsdp"]["fits"] is True and d["memory"]["ddp"]["fits"] is False
    assert d["model"]["dim"] == 4096
    assert "MiB" in format_plan(plan(TINY, tokens=1, device="cpu"))


def test_load_model_config_preset_and_yaml(tmp_path) -> None:
    assert load_model_config("8b") == preset("8b")
    f = tmp_path / "m.yaml"
    f.write_text("preset: xs\nvocab_size: 32000\nn_layers: 4\n")
    assert load_model_config(str(f)) == preset("xs", vocab_size=32_000, n_layers=4)
    f.write_text(
        "vocab_size: 1000\ndim: 128\nn_layers: 3\nn_heads: 4\nn_kv_heads: 4\nffn_hidden: 256\n"
        "max_seq_len: 64\nrope_theta: 10000\nnorm_eps: 1.0e-6\ntie_embeddings: false\n"
    )
    m = load_model_config(str(f))
    assert (m.dim, m.n_layers, m.tie_embeddings, m.rope_theta) == (128, 3, False, 10_000.0)


def test_load_model_config_errors_name_the_field(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown model preset '9b'"):
        load_model_config("9b")
    f = tmp_path / "m.yaml"
    f.write_text("preset: xs\nn_layer: 4\n")
    with pytest.raises(ConfigError, match="m.yaml: unknown field 'n_layer'"):
        load_model_config(str(f))
    f.write_text("preset: xs\ndim: wide\n")
    with pytest.raises(ConfigError, match="field 'dim' must be int"):
        load_model_config(str(f))
    f.write_text("preset: 9b\n")
    with pytest.raises(ConfigError, match="unknown model preset '9b'"):
        load_model_config(str(f))
    f.write_text("preset: xs\ndim: 100\n")  # 100 / 6 heads
    with pytest.raises(ConfigError, match="model.dim"):
        load_model_config(str(f))
    with pytest.raises(ConfigError, match="not found"):
        load_model_config(str(tmp_path / "missing.yaml"))
