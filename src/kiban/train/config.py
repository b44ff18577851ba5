"""`kiban train` configuration: one dataclass per section, a docstring under each field.

    >>> cfg = TrainConfig(data=DataConfig(shards="out/tokens"), out_dir="out/model")
    >>> cfg.batch.micro_batch, cfg.schedule.kind, cfg.precision
    (8, 'cosine', 'auto')
    >>> TrainConfig(data=DataConfig(shards="t"), out_dir="o", batch=BatchConfig(max_steps=None))
    Traceback (most recent call last):
    ...
    kiban.errors.ConfigError: set one of batch.max_steps or batch.max_tokens

Torch-free, like every config: `kiban train --help` and config errors never load torch.
Checks that need the shards or the machine (vocabulary, seq_len against the model, memory,
bf16 on CPU) happen in `loop.run`, still before the first step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kiban.config import load_config
from kiban.errors import ConfigError


@dataclass
class ModelSection:
    """Which model to train."""

    preset: str = "tiny"
    """A preset name (`tiny xs s 1b 8b 70b`) or a YAML file (`preset: xs` plus fields; see docs/plan.md)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """ModelConfig fields to replace, e.g. `{n_layers: 4}`. `vocab_size` defaults to the shards'; a
    larger one (padded for matmul efficiency) is allowed, a smaller one is refused."""
    init_from: str | None = None
    """Continual pre-training: start from this model directory (a kiban checkpoint, or a local Hugging
    Face `LlamaForCausalLM` directory with its tokenizer) instead of a random init. Its config.json
    gives the shape (`preset` and `overrides` are then not used); the shards must have been made with
    its tokenizer.json; its lineage and licences become part of the new checkpoint's."""


@dataclass
class DataConfig:
    """Where the tokens come from."""

    shards: str = ""
    """Token-shard directory written by `kiban tokenize` (required)."""
    eval_shards: str | None = None
    """A separate held-out token-shard directory; when unset, `eval_fraction` of each shard is held out."""
    eval_fraction: float = 0.05
    """Without `eval_shards`: the last fraction of the documents of every shard is held out for eval
    (contiguous, so no training window ever reads a held-out token). 0 turns eval off."""
    seq_len: int = 128
    """Tokens per training sequence; must be ≤ the model's max_seq_len. Windows of seq_len + 1
    tokens are cut at uniformly random offsets (they may cross the EOS between documents)."""
    tokenizer: str | None = None
    """Tokenizer directory to check the shards against (sha256 of tokenizer.json and vocabulary size).
    When unset, the tokenizer the shards' manifest names as an input is used if it still exists; its
    files are copied into every checkpoint."""
    replay_shards: str | None = None
    """Continual pre-training: token shards of the original data (same tokenizer) mixed into every
    batch, `replay_ratio` of the samples, against forgetting. Their held-out tail (`eval_fraction`) is
    evaluated too, as `replay_eval_loss`."""
    replay_ratio: float = 0.0
    """Fraction of each batch's sequences drawn from `replay_shards` (each sample picks its source with
    its own seeded draw); 0 with replay_shards set only evaluates on them."""


@dataclass
class OptimConfig:
    """AdamW (Loshchilov & Hutter 2019). Weight decay applies to the matmul weights only: not to
    norms (1-D) nor to the embedding (and so not to a tied output head), as OLMo 2 (Team OLMo 2024,
    §3.2.1) found more stable."""

    lr: float = 1e-3
    """Peak learning rate (after warmup)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam β1, β2 (0.95: Llama 2, Touvron et al. 2023, §2.2)."""
    weight_decay: float = 0.1
    """Decoupled weight decay on matmul weights."""
    eps: float = 1e-8
    """Adam epsilon."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, a pure function of the step (see `schedule.py`)."""

    kind: Literal["cosine", "wsd"] = "cosine"
    """`cosine`: warmup then cosine decay to min_lr; `wsd`: warmup, constant, then a linear decay over
    the last `decay_fraction` of the steps (Hägele et al. 2024)."""
    warmup_steps: int = 10
    """Linear warmup from lr/warmup_steps to lr."""
    decay_fraction: float = 0.2
    """`wsd` only: fraction of max_steps spent decaying."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""


@dataclass
class BatchConfig:
    """Batch shape and run length. Global batch = micro_batch × grad_accum × processes sequences."""

    micro_batch: int = 8
    """Sequences per forward/backward pass on each process."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    max_steps: int | None = 200
    """Optimizer steps to run. Set this or max_tokens (set the other to null)."""
    max_tokens: int | None = None
    """Training tokens to run; converted to steps with the global batch (rounded up)."""


@dataclass
class TrainConfig:
    """Everything `kiban train` needs; `examples/train-tiny.yaml` shows each section."""

    data: DataConfig = field(default_factory=DataConfig)
    """Token shards, held-out data and sequence length."""
    model: ModelSection = field(default_factory=ModelSection)
    """Model preset and overrides."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW and gradient clipping."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Learning-rate schedule."""
    batch: BatchConfig = field(default_factory=BatchConfig)
    """Batch shape and run length."""
    out_dir: str = ""
    """Output directory (required): the final checkpoint artifact, metrics.jsonl, loss.png and
    checkpoints/step-NNNNNN/. A run whose out_dir holds a checkpoint of the same config resumes."""
    seed: int = 0
    """Seeds the model initialisation and the batch sampler."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: CUDA when available, else CPU. Under torchrun each process takes GPU LOCAL_RANK."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """`bf16`: bf16 autocast with fp32 weights and optimizer state, on GPU only (refused on CPU, where
    bf16 matmuls are slower than fp32 on most machines); `auto`: bf16 on GPU, fp32 on CPU."""
    compile: bool = False
    """`torch.compile` each decoder block (GPU; on CPU it needs a C++ compiler and is rarely faster)."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass: less memory, ~1/3 more compute."""
    parallel: Literal["auto", "none", "ddp", "fsdp"] = "auto"
    """`auto`: `fsdp` under torchrun with more than one process, else `none`."""
    eval_every: int = 50
    """Evaluate held-out loss every N steps (and at the end); 0: only at the end."""
    eval_batches: int = 4
    """Micro-batches of held-out data per evaluation (the same ones every time)."""
    checkpoint_every: int = 100
    """Save a resumable checkpoint every N steps (and at the end); 0: only at the end."""
    keep_checkpoints: int = 2
    """Step checkpoints to keep (the newest); 0 keeps all."""
    threads: int = 0
    """torch CPU threads per process; 0 keeps torch's default."""
    deterministic: bool = False
    """`torch.use_deterministic_algorithms(True)`: same losses bit for bit across runs (slower on GPU)."""
    log_every: int = 1
    """Write a metrics.jsonl line every N steps."""

    def __post_init__(self) -> None:
        _positive(self, "data.seq_len", "batch.micro_batch", "batch.grad_accum", "log_every")
        _non_negative(
            self,
            "schedule.warmup_steps",
            "eval_every",
            "eval_batches",
            "checkpoint_every",
            "keep_checkpoints",
            "threads",
            "optim.weight_decay",
            "optim.grad_clip",
        )
        if not self.data.shards:
            raise ConfigError("data.shards is required: a token-shard directory from `kiban tokenize`")
        if not self.out_dir:
            raise ConfigError("out_dir is required: where checkpoints and metrics go")
        b = self.batch
        if (b.max_steps is None) == (b.max_tokens is None):
            raise ConfigError("set one of batch.max_steps or batch.max_tokens")
        for name in ("max_steps", "max_tokens"):
            value = getattr(b, name)
            if value is not None and value < 1:
                raise ConfigError(f"batch.{name} must be ≥ 1, got {value}")
        if not 0 <= self.data.replay_ratio < 1:
            raise ConfigError(f"data.replay_ratio must be in [0, 1), got {self.data.replay_ratio}")
        if self.data.replay_ratio > 0 and not self.data.replay_shards:
            raise ConfigError("data.replay_ratio is set but data.replay_shards is not: which data to replay?")
        if self.model.init_from and self.model.overrides:
            raise ConfigError(
                "model.overrides cannot be combined with model.init_from: the shape comes from "
                f"{self.model.init_from}/config.json"
            )
        if not 0 <= self.data.eval_fraction < 1:
            raise ConfigError(f"data.eval_fraction must be in [0, 1), got {self.data.eval_fraction}")
        if self.optim.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.optim.lr}")
        if not all(0 <= beta < 1 for beta in self.optim.betas) or len(self.optim.betas) != 2:
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(self.optim.betas)}")
        if self.optim.eps <= 0:
            raise ConfigError(f"optim.eps must be > 0, got {self.optim.eps}")
        s = self.schedule
        if not 0 < s.decay_fraction <= 1:
            raise ConfigError(f"schedule.decay_fraction must be in (0, 1], got {s.decay_fraction}")
        if not 0 <= s.min_lr_ratio <= 1:
            raise ConfigError(f"schedule.min_lr_ratio must be in [0, 1], got {s.min_lr_ratio}")
        if b.max_steps is not None and s.warmup_steps >= b.max_steps:
            raise ConfigError(
                f"schedule.warmup_steps ({s.warmup_steps}) must be < batch.max_steps ({b.max_steps})"
            )

    def max_steps_for(self, world_size: int) -> int:
        """Optimizer steps of this run with `world_size` processes."""
        if self.batch.max_steps is not None:
            return self.batch.max_steps
        per_step = self.tokens_per_step(world_size)
        return -(-int(self.batch.max_tokens or 0) // per_step)

    def tokens_per_step(self, world_size: int) -> int:
        return self.batch.micro_batch * self.batch.grad_accum * world_size * self.data.seq_len

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["optim"]["betas"] = list(self.optim.betas)
        return d


# Fields that may change between a run and its resumption: they change neither the data order
# nor the arithmetic of a step. The global batch (micro_batch × grad_accum × processes) is checked
# separately, against the saved state: it may be split differently, but not changed.
RESUMABLE_CHANGES = frozenset(
    {
        "out_dir",
        "batch.micro_batch",
        "batch.grad_accum",
        "eval_every",
        "eval_batches",
        "checkpoint_every",
        "keep_checkpoints",
        "threads",
        "compile",
        "activation_checkpointing",
        "parallel",
        "device",
        "log_every",
    }
)


def config_diff(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of fields that differ, ignoring `RESUMABLE_CHANGES`."""
    out = []
    for key in sorted(set(saved) | set(current)):
        if f"{prefix}{key}" in RESUMABLE_CHANGES:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "overrides":
            out.extend(config_diff(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def load_train_config(path: Path | str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """`kiban train CONFIG.yaml --set k=v`: the YAML file with overrides, unknown keys refused by name."""
    return load_config(TrainConfig, Path(path) if path else None, overrides)


def _get(cfg: TrainConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _positive(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if _get(cfg, name) < 1:
            raise ConfigError(f"{name} must be ≥ 1, got {_get(cfg, name)}")


def _non_negative(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if _get(cfg, name) < 0:
            raise ConfigError(f"{name} must be ≥ 0, got {_get(cfg, name)}")
