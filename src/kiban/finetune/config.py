"""`kiban finetune` configuration: one dataclass per section, a docstring under each field.

    >>> cfg = FinetuneConfig(base="out/demo/model", data=ChatDataConfig(train="chat.jsonl"), out_dir="out/sft")
    >>> cfg.method, cfg.lora.rank, cfg.lora.alpha, cfg.data.pack
    ('lora', 8, 16.0, True)
    >>> FinetuneConfig(base="m", data=ChatDataConfig(train="c.jsonl"), out_dir="o",
    ...                lora=LoraConfig(target_modules=["embed_tokens"]))
    Traceback (most recent call last):
    ...
    kiban.errors.ConfigError: lora.target_modules: 'embed_tokens' is not a LoRA target (known: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)

Torch-free: config errors never load torch. The optimizer and schedule sections are `kiban train`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kiban.config import load_config
from kiban.errors import ConfigError
from kiban.train.config import OptimConfig, ScheduleConfig

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The Llama linear layers LoRA can wrap (their Hugging Face names, as PEFT's target_modules)."""


@dataclass
class ChatDataConfig:
    """Chat data: JSON Lines of `{"messages": [{"role": ..., "content": ...}, ...]}` (OpenAI / HF)."""

    train: str = ""
    """Training conversations (required). Malformed lines go to out_dir/quarantine/ with their line
    number and reason; the rest trains."""
    eval: str | None = None
    """Held-out conversations; when unset, `eval_fraction` of the training lines (a seeded pick) is held out."""
    eval_fraction: float = 0.1
    """Without `eval`: the fraction of conversations held out for the eval loss. 0 turns eval off."""
    seq_len: int = 256
    """Tokens per row; a conversation longer than seq_len + 1 tokens is quarantined (`too_long`)."""
    pack: bool = True
    """Pack several short conversations into one row (first fit). Each keeps its own positions and
    attends only to itself (block-diagonal causal mask), so packing changes no example's loss."""
    license: str = "unknown"
    """The licence of the chat data (SPDX or LicenseRef-…), forwarded into the output's licence table."""


@dataclass
class LoraConfig:
    """Low-rank adaptation (Hu et al. 2021): W x + (alpha / rank) · B A x, only A and B trained."""

    rank: int = 8
    """r, the rank of A (r × in) and B (out × r)."""
    alpha: float = 16.0
    """Scaling numerator: the update is multiplied by alpha / rank (PEFT's `lora_alpha`)."""
    dropout: float = 0.0
    """Dropout on the LoRA branch's input during training (PEFT's `lora_dropout`)."""
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    """Which linear layers get an adapter, by name (PEFT's `target_modules`); every layer's."""


@dataclass
class FinetuneBatch:
    """Batch shape and run length. Global batch = micro_batch × grad_accum rows."""

    micro_batch: int = 4
    """Rows per forward/backward pass."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    epochs: int = 1
    """Passes over the training conversations (each epoch shuffled and packed with its own seed)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (then epochs only bounds nothing: data repeats as needed)."""


@dataclass
class FinetuneConfig:
    """Everything `kiban finetune` needs; `examples/finetune-lora.yaml` shows each section."""

    base: str = ""
    """The model to fine-tune (required): a kiban checkpoint or a local Hugging Face LlamaForCausalLM
    directory with tokenizer.json and a chat template in tokenizer_config.json."""
    data: ChatDataConfig = field(default_factory=ChatDataConfig)
    """Chat data and row shape."""
    method: Literal["lora", "full"] = "lora"
    """`lora`: train low-rank adapters, write a PEFT-compatible adapter directory; `full`: train every
    weight, write a full checkpoint."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA shape (method: lora)."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    """AdamW and gradient clipping (`kiban train`'s section)."""
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_steps=0))
    """Learning-rate schedule (`kiban train`'s section)."""
    batch: FinetuneBatch = field(default_factory=FinetuneBatch)
    """Batch shape and run length."""
    out_dir: str = ""
    """Output directory (required): the adapter (lora) or checkpoint (full), manifest.json, metrics.jsonl,
    loss.png and quarantine/."""
    seed: int = 0
    """Seeds LoRA's init, the held-out pick, the shuffle and dropout."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: CUDA when available, else CPU."""
    threads: int = 0
    """torch CPU threads; 0 keeps torch's default."""
    eval_every: int = 0
    """Evaluate held-out loss every N steps; it is always evaluated before the first step and at the end."""
    log_every: int = 1
    """Write a metrics.jsonl line every N steps."""

    def __post_init__(self) -> None:
        if not self.base:
            raise ConfigError("base is required: the model directory to fine-tune")
        if not self.data.train:
            raise ConfigError("data.train is required: a JSON Lines file of chat conversations")
        if not self.out_dir:
            raise ConfigError("out_dir is required: where the adapter or checkpoint goes")
        for name, value in (
            ("data.seq_len", self.data.seq_len),
            ("lora.rank", self.lora.rank),
            ("batch.micro_batch", self.batch.micro_batch),
            ("batch.grad_accum", self.batch.grad_accum),
            ("batch.epochs", self.batch.epochs),
            ("log_every", self.log_every),
        ):
            if value < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {value}")
        if self.batch.max_steps is not None and self.batch.max_steps < 1:
            raise ConfigError(f"batch.max_steps must be ≥ 1, got {self.batch.max_steps}")
        if self.eval_every < 0 or self.threads < 0:
            raise ConfigError("eval_every and threads must be ≥ 0")
        if not 0 <= self.data.eval_fraction < 1:
            raise ConfigError(f"data.eval_fraction must be in [0, 1), got {self.data.eval_fraction}")
        if self.lora.alpha <= 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.lora.alpha}")
        if not 0 <= self.lora.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.lora.dropout}")
        if not self.lora.target_modules:
            raise ConfigError("lora.target_modules is empty: name at least one of " + ", ".join(LORA_TARGETS))
        for name in self.lora.target_modules:
            if name not in LORA_TARGETS:
                raise ConfigError(
                    f"lora.target_modules: {name!r} is not a LoRA target (known: {', '.join(LORA_TARGETS)})"
                )
        if self.optim.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.optim.lr}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["optim"]["betas"] = list(self.optim.betas)
        return d


def load_finetune_config(
    path: Path | str | None = None, overrides: list[str] | None = None
) -> FinetuneConfig:
    """`kiban finetune CONFIG.yaml --set k=v`: the YAML file with overrides, unknown keys refused by name."""
    return load_config(FinetuneConfig, Path(path) if path else None, overrides)
