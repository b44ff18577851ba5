"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): y = W x + s · B A x.

`inject(model, rank=, alpha=, dropout=, targets=)` replaces each targeted `nn.Linear` of a kiban
`Llama` (by its Hugging Face name: q_proj, …, down_proj) with a `LoRALinear` that keeps the frozen
original as `base_layer` and adds A (r × in, Kaiming-uniform as `nn.Linear` initialises) and
B (out × r, zeros), so training starts from the base model's function; s = alpha / r.

Adapters are written as PEFT writes them, so PEFT (`PeftModel.from_pretrained`) and everything
built on it load them:

    adapter_config.json          {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": [...], ...}
    adapter_model.safetensors    base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight  (r, in)
                                 base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight  (out, r)

(kiban's `layers.0.self_attn.q_proj` is `model.layers.0.self_attn.q_proj` in `LlamaForCausalLM`, which
PEFT wraps as `base_model.model`.) `load_adapter` reads those files back, kiban's or PEFT's own
(which may carry the adapter name, `.lora_A.default.weight`); `merge` folds W += s · B A.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kiban.artifacts import atomic_path, write_json_atomic
from kiban.errors import DataError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update. # x (..., in) -> (..., out)"""

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base_layer = base
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own init, as PEFT uses
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight (what code reading `.weight` of a projection expects)."""
        return self.base_layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # s·B is scaled (out × r), not the (..., out) update: one activation-sized temporary less
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B * self.scaling)  # (..., out)
        return self.base_layer(x) + update

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """The base layer with W += s · B A folded in (a new module; this one is unchanged)."""
        base = self.base_layer
        out = nn.Linear(base.in_features, base.out_features, bias=False, device=base.weight.device)
        delta = (self.lora_B.float() @ self.lora_A.float()) * self.scaling  # (out, in)
        out.weight.copy_((base.weight.float() + delta).to(base.weight.dtype))
        return out.to(base.weight.dtype)


def _targets(model: nn.Module, targets: list[str]) -> list[str]:
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets and name.startswith("layers.")
    ]
    if not names:
        raise DataError(f"no linear layer named {', '.join(targets)} in the model")
    return names


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def inject(model: nn.Module, *, rank: int, alpha: float, dropout: float, targets: list[str]) -> list[str]:
    """Wrap the targeted layers in place and freeze everything else; returns the wrapped names."""
    for p in model.parameters():
        p.requires_grad_(False)
    names = _targets(model, targets)
    for name in names:
        _set(model, name, LoRALinear(model.get_submodule(name), rank=rank, alpha=alpha, dropout=dropout))
    return names


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def peft_key(name: str, which: str) -> str:
    """kiban module name -> PEFT's saved key.

    >>> peft_key("layers.0.self_attn.q_proj", "A")
    'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'
    """
    return f"{PEFT_PREFIX}model.{name}.lora_{which}.weight"


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors under PEFT's key names, on CPU, contiguous."""
    out = {}
    for name, m in lora_layers(model).items():
        out[peft_key(name, "A")] = m.lora_A.detach().to("cpu").contiguous()
        out[peft_key(name, "B")] = m.lora_B.detach().to("cpu").contiguous()
    return out


def adapter_config(
    *, rank: int, alpha: float, dropout: float, targets: list[str], base: str
) -> dict[str, Any]:
    """adapter_config.json as PEFT's LoraConfig writes it (the fields that matter for loading)."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": sorted(targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": None,
    }


def save_adapter(model: nn.Module, out_dir: Path, config: dict[str, Any]) -> None:
    """adapter_model.safetensors + adapter_config.json, each written atomically."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    with atomic_path(out_dir / ADAPTER_WEIGHTS) as tmp:
        save_file(adapter_state(model), str(tmp), metadata={"format": "pt"})
    write_json_atomic(out_dir / ADAPTER_CONFIG, config)


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = Path(adapter_dir) / ADAPTER_CONFIG
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataError(f"{path}: not found; not a LoRA adapter directory") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from e
    if cfg.get("peft_type") != "LORA":
        raise DataError(f"{path}: field 'peft_type' is {cfg.get('peft_type')!r}; only LORA adapters are read")
    for key, bad in (("use_dora", True), ("use_rslora", True), ("bias", "all"), ("bias", "lora_only")):
        if cfg.get(key) == bad:
            raise DataError(f"{path}: field '{key}' = {bad!r} is not supported")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise DataError(f"{path}: per-layer rank_pattern / alpha_pattern are not supported")
    targets = cfg.get("target_modules")
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise DataError(f"{path}: field 'target_modules' must be a list of layer names, got {targets!r}")
    return cfg


def load_adapter(model: nn.Module, adapter_dir: Path) -> dict[str, Any]:
    """Inject the adapter of `adapter_dir` (kiban's or PEFT's) into `model`; returns its config."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    cfg = read_adapter_config(adapter_dir)
    rank, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    names = inject(model, rank=rank, alpha=alpha, dropout=0.0, targets=cfg["target_modules"])
    path = adapter_dir / ADAPTER_WEIGHTS
    if not path.is_file():
        raise DataError(f"{adapter_dir}: no {ADAPTER_WEIGHTS}")
    tensors = {k.replace(".default.weight", ".weight"): v for k, v in load_file(str(path)).items()}
    expected = {peft_key(n, w) for n in names for w in "AB"}
    missing, unexpected = sorted(expected - tensors.keys()), sorted(tensors.keys() - expected)
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise DataError(f"{path}: tensors do not match {ADAPTER_CONFIG}: {what}")
    layers = lora_layers(model)
    with torch.no_grad():
        for name in names:
            m = layers[name]
            for which, param in (("A", m.lora_A), ("B", m.lora_B)):
                t = tensors[peft_key(name, which)]
                if tuple(t.shape) != tuple(param.shape):
                    raise DataError(
                        f"{path}: {peft_key(name, which)} has shape {tuple(t.shape)}, the model needs "
                        f"{tuple(param.shape)} (another base model?)"
                    )
                param.copy_(t.to(param.dtype))
    return cfg


def merge(model: nn.Module) -> nn.Module:
    """Fold every LoRALinear into a plain nn.Linear, in place; the model is then a plain Llama."""
    for name, m in lora_layers(model).items():
        _set(model, name, m.merged())
    return model


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
