"""Shapes of Llama-family models, and the presets kiban ships.

    >>> preset("8b").n_params()["total"]
    8030261248

Torch-free: the planner (`kiban plan`) and the CLI read shapes without importing torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kiban.config import from_dict, read_yaml
from kiban.errors import ConfigError


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1's RoPE frequency scaling (`rope_scaling: {rope_type: llama3, ...}` in `config.json`).

    Needed to import Llama 3.1+ checkpoints (and models continued from them) unchanged.
    """

    factor: float = 8.0
    """Divisor of the low RoPE frequencies (`factor`)."""
    low_freq_factor: float = 1.0
    """Wavelengths above original_max_seq_len / low_freq_factor are divided by `factor`."""
    high_freq_factor: float = 4.0
    """Wavelengths below original_max_seq_len / high_freq_factor are kept; between, interpolated."""
    original_max_seq_len: int = 8192
    """Context the model was pre-trained with (`original_max_position_embeddings`)."""

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ConfigError(f"model.rope_scaling.factor must be ≥ 1, got {self.factor}")
        if self.high_freq_factor <= self.low_freq_factor:
            raise ConfigError(
                f"model.rope_scaling.high_freq_factor ({self.high_freq_factor}) must be > "
                f"model.rope_scaling.low_freq_factor ({self.low_freq_factor})"
            )


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a Llama-family decoder (the fields of Hugging Face's `LlamaConfig`)."""

    vocab_size: int = 32_768
    """Vocabulary size; taken from the tokenizer when training from a kiban tokenizer."""
    dim: int = 384
    """Hidden size (`hidden_size`)."""
    n_layers: int = 6
    """Decoder blocks (`num_hidden_layers`)."""
    n_heads: int = 6
    """Query heads (`num_attention_heads`); head size = dim / n_heads."""
    n_kv_heads: int = 2
    """Key/value heads (`num_key_value_heads`): grouped-query attention when < n_heads."""
    ffn_hidden: int = 1024
    """SwiGLU inner size (`intermediate_size`)."""
    max_seq_len: int = 1024
    """Longest context the model is trained for (`max_position_embeddings`)."""
    rope_theta: float = 10_000.0
    """RoPE base frequency."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon (`rms_norm_eps`)."""
    tie_embeddings: bool = True
    """Share the input embedding and the output projection (`tie_word_embeddings`)."""
    rope_scaling: RopeScaling | None = None
    """Llama 3.1-style RoPE scaling (`rope_scaling`); None for plain RoPE, as kiban's presets use."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_hidden", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.dim % self.n_heads:
            raise ConfigError(f"model.dim ({self.dim}) must be divisible by model.n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"model.n_heads ({self.n_heads}) must be divisible by model.n_kv_heads ({self.n_kv_heads})"
            )
        if (self.dim // self.n_heads) % 2:
            raise ConfigError(f"head size dim/n_heads = {self.dim // self.n_heads} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def n_params(self) -> dict[str, int]:
        """Parameter counts: `embedding`, `output` (0 when tied), `per_layer`, `layers`, `total`."""
        d, kv = self.dim, self.n_kv_heads * self.head_dim
        attn = d * d + 2 * d * kv + d * d  # q, k, v, o (no biases)
        mlp = 3 * d * self.ffn_hidden  # gate, up, down
        per_layer = attn + mlp + 2 * d  # two RMSNorm weights
        embedding = self.vocab_size * d
        output = 0 if self.tie_embeddings else self.vocab_size * d
        layers = self.n_layers * per_layer
        return {
            "embedding": embedding,
            "output": output,
            "per_layer": per_layer,
            "layers": layers,
            "final_norm": d,
            "total": embedding + output + layers + d,
        }


# Published shapes: Llama 3 (Meta, "The Llama 3 Herd of Models", 2024, Table 3) and Llama 3.2 1B's
# config.json; the CPU presets are kiban's own, sized for demos on a laptop.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=128, max_seq_len=128
    ),
    "xs": ModelConfig(
        vocab_size=16_384, dim=384, n_layers=6, n_heads=6, n_kv_heads=2, ffn_hidden=1024, max_seq_len=512
    ),
    "s": ModelConfig(
        vocab_size=32_768, dim=512, n_layers=8, n_heads=8, n_kv_heads=4, ffn_hidden=1408, max_seq_len=1024
    ),
    "1b": ModelConfig(
        vocab_size=128_256,
        dim=2048,
        n_layers=16,
        n_heads=32,
        n_kv_heads=8,
        ffn_hidden=8192,
        max_seq_len=8192,
        rope_theta=500_000.0,
        tie_embeddings=True,
    ),
    "8b": ModelConfig(
        vocab_size=128_256,
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        ffn_hidden=14_336,
        max_seq_len=8192,
        rope_theta=500_000.0,
        tie_embeddings=False,
    ),
    "70b": ModelConfig(
        vocab_size=128_256,
        dim=8192,
        n_layers=80,
        n_heads=64,
        n_kv_heads=8,
        ffn_hidden=28_672,
        max_seq_len=8192,
        rope_theta=500_000.0,
        tie_embeddings=False,
    ),
}


def preset(name: str, **overrides: object) -> ModelConfig:
    """A preset's shape, with fields replaced (`preset("xs", vocab_size=32_000)`)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r} (known: {', '.join(PRESETS)})")
    return replace(PRESETS[name], **overrides)


def load_model_config(preset_or_path: str) -> ModelConfig:
    """A preset name (`8b`), or a YAML file: `preset: xs` plus field overrides, or the fields themselves.

    Fields a file leaves out take the preset's values (or ModelConfig's defaults without a preset).
    """
    if preset_or_path in PRESETS:
        return preset(preset_or_path)
    path = Path(preset_or_path)
    if not path.suffix and not path.exists():
        raise ConfigError(
            f"unknown model preset {preset_or_path!r} (known: {', '.join(PRESETS)}) and no such file"
        )
    data = read_yaml(path)
    base: dict[str, Any] = {}
    if "preset" in data:
        name = data.pop("preset")
        if not isinstance(name, str):
            raise ConfigError(f"{path}: field 'preset' must be a preset name, got {name!r}")
        base = dataclasses.asdict(preset(name))
    return from_dict(ModelConfig, {**base, **data}, where=str(path))
