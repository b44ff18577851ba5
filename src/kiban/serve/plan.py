"""`kiban plan --serve`: memory and decode speed of a model shape and quantization on a device.

    >>> from kiban.model.config import preset
    >>> p = serve_plan(preset("8b"), quant="q4_k_m", device="h100", context=8192)
    >>> p.kv_bytes_per_token, p.kv_bytes_per_token_mha       # f16 K and V, 32 layers: 8 vs 32 heads
    (131072, 524288)
    >>> round(p.weights_bytes / 2**30, 2), round(p.decode_tokens_s)
    (4.58, 589)

Decoding one token reads every weight once (and the KV cache so far) and does ~2 FLOPs per weight,
so at batch 1 it is bound by memory bandwidth, not compute (Pope et al. 2022, "Efficiently Scaling
Transformer Inference", §2; the arithmetic intensity of a matrix-vector product is ~1 FLOP/byte
at f16, far below any device's FLOPs/bandwidth ratio):

    tokens/s ≈ bandwidth / (weight bytes read per token + KV-cache bytes at the context position)

This is an upper bound: kernels reach a fraction of peak bandwidth, and very small models are
bound by per-token overheads instead (and fit in the CPU's cache, which beats DRAM bandwidth).
`--measure FILE.gguf` runs llama.cpp on this machine and prints the measurement next to the
estimate. Weight bytes follow llama.cpp's quantization rules (src/llama-quant.cpp,
`llama_tensor_get_type`): q4_k_m is Q4_K, with Q6_K for the output matrix and for attn_v and
ffn_down of the layers `use_more_bits` picks; a tensor whose rows are not a multiple of 256 falls
back (Q4_K → Q5_0, Q6_K → Q8_0); norms stay f32. Pure Python: never imports torch.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kiban.errors import ConfigError
from kiban.model.config import PRESETS, ModelConfig

GIB = 2**30
HEADROOM = 0.1
"""Fraction of device memory kept free (OS, runtime, llama.cpp's compute buffers)."""
QUANTS = ("f32", "f16", "q8_0", "q4_k_m")

# bytes per weight of each GGML type (ggml block size, bytes per block): ggml-common.h
BYTES_PER_WEIGHT = {
    "F32": 4.0,
    "F16": 2.0,
    "Q8_0": 34 / 32,
    "Q5_0": 22 / 32,
    "Q4_K": 144 / 256,
    "Q6_K": 210 / 256,
}
_FALLBACK = {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}  # k-quants need rows of 256 weights


@dataclass(frozen=True)
class ServeDevice:
    name: str
    bandwidth_gb_s: float | None
    """Peak memory bandwidth, GB/s (10^9 bytes); None: measured on this machine."""
    memory_gib: float
    source: str


DEVICES: dict[str, ServeDevice] = {
    d.name: d
    for d in (
        ServeDevice(
            "cpu", None, 0.0, "this machine: RAM from os.sysconf; read bandwidth of one thread measured"
        ),
        ServeDevice("raspberry-pi-5", 17.1, 8, "Raspberry Pi 5 8GB: LPDDR4X-4267, 32-bit bus"),
        ServeDevice("jetson-orin-nano", 68.0, 8, "NVIDIA Jetson Orin Nano 8GB datasheet: 68 GB/s LPDDR5"),
        ServeDevice("jetson-agx-orin", 204.8, 64, "NVIDIA Jetson AGX Orin 64GB datasheet: 204.8 GB/s LPDDR5"),
        ServeDevice("laptop-ddr5", 89.6, 32, "dual-channel DDR5-5600 (2 × 64-bit × 5.6 GT/s)"),
        ServeDevice("server-ddr5", 307.2, 512, "8-channel DDR5-4800 (one socket: 8 × 64-bit × 4.8 GT/s)"),
        ServeDevice("rtx-4090", 1008.0, 24, "NVIDIA GeForce RTX 4090: 1,008 GB/s GDDR6X, 24 GB"),
        ServeDevice("a100", 2039.0, 80, "NVIDIA A100 80GB SXM datasheet: 2,039 GB/s HBM2e"),
        ServeDevice("h100", 3350.0, 80, "NVIDIA H100 SXM5 datasheet: 3.35 TB/s HBM3"),
        ServeDevice("h200", 4800.0, 141, "NVIDIA H200 SXM datasheet: 4.8 TB/s HBM3e, 141 GB"),
    )
}


def get_device(name: str) -> ServeDevice:
    if name not in DEVICES:
        raise ConfigError(f"unknown serving device {name!r} (known: {', '.join(DEVICES)})")
    d = DEVICES[name]
    if d.bandwidth_gb_s is None:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
        return ServeDevice(d.name, measured_bandwidth_gb_s(), round(ram, 1), d.source)
    return d


@functools.cache
def measured_bandwidth_gb_s() -> float:
    """Best of five sums over a 512 MiB float32 array (far past any CPU cache): one thread's DRAM
    read bandwidth, which is what one llama.cpp thread decoding a large model is limited by."""
    import numpy as np

    a = np.ones(128 * 2**20, dtype=np.float32)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9


# ---------------------------------------------------------------------------------------------
# weights by tensor, as llama.cpp would store them


def _use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's rule for which layers get Q6_K in a _M mix: the first and last eighth, and every third."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_types(cfg: ModelConfig, quant: str) -> list[tuple[str, int, str]]:
    """(GGUF tensor name, weights, GGML type) of every tensor the export writes."""
    if quant not in QUANTS:
        raise ConfigError(f"--quant must be one of {', '.join(QUANTS)}, got {quant!r}")
    d, kv, f, n = cfg.dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_hidden, cfg.n_layers

    def matrix(rows_in: int, want: str) -> str:
        if quant == "f32":
            return "F32"
        if quant == "f16":
            return "F16"
        if quant == "q8_0":
            return "Q8_0" if rows_in % 32 == 0 else "F16"
        return _FALLBACK[want] if rows_in % 256 else want

    out: list[tuple[str, int, str]] = []
    for i in range(n):
        out += [
            (f"blk.{i}.attn_norm.weight", d, "F32"),
            (f"blk.{i}.attn_q.weight", d * d, matrix(d, "Q4_K")),
            (f"blk.{i}.attn_k.weight", kv * d, matrix(d, "Q4_K")),
            (f"blk.{i}.attn_v.weight", kv * d, matrix(d, "Q6_K" if _use_more_bits(i, n) else "Q4_K")),
            (f"blk.{i}.attn_output.weight", d * d, matrix(d, "Q4_K")),
            (f"blk.{i}.ffn_norm.weight", d, "F32"),
            (f"blk.{i}.ffn_gate.weight", f * d, matrix(d, "Q4_K")),
            (f"blk.{i}.ffn_up.weight", f * d, matrix(d, "Q4_K")),
            (f"blk.{i}.ffn_down.weight", d * f, matrix(f, "Q6_K" if _use_more_bits(i, n) else "Q4_K")),
        ]
    out.append(("output_norm.weight", d, "F32"))
    # tied: llama.cpp quantizes token_embd as the output matrix (Q6_K in q4_k_m)
    out.append(("token_embd.weight", cfg.vocab_size * d, matrix(d, "Q6_K" if cfg.tie_embeddings else "Q4_K")))
    if not cfg.tie_embeddings:
        out.append(("output.weight", cfg.vocab_size * d, matrix(d, "Q6_K")))
    return out


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class ServePlan:
    model: dict[str, Any]
    quant: str
    device: str
    device_source: str
    bandwidth_gb_s: float
    memory_gib: float
    context: int
    params: int
    weights_bytes: int
    kv_bytes_per_token: int
    """f16 K and V of every layer for one token, with grouped-query attention (n_kv_heads)."""
    kv_bytes_per_token_mha: int
    """The same without GQA (as many K/V heads as query heads): what GQA saves."""
    kv_cache_bytes: int
    memory_bytes: int
    fits: bool
    bytes_per_token: int
    """Read from memory to decode one token at the last context position."""
    decode_tokens_s: float
    measured: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def serve_plan(
    cfg: ModelConfig, *, quant: str = "q4_k_m", device: str = "cpu", context: int | None = None
) -> ServePlan:
    """Memory and batch-1 decode tokens/s of `cfg` at `quant` on `device` (see the module docstring)."""
    dev = get_device(device)
    context = context or cfg.max_seq_len
    if context < 1:
        raise ConfigError(f"--context must be ≥ 1, got {context}")
    tensors = tensor_types(cfg, quant)
    weights = int(sum(n * BYTES_PER_WEIGHT[t] for _, n, t in tensors))
    # llama.cpp's KV cache is f16 by default: K and V, each n_kv_heads × head_dim per layer
    kv = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 2
    kv_mha = 2 * cfg.n_layers * cfg.n_heads * cfg.head_dim * 2
    kv_cache = kv * context
    logits = 4 * cfg.vocab_size  # float32 logits of the last position
    memory = weights + kv_cache + logits
    # a lookup reads one row of an untied input embedding, not the table
    embd = next(n * BYTES_PER_WEIGHT[t] for name, n, t in tensors if name == "token_embd.weight")
    read = weights - (0 if cfg.tie_embeddings else embd - embd / cfg.vocab_size) + kv_cache
    assert dev.bandwidth_gb_s is not None
    return ServePlan(
        model=asdict(cfg),
        quant=quant,
        device=dev.name,
        device_source=dev.source,
        bandwidth_gb_s=dev.bandwidth_gb_s,
        memory_gib=dev.memory_gib,
        context=context,
        params=cfg.n_params()["total"],
        weights_bytes=weights,
        kv_bytes_per_token=kv,
        kv_bytes_per_token_mha=kv_mha,
        kv_cache_bytes=kv_cache,
        memory_bytes=memory,
        fits=memory <= (1 - HEADROOM) * dev.memory_gib * GIB,
        bytes_per_token=int(read),
        decode_tokens_s=dev.bandwidth_gb_s * 1e9 / read,
    )


# ---------------------------------------------------------------------------------------------
# a GGUF file: its shape, and a real llama.cpp measurement


def shape_from_gguf(path: Path | str) -> tuple[ModelConfig, str]:
    """The ModelConfig and kiban quant name of a llama GGUF file (from its metadata)."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))

    def v(key: str) -> Any:
        field = r.fields.get(key)
        if field is None:
            raise ConfigError(f"{path}: no '{key}' metadata (not a llama GGUF file)")
        return field.contents()

    names = {t.name for t in r.tensors}
    cfg = ModelConfig(
        vocab_size=int(v("llama.vocab_size")),
        dim=int(v("llama.embedding_length")),
        n_layers=int(v("llama.block_count")),
        n_heads=int(v("llama.attention.head_count")),
        n_kv_heads=int(v("llama.attention.head_count_kv")),
        ffn_hidden=int(v("llama.feed_forward_length")),
        max_seq_len=int(v("llama.context_length")),
        rope_theta=float(v("llama.rope.freq_base")),
        tie_embeddings="output.weight" not in names,
    )
    quant = {0: "f32", 1: "f16", 7: "q8_0", 15: "q4_k_m"}.get(int(v("general.file_type")), "?")
    return cfg, quant


def measure_decode(
    path: Path | str, *, threads: int = 1, tokens: int = 128, context: int = 512
) -> dict[str, Any]:
    """Batch-1 decode tokens/s of a GGUF file in llama.cpp on this machine: a 16-token prompt, then
    `tokens` single-token evaluations (the median of three runs)."""
    from kiban.export.quantize import llama_cpp_module, silence_llama_cpp

    llama_cpp = llama_cpp_module()
    silence_llama_cpp()
    cfg, _ = shape_from_gguf(path)
    n_ctx = min(context, cfg.max_seq_len)
    tokens = min(tokens, n_ctx - 17)
    llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    rates = []
    try:
        for _ in range(3):
            llm.reset()
            llm.eval([(7 * i + 300) % cfg.vocab_size for i in range(16)])
            t0 = time.perf_counter()
            for i in range(tokens):
                llm.eval([(31 * i + 500) % cfg.vocab_size])
            rates.append(tokens / (time.perf_counter() - t0))
    finally:
        llm.close()
    return {
        "file": str(path),
        "bytes": Path(path).stat().st_size,
        "threads": threads,
        "tokens": tokens,
        "decode_tokens_s": sorted(rates)[1],
    }


# ---------------------------------------------------------------------------------------------
# text


def _size(n: float) -> str:
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= k:
            return f"{n / k:,.1f} {unit}"
    return f"{n:,.0f} B"


def format_serve_plan(p: ServePlan, *, scales: list[ServePlan] | None = None) -> str:
    m = p.model
    tied = "tied" if m["tie_embeddings"] else "untied"
    lines = [
        f"model            {m['n_layers']} layers × {m['dim']} dim, {m['n_heads']}/{m['n_kv_heads']} heads "
        f"(q/kv), ffn {m['ffn_hidden']}, vocab {m['vocab_size']:,} ({tied}); {p.params:,} parameters",
        f"device           {p.device}: {p.bandwidth_gb_s:,.1f} GB/s, {p.memory_gib:,.1f} GiB ({p.device_source})",
        f"weights          {_size(p.weights_bytes)} at {p.quant} "
        f"({8 * p.weights_bytes / p.params:.2f} bits per parameter)",
        f"KV cache/token   {_size(p.kv_bytes_per_token)} with GQA ({m['n_kv_heads']} kv heads), "
        f"{_size(p.kv_bytes_per_token_mha)} without ({m['n_heads']}): f16 K and V × {m['n_layers']} layers",
        f"KV cache         {_size(p.kv_cache_bytes)} at {p.context:,} tokens "
        f"({_size(p.kv_bytes_per_token_mha * p.context)} without GQA)",
        f"memory           {_size(p.memory_bytes)} = weights + KV cache + logits; "
        f"{'fits' if p.fits else 'does NOT fit'} in {100 * (1 - HEADROOM):.0f}% of {p.memory_gib:,.1f} GiB",
        f"decode estimate  {p.decode_tokens_s:,.0f} tokens/s at batch 1 "
        f"(bandwidth-bound: {_size(p.bytes_per_token)} read per token at position {p.context:,})",
    ]
    if p.measured is not None:
        r = p.measured
        lines.append(
            f"decode measured  {r['decode_tokens_s']:,.0f} tokens/s: llama.cpp, {r['file']} "
            f"({_size(r['bytes'])}), {r['threads']} thread(s), {r['tokens']} tokens; "
            f"estimate / measured = {p.decode_tokens_s / r['decode_tokens_s']:.2f}"
        )
    if scales:
        lines += ["", f"scale at {p.quant} on {p.device} (context {p.context:,}):"]
        lines.append(
            f"  {'preset':<8}{'parameters':>16}{'weights':>12}{'KV/token':>11}{'tokens/s':>10}  fits"
        )
        for name, s in zip(PRESETS, scales, strict=True):
            lines.append(
                f"  {name:<8}{s.params:>16,}{_size(s.weights_bytes):>12}{_size(s.kv_bytes_per_token):>11}"
                f"{s.decode_tokens_s:>10,.{0 if s.decode_tokens_s >= 10 else 1}f}  {'yes' if s.fits else 'no'}"
            )
    return "\n".join(lines)
