"""Hugging Face `LlamaForCausalLM` directories: write kiban models as them, read them as kiban models.

    save_hf(model, "ckpt")          # config.json, model.safetensors, generation_config.json
    model = load_hf("ckpt")         # a kiban checkpoint or any local HF Llama (single or sharded)

Names map by one prefix: kiban's `layers.0.mlp.up_proj.weight` is HF's
`model.layers.0.mlp.up_proj.weight`; `lm_head.weight` is the same in both, and is not stored when
the embeddings are tied (as `transformers` does). `config.json` uses the classic field names
(`rope_theta`, `rope_scaling`), which transformers 4.x and 5.x, vLLM and llama.cpp's converter
all read; `load_hf` also reads transformers 5's `rope_parameters`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from kiban.artifacts import atomic_path, write_json_atomic
from kiban.errors import ConfigError, DataError
from kiban.model.config import ModelConfig, RopeScaling
from kiban.model.llama import Llama

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
GENERATION_CONFIG = "generation_config.json"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Defaults of transformers' LlamaConfig, used for fields a config.json leaves out (as transformers does).
_HF_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
}


# ---------------------------------------------------------------------------------------------
# config.json <-> ModelConfig


def config_to_hf(
    cfg: ModelConfig,
    *,
    dtype: torch.dtype = torch.float32,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> dict[str, Any]:
    """The `config.json` of a `LlamaForCausalLM` with this shape (every LlamaConfig field).

    Token ids are written even when None: transformers would otherwise assume bos=1, eos=2.
    """
    rope_scaling = None
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        rope_scaling = {
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_seq_len,
        }
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "initializer_range": 0.02,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": rope_scaling,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": cfg.tie_embeddings,
        "use_cache": True,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "torch_dtype": _dtype_name(dtype),
    }


def config_from_hf(d: dict[str, Any], *, where: str = CONFIG) -> ModelConfig:
    """A `LlamaForCausalLM` config.json as a ModelConfig; ConfigError naming the field kiban cannot run."""

    def get(key: str) -> Any:
        return d.get(key, _HF_DEFAULTS.get(key))

    def refuse(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: field '{key}' = {d.get(key)!r}: {why}")

    if d.get("model_type", "llama") != "llama":
        raise refuse("model_type", "kiban imports only Llama-family models (model_type 'llama')")
    if get("hidden_act") != "silu":
        raise refuse("hidden_act", "kiban's Llama supports only 'silu' (SwiGLU)")
    for key in ("attention_bias", "mlp_bias"):
        if d.get(key):
            raise refuse(key, "kiban's Llama has no biases")
    hidden, n_heads = get("hidden_size"), get("num_attention_heads")
    if d.get("head_dim") is not None and d["head_dim"] * n_heads != hidden:
        raise refuse(
            "head_dim", f"kiban needs head_dim = hidden_size / num_attention_heads = {hidden // n_heads}"
        )

    # RoPE: classic top-level rope_theta + rope_scaling, or transformers 5's rope_parameters.
    params = d.get("rope_parameters") or {}
    scaling_key = "rope_scaling" if d.get("rope_scaling") else "rope_parameters"
    scaling = d.get("rope_scaling") or params
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    rope_theta = d.get("rope_theta", params.get("rope_theta", _HF_DEFAULTS["rope_theta"]))
    rope_scaling = None
    if rope_type == "llama3":
        try:
            rope_scaling = RopeScaling(
                factor=float(scaling["factor"]),
                low_freq_factor=float(scaling["low_freq_factor"]),
                high_freq_factor=float(scaling["high_freq_factor"]),
                original_max_seq_len=int(scaling["original_max_position_embeddings"]),
            )
        except KeyError as e:
            raise refuse(scaling_key, f"llama3 RoPE scaling without {e.args[0]!r}") from e
    elif rope_type != "default":
        raise refuse(scaling_key, f"RoPE scaling {rope_type!r} is not supported (only none or 'llama3')")

    try:
        return ModelConfig(
            vocab_size=int(get("vocab_size")),
            dim=int(hidden),
            n_layers=int(get("num_hidden_layers")),
            n_heads=int(n_heads),
            n_kv_heads=int(d.get("num_key_value_heads") or n_heads),
            ffn_hidden=int(get("intermediate_size")),
            max_seq_len=int(get("max_position_embeddings")),
            rope_theta=float(rope_theta),
            norm_eps=float(get("rms_norm_eps")),
            tie_embeddings=bool(get("tie_word_embeddings")),
            rope_scaling=rope_scaling,
        )
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e


# ---------------------------------------------------------------------------------------------
# save


def save_hf(
    model: Llama,
    out_dir: Path | str,
    *,
    dtype: torch.dtype = torch.float32,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> None:
    """Write `model` as a Hugging Face directory that `LlamaForCausalLM.from_pretrained` loads.

    Each file is written atomically; files already in `out_dir` (tokenizer, manifest) are kept.
    """
    write_hf(
        model.cfg,
        model.state_dict(),
        out_dir,
        dtype=dtype,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def write_hf(
    cfg: ModelConfig,
    state_dict: dict[str, torch.Tensor],
    out_dir: Path | str,
    *,
    dtype: torch.dtype = torch.float32,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> None:
    """`save_hf` from a full (gathered) kiban state dict, e.g. one FSDP2 collected on rank 0."""
    from safetensors.torch import save_file

    if dtype not in _DTYPES.values():
        raise ConfigError(f"save_hf: dtype must be one of {', '.join(_DTYPES)}, got {dtype}")
    out_dir = Path(out_dir)
    tensors = {}
    for name, t in state_dict.items():
        if name == "lm_head.weight" and cfg.tie_embeddings:
            continue  # the embedding, stored once
        hf_name = name if name.startswith("lm_head.") else f"model.{name}"
        tensors[hf_name] = t.detach().to(device="cpu", dtype=dtype).contiguous()
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    ids = {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id, "pad_token_id": pad_token_id}
    hf_cfg = config_to_hf(cfg, dtype=dtype, **ids)
    write_json_atomic(out_dir / CONFIG, hf_cfg)
    write_json_atomic(out_dir / GENERATION_CONFIG, {k: v for k, v in ids.items() if v is not None})


def _dtype_name(dtype: torch.dtype) -> str:
    for name, dt in _DTYPES.items():
        if dt == dtype:
            return name
    raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype}")


# ---------------------------------------------------------------------------------------------
# load


def load_hf(directory: Path | str, *, dtype: torch.dtype | None = torch.float32) -> Llama:
    """A kiban checkpoint or a local Hugging Face Llama directory as a `Llama` (on CPU, in eval mode).

    `dtype=None` keeps the checkpoint's dtype. Only safetensors are read (never pickles).
    """
    directory = Path(directory)
    config_path = directory / CONFIG
    if not config_path.is_file():
        raise DataError(f"{directory}: no {CONFIG}; not a Hugging Face model directory")
    try:
        hf_cfg = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{config_path}: not valid JSON: {e}") from e
    cfg = config_from_hf(hf_cfg, where=str(config_path))
    tensors = _read_safetensors(directory)

    state: dict[str, torch.Tensor] = {}
    for hf_name, t in tensors.items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # a buffer some old checkpoints stored; kiban recomputes it
        if hf_name == "lm_head.weight" and cfg.tie_embeddings:
            continue  # some tied checkpoints store it anyway; the embedding is the weight
        name = hf_name.removeprefix("model.") if hf_name.startswith("model.") else hf_name
        state[name] = t if dtype is None else t.to(dtype)

    with torch.device("meta"):
        model = Llama(cfg)
    expected = {k for k in model.state_dict() if not (cfg.tie_embeddings and k == "lm_head.weight")}
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        what = f"missing {_hf_names(missing)}" if missing else f"unexpected {_hf_names(unexpected)}"
        raise DataError(f"{directory}: weights do not match {CONFIG}: {what}")
    for name, t in state.items():
        want = tuple(model.get_parameter(name).shape)
        if tuple(t.shape) != want:
            raise DataError(f"{directory}: model.{name} has shape {tuple(t.shape)}, {CONFIG} says {want}")
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    model.init_rope()
    return model.eval()


def _hf_names(names: list[str]) -> str:
    shown = [n if n.startswith("lm_head.") else f"model.{n}" for n in names[:3]]
    return ", ".join(shown) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = directory / WEIGHTS_INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = sorted(set(weight_map.values()))
    elif (directory / WEIGHTS).is_file():
        files = [WEIGHTS]
    else:
        pickles = sorted(p.name for p in directory.glob("*.bin"))
        hint = f" (found {', '.join(pickles)}: convert to safetensors first)" if pickles else ""
        raise DataError(f"{directory}: no {WEIGHTS} or {WEIGHTS_INDEX}{hint}")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        path = directory / name
        if not path.is_file():
            raise DataError(f"{index}: lists {name}, which is not in {directory}")
        tensors.update(load_file(str(path)))
    return tensors
