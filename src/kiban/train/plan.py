"""`kiban plan`: parameters, FLOPs, memory per device and wall-clock time of a training run, on paper.

    >>> from kiban.model.config import preset
    >>> p = plan(preset("8b"), tokens=15 * 10**12, gpus=1024, device="h100")
    >>> p.params_total, p.params_embedding
    (8030261248, 525336576)
    >>> p.memory["fsdp"].fits, p.memory["ddp"].fits
    (True, False)

Pure Python (numpy only to time the CPU once): the CLI plans a 70B run without importing torch.
Every formula cites where it comes from; docs/plan.md shows them worked on Llama-3-8B.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from dataclasses import dataclass
from typing import Any, Literal

from kiban.errors import ConfigError
from kiban.model.config import PRESETS, ModelConfig, load_model_config, preset  # noqa: F401 - re-exported

GIB = 2**30
CHINCHILLA_TOKENS_PER_PARAM = 20
"""Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", Table 3: ~20 tokens per parameter."""
HEADROOM = 0.1
"""Fraction of device memory kept free for the CUDA context, allocator fragmentation and NCCL buffers."""

Strategy = Literal["ddp", "fsdp", "both"]


@dataclass(frozen=True)
class Device:
    """An accelerator as the planner sees it."""

    name: str
    peak_bf16_tflops: float | None
    """Dense (no 2:4 sparsity) bf16 tensor-core peak; None: measured on this machine (`peak_tflops()`)."""
    memory_gib: float
    source: str
    """Where the numbers come from."""

    def peak_tflops(self) -> float:
        return self.peak_bf16_tflops if self.peak_bf16_tflops is not None else _measured_cpu_tflops()


def _ram_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


@functools.cache
def _measured_cpu_tflops() -> float:
    """Best of a few float32 1024³ matmuls through numpy's BLAS, all threads: an estimate, not a peak.

    The trainer runs fp32 on CPU, so this is the figure MFU is measured against there; it varies with
    BLAS, thread count and whatever else the machine runs, so it is measured once per process.
    """
    import numpy as np

    n = 1024
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm up the BLAS thread pool
    best_s = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best_s = min(best_s, time.perf_counter() - t0)
    return 2 * n**3 / best_s / 1e12


# NVIDIA's datasheets quote bf16 "with sparsity"; the dense figure is half of it.
DEVICES: dict[str, Device] = {
    "h100": Device(
        "h100", 989.4, 80, "NVIDIA H100 SXM5 datasheet: 1,979 TFLOP/s bf16 with sparsity, 80 GB HBM3"
    ),
    "h200": Device(
        "h200", 989.4, 141, "NVIDIA H200 SXM datasheet: 1,979 TFLOP/s bf16 with sparsity, 141 GB HBM3e"
    ),
    "a100": Device(
        "a100", 312.0, 80, "NVIDIA A100 datasheet: 312 TFLOP/s bf16 dense (624 sparse), 80 GB HBM2e"
    ),
    "cpu": Device(
        "cpu",
        None,
        round(_ram_gib(), 1),
        "this machine: RAM from os.sysconf; peak measured by a numpy float32 matmul (an estimate)",
    ),
}


def get_device(name: str) -> Device:
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r} (known: {', '.join(DEVICES)})")
    return DEVICES[name]


@dataclass(frozen=True)
class Memory:
    """Bytes per device under one strategy; each term is listed so a user sees what to shrink."""

    strategy: str
    weights: int
    gradients: int
    master_weights: int
    adam_states: int
    activations: int
    logits: int
    fsdp_buffers: int
    """Transient all-gathered parameters and unreduced gradients of the FSDP units in flight."""
    limit: int
    """Device memory less the headroom."""

    TERMS = ("weights", "gradients", "master_weights", "adam_states", "activations", "logits", "fsdp_buffers")

    @property
    def total(self) -> int:
        return sum(getattr(self, t) for t in self.TERMS)

    @property
    def fits(self) -> bool:
        return self.total <= self.limit

    def to_dict(self) -> dict[str, Any]:
        d = {f"{t}_gib": getattr(self, t) / GIB for t in self.TERMS}
        return {
            "strategy": self.strategy,
            **d,
            "total_gib": self.total / GIB,
            "limit_gib": self.limit / GIB,
            "fits": self.fits,
        }


@dataclass(frozen=True)
class Plan:
    """A training run on paper. FLOPs follow torchtitan's MFU convention; memory follows ZeRO + Korthikanti."""

    model: ModelConfig
    tokens: int
    gpus: int
    device: str
    peak_tflops: float
    """Per device; measured (an estimate) on cpu."""
    mfu: float
    seq_len: int
    micro_batch: int
    """Sequences per device per step."""
    recompute: bool
    param_dtype: str
    params_total: int
    params_embedding: int
    """The input embedding table."""
    params_output: int
    """The untied output head; 0 when tied to the embedding."""
    params_non_embedding: int
    """total − embedding − output head (Kaplan et al. 2020's N)."""
    params_flops: int
    """Parameters that do a matmul per token: all but the untied input embedding lookup."""
    flops_per_token: int
    attention_flops_per_token: int
    flops_total: int
    memory: dict[str, Memory]
    chinchilla_tokens: int
    tokens_per_param: float
    tokens_per_step: int
    """micro_batch × seq_len × gpus, before gradient accumulation."""
    tokens_per_s: float
    wall_clock_s: float

    @property
    def gpu_hours(self) -> float:
        return self.wall_clock_s * self.gpus / 3600

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = dataclasses.asdict(self.model)
        d["memory"] = {k: m.to_dict() for k, m in self.memory.items()}
        d["gpu_hours"] = self.gpu_hours
        return d


def flops_per_token(model: ModelConfig, seq_len: int) -> tuple[int, int]:
    """(training FLOPs per token, of which attention), as torchtitan counts them for MFU.

    torchtitan (torchtitan/models/utils.py, `get_nparams_and_active_nparams` and
    `quadratic_attention_flops_per_token`; earlier `get_dense_model_nparams_and_flops`):
    6 × parameters, the input embedding table excluded unless it is shared with the output head
    (a lookup does no matmul; a tied table does the head's), plus 12·L·H·Dh·T for attention
    (QKᵀ and AV: 2 matmuls forward, 4 backward, 2 FLOPs per multiply-add, causal mask not discounted,
    flash attention's backward recomputation not counted).
    """
    n = model.n_params()
    matmul_params = n["total"] - (0 if model.tie_embeddings else n["embedding"])
    attention = 12 * model.n_layers * model.n_heads * model.head_dim * seq_len
    return 6 * matmul_params + attention, attention


def activation_bytes_per_layer(
    model: ModelConfig, micro_batch: int, seq_len: int, bytes_per_act: int = 2
) -> int:
    """Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", Eq. 1.

    s·b·h·(34 + 5·a·s/h) bytes for 16-bit activations. SDPA/flash attention keeps no s×s matrix (only
    the output and a per-row log-sum-exp), so the 5·a·s/h term (softmax output, its dropout mask and
    output) is dropped: 34·s·b·h. For a Llama block (no dropout, SwiGLU, GQA) a tally gives
    10·h + 4·kv + 6·f per token (32·h for 8B), so 34 is within a few percent, on the safe side.
    """
    return 34 * seq_len * micro_batch * model.dim * bytes_per_act // 2


def _memory(
    model: ModelConfig,
    *,
    strategy: str,
    gpus: int,
    micro_batch: int,
    seq_len: int,
    recompute: bool,
    param_dtype: str,
    act_bytes: int,
    limit: int,
) -> Memory:
    n = model.n_params()
    p_bytes = 2 if param_dtype == "bf16" else 4
    # ZeRO (Rajbhandari et al. 2020, §3.1): mixed-precision AdamW keeps 2Ψ weights + 2Ψ gradients in
    # bf16 and K = 12Ψ of fp32 state (master weights + momentum + variance): 16 bytes per parameter.
    weights = n["total"] * p_bytes
    gradients = n["total"] * p_bytes
    master = n["total"] * 4 if param_dtype == "bf16" else 0
    adam = n["total"] * 8
    buffers = 0
    if strategy == "fsdp" and gpus > 1:
        # ZeRO-3 / FSDP shards all four over the data-parallel group ...
        weights, gradients, master, adam = (-(-x // gpus) for x in (weights, gradients, master, adam))
        # ... and gathers one unit at a time: the current and the prefetched unit's full weights, plus
        # one unit's full gradients before the reduce-scatter (torchtitan wraps each decoder layer,
        # and the embedding and output head on their own).
        unit = max(n["per_layer"], n["embedding"], n["output"])
        buffers = 3 * unit * p_bytes
    per_layer = activation_bytes_per_layer(model, micro_batch, seq_len, act_bytes)
    if recompute:
        # Full recomputation (Korthikanti §4): keep each layer's input, 2·s·b·h bytes (16-bit), and
        # rebuild one layer's activations at a time in the backward pass.
        activations = model.n_layers * seq_len * micro_batch * model.dim * act_bytes + per_layer
    else:
        activations = model.n_layers * per_layer
    logits = seq_len * micro_batch * model.vocab_size * 4  # fp32 logits for the cross-entropy
    return Memory(strategy, weights, gradients, master, adam, activations, logits, buffers, limit)


def plan(
    model: ModelConfig,
    *,
    tokens: int,
    gpus: int = 1,
    device: str = "h100",
    mfu: float = 0.4,
    seq_len: int | None = None,
    micro_batch: int = 1,
    strategy: Strategy = "both",
    recompute: bool = False,
    param_dtype: str | None = None,
    headroom: float = HEADROOM,
) -> Plan:
    """Plan a run of `tokens` training tokens on `gpus` × `device` (see the module docstring)."""
    dev = get_device(device)
    seq_len = model.max_seq_len if seq_len is None else seq_len
    param_dtype = param_dtype or ("fp32" if device == "cpu" else "bf16")
    for name, value in (
        ("tokens", tokens),
        ("gpus", gpus),
        ("seq_len", seq_len),
        ("micro_batch", micro_batch),
    ):
        if value < 1:
            raise ConfigError(f"plan: {name} must be ≥ 1, got {value}")
    if not 0 < mfu <= 1:
        raise ConfigError(f"plan: mfu must be in (0, 1], got {mfu}")
    if not 0 <= headroom < 1:
        raise ConfigError(f"plan: headroom must be in [0, 1), got {headroom}")
    if strategy not in ("ddp", "fsdp", "both"):
        raise ConfigError(f"plan: strategy must be ddp, fsdp or both, got {strategy!r}")
    if param_dtype not in ("bf16", "fp32"):
        raise ConfigError(f"plan: param_dtype must be bf16 or fp32, got {param_dtype!r}")
    if seq_len > model.max_seq_len:
        raise ConfigError(f"plan: seq_len {seq_len} exceeds model.max_seq_len {model.max_seq_len}")

    n = model.n_params()
    fpt, attention = flops_per_token(model, seq_len)
    peak = dev.peak_tflops()
    tokens_per_s = gpus * peak * 1e12 * mfu / fpt
    limit = int(dev.memory_gib * GIB * (1 - headroom))
    act_bytes = 4 if device == "cpu" else 2  # bf16 autocast on GPU, fp32 on CPU
    strategies = ("ddp", "fsdp") if strategy == "both" else (strategy,)
    memory = {
        s: _memory(
            model,
            strategy=s,
            gpus=gpus,
            micro_batch=micro_batch,
            seq_len=seq_len,
            recompute=recompute,
            param_dtype=param_dtype,
            act_bytes=act_bytes,
            limit=limit,
        )
        for s in strategies
    }
    chinchilla = CHINCHILLA_TOKENS_PER_PARAM * n["total"]
    return Plan(
        model=model,
        tokens=tokens,
        gpus=gpus,
        device=device,
        peak_tflops=peak,
        mfu=mfu,
        seq_len=seq_len,
        micro_batch=micro_batch,
        recompute=recompute,
        param_dtype=param_dtype,
        params_total=n["total"],
        params_embedding=n["embedding"],
        params_output=n["output"],
        params_non_embedding=n["total"] - n["embedding"] - n["output"],
        params_flops=(fpt - attention) // 6,
        flops_per_token=fpt,
        attention_flops_per_token=attention,
        flops_total=fpt * tokens,
        memory=memory,
        chinchilla_tokens=chinchilla,
        tokens_per_param=tokens / n["total"],
        tokens_per_step=micro_batch * seq_len * gpus,
        tokens_per_s=tokens_per_s,
        wall_clock_s=tokens / tokens_per_s,
    )


def check_fits(
    model: ModelConfig,
    micro_batch: int,
    seq_len: int,
    device: str,
    gpus: int = 1,
    strategy: Literal["ddp", "fsdp"] = "ddp",
    recompute: bool = False,
) -> None:
    """Refuse, before training starts, a batch that the planner says does not fit; the message has the numbers."""
    p = plan(
        model,
        tokens=1,
        gpus=gpus,
        device=device,
        seq_len=seq_len,
        micro_batch=micro_batch,
        strategy=strategy,
        recompute=recompute,
    )
    m = p.memory[strategy]
    if m.fits:
        return
    terms = ", ".join(f"{t} {getattr(m, t) / GIB:.2f}" for t in m.TERMS if getattr(m, t))
    states = m.total - m.activations - m.logits
    if states > m.limit:
        advice = (
            f"the weights and optimizer states alone need {states / GIB:.2f} GiB: shard them "
            "(strategy fsdp) over more devices, or choose a smaller model"
        )
    else:
        hints = [f"a smaller micro_batch (now {micro_batch})", f"a shorter seq_len (now {seq_len})"]
        if not recompute:
            hints.append("activation checkpointing")
        if strategy == "ddp" and gpus > 1:
            hints.append("strategy fsdp")
        advice = "try " + ", or ".join(hints)
    raise ConfigError(
        f"micro_batch {micro_batch} × seq_len {seq_len} does not fit on {device} under {strategy} "
        f"({gpus} device{'s' if gpus > 1 else ''}): needs {m.total / GIB:.2f} GiB per device "
        f"({terms} GiB), limit {m.limit / GIB:.2f} GiB ({get_device(device).memory_gib} GiB less "
        f"{HEADROOM:.0%} headroom); {advice}"
    )


def _num(x: float) -> str:
    """1.23 B-style for counts."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f} {unit}"
    return f"{x:.0f}"


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:,.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 3600:,.0f} h = {seconds / 86400:,.1f} d"


def format_plan(p: Plan) -> str:
    """A table for the terminal; `Plan.to_dict()` is the machine-readable form."""
    m = p.model
    tied = "tied" if m.tie_embeddings else "untied"
    unit, div = ("GiB", GIB) if max(x.total for x in p.memory.values()) >= GIB else ("MiB", 2**20)
    peak_note = " (measured estimate)" if get_device(p.device).peak_bf16_tflops is None else ""
    peak = f"{p.peak_tflops:,.1f}" if p.peak_tflops >= 10 else f"{p.peak_tflops:.3f}"
    lines = [
        f"model            {m.n_layers} layers × {m.dim} dim, {m.n_heads}/{m.n_kv_heads} heads (q/kv), "
        f"ffn {m.ffn_hidden}, vocab {m.vocab_size} ({tied})",
        f"parameters       {p.params_total:>19,}  ({_num(p.params_total)})",
        f"  embedding      {p.params_embedding:>19,}",
        f"  output head    {p.params_output:>19,}" + ("  (tied: the embedding)" if m.tie_embeddings else ""),
        f"  non-embedding  {p.params_non_embedding:>19,}",
        "",
        f"tokens           {p.tokens:>19,}  ({_num(p.tokens)}; {p.tokens_per_param:,.1f} per parameter)",
        f"chinchilla       {p.chinchilla_tokens:>19,}  ({_num(p.chinchilla_tokens)}; 20 × parameters)",
        f"FLOPs/token      {p.flops_per_token:>19.4e}  (6 × {p.params_flops:,} + attention "
        f"{p.attention_flops_per_token:.3e} at seq_len {p.seq_len})",
        f"FLOPs total      {p.flops_total:>19.4e}",
        "",
        f"devices          {p.gpus} × {p.device}, {peak} TFLOP/s peak{peak_note}, MFU {p.mfu:.2f}",
        f"throughput       {p.tokens_per_s:>19,.0f}  tokens/s ({p.tokens_per_s / p.gpus:,.0f} per device)",
        f"wall clock       {_duration(p.wall_clock_s):>19}  ({p.gpu_hours:,.{0 if p.gpu_hours >= 100 else 2}f} device-hours)",
        "",
        f"memory per device ({unit}): micro_batch {p.micro_batch} × seq_len {p.seq_len} per device "
        f"({p.tokens_per_step:,} tokens/step on {p.gpus}), {p.param_dtype} params, "
        f"{'full recomputation' if p.recompute else 'no recomputation'}",
        "                 " + "".join(f"{s:>10}" for s in p.memory),
    ]
    for term in Memory.TERMS:
        lines.append(f"  {term:<15}" + "".join(f"{getattr(x, term) / div:>10.2f}" for x in p.memory.values()))
    lines.append(f"  {'total':<15}" + "".join(f"{x.total / div:>10.2f}" for x in p.memory.values()))
    lines.append(f"  {'limit':<15}" + "".join(f"{x.limit / div:>10.2f}" for x in p.memory.values()))
    lines.append(
        f"  {'verdict':<15}" + "".join(f"{'fits' if x.fits else 'NO FIT':>10}" for x in p.memory.values())
    )
    return "\n".join(lines)
