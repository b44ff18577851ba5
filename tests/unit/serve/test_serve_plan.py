"""`kiban plan --serve`: llama.cpp's quantization rules tensor by tensor, KV cache with and without
GQA, published sizes, and the estimate next to a real llama.cpp measurement."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import run_kiban

from kiban.errors import ConfigError
from kiban.model.config import preset
from kiban.serve.plan import BYTES_PER_WEIGHT, serve_plan, shape_from_gguf, tensor_types


def test_published_llama_3_8b_q4_k_m_size_and_kv_cache() -> None:
    p = serve_plan(preset("8b"), quant="q4_k_m", device="h100", context=8192)
    # llama.cpp's Meta-Llama-3-8B Q4_K_M: 4.58 GiB, 4.89 bits per weight
    assert round(p.weights_bytes / 2**30, 2) == 4.58 and round(8 * p.weights_bytes / p.params, 2) == 4.89
    # K and V in f16, 32 layers × 8 kv heads × 128 = 128 KiB per token; 32 heads without GQA
    assert (p.kv_bytes_per_token, p.kv_bytes_per_token_mha) == (131_072, 524_288)
    assert p.kv_cache_bytes == 8192 * 131_072 and p.fits
    # bandwidth-bound: 3.35 TB/s over the weights (less the untied input table) and the KV cache
    assert p.decode_tokens_s == pytest.approx(3350e9 / p.bytes_per_token)
    assert serve_plan(preset("70b"), quant="f16", device="raspberry-pi-5").fits is False


def test_f16_and_q8_0_sizes_are_exact() -> None:
    cfg = preset("xs")
    n = cfg.n_params()
    norms = cfg.dim * (2 * cfg.n_layers + 1)
    assert serve_plan(cfg, quant="f16", device="h100").weights_bytes == 2 * (n["total"] - norms) + 4 * norms
    q8 = serve_plan(cfg, quant="q8_0", device="h100").weights_bytes
    assert q8 == int((n["total"] - norms) * BYTES_PER_WEIGHT["Q8_0"] + 4 * norms)


@pytest.fixture(scope="module")
def k_quant_gguf(trained_tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random model whose rows are multiples of 256 (real k-quants), exported at q4_k_m."""
    pytest.importorskip("llama_cpp", reason="needs kiban's edge extra: pip install 'kiban[edge]'")
    import torch

    from kiban.export.gguf import export_gguf
    from kiban.model.hf import save_hf
    from kiban.model.llama import Llama

    d = tmp_path_factory.mktemp("kq") / "model"
    d.mkdir()
    cfg = dataclasses.replace(
        preset("tiny"), vocab_size=1000, dim=256, n_heads=4, n_kv_heads=2, ffn_hidden=512
    )
    cfg = dataclasses.replace(cfg, n_layers=9)
    torch.manual_seed(0)
    save_hf(Llama(cfg), d, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(trained_tiny_model_dir / name, d / name)
    return export_gguf(d, d.parent / "kq-q4_k_m.gguf", quant="q4_k_m")


def test_q4_k_m_types_match_llama_cpp_tensor_by_tensor(k_quant_gguf: Path) -> None:
    from gguf import GGUFReader

    cfg, quant = shape_from_gguf(k_quant_gguf)
    assert quant == "q4_k_m" and (cfg.dim, cfg.n_layers, cfg.tie_embeddings) == (256, 9, True)
    actual = {t.name: t.tensor_type.name for t in GGUFReader(str(k_quant_gguf)).tensors}
    planned = {name: t for name, _, t in tensor_types(cfg, "q4_k_m")}
    assert planned == actual
    assert {"Q4_K", "Q6_K", "F32"} <= set(actual.values())  # a real mix, not only fallbacks
    # k-quants need rows of 256 weights: the tiny preset (64 wide) falls back to Q5_0 / Q8_0
    assert {t for _, _, t in tensor_types(preset("tiny"), "q4_k_m")} == {"F32", "Q5_0", "Q8_0"}


def test_estimate_next_to_a_llama_cpp_measurement(k_quant_gguf: Path) -> None:
    proc = run_kiban("plan", "--serve", "--measure", str(k_quant_gguf), "--device", "cpu", "--json")
    p = json.loads(proc.stdout)
    assert p["quant"] == "q4_k_m" and p["model"]["dim"] == 256
    assert p["measured"]["decode_tokens_s"] > 0 and p["decode_tokens_s"] > 0
    assert set(p["scales"]) == {"tiny", "xs", "s", "1b", "8b", "70b"}
    text = run_kiban(
        "plan", "--serve", "--model", "8b", "--device", "jetson-orin-nano", "--quant", "q4_k_m"
    ).stdout
    assert "128.0 KiB with GQA (8 kv heads), 512.0 KiB without (32)" in text and "4.6 GiB at q4_k_m" in text


def test_bad_flags_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="--quant"):
        serve_plan(preset("xs"), quant="q3_k")
    with pytest.raises(ConfigError, match="serving device 'tpu'"):
        serve_plan(preset("xs"), device="tpu")
    bad = run_kiban("plan", "--serve", "--model", "xs", "--device", "tpu", check=False)
    assert bad.returncode == 2 and "tpu" in bad.stderr


def test_serve_plan_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from kiban.cli import app\n"
        "r = CliRunner().invoke(app, ['plan', '--serve', '--model', '70b', '--device', 'h200'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
