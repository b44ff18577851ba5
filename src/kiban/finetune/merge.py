"""`kiban finetune merge ADAPTER --out DIR`: fold a LoRA adapter into its base model.

    merge_adapter("out/sft", "out/sft-merged")            # base from adapter_config.json
    merge_adapter("peft-adapter", "out/m", base="model")   # an adapter PEFT wrote, any local base

The result is a plain Hugging Face `LlamaForCausalLM` directory (fp32 safetensors, config.json,
generation_config.json, the base's tokenizer files) that transformers, vLLM, llama.cpp's converter
and `kiban serve` load, with a manifest (kind "checkpoint") whose inputs are the adapter and the
base model, so `kiban lineage` walks back through both; the adapter's licences flow forward.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kiban.artifacts import MANIFEST, Manifest, input_record, read_manifest, write_manifest
from kiban.errors import DataError
from kiban.finetune import lora
from kiban.finetune.loop import ADAPTER_KIND
from kiban.tokenizer.llama_style import TOKENIZER_FILES
from kiban.train import checkpoint as ckpt


def merge_adapter(
    adapter_dir: Path | str, out_dir: Path | str, *, base: Path | str | None = None
) -> dict[str, Any]:
    """Write base + adapter, folded, to `out_dir`; returns the manifest's stats."""
    from kiban.model.hf import load_hf, write_hf

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    acfg = lora.read_adapter_config(adapter_dir)
    base_dir = Path(base) if base else Path(str(acfg.get("base_model_name_or_path") or ""))
    if not base_dir.is_absolute() and not base_dir.is_dir():
        base_dir = adapter_dir / base_dir
    if not (base_dir / "config.json").is_file():
        raise DataError(
            f"{adapter_dir / lora.ADAPTER_CONFIG}: base model {str(base_dir)!r} (base_model_name_or_path) is "
            "not a local model directory; pass --base DIR"
        )
    model = load_hf(base_dir)
    lora.load_adapter(model, adapter_dir)
    n_layers = len(lora.lora_layers(model))
    lora.merge(model)
    hf = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    ids = {k: hf.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    write_hf(model.cfg, model.state_dict(), out_dir, **ids)
    paths = ["config.json", "model.safetensors", "generation_config.json"]
    for name in TOKENIZER_FILES:
        src = adapter_dir / name if (adapter_dir / name).is_file() else base_dir / name
        if src.is_file():
            shutil.copy2(src, out_dir / name)
            paths.append(name)
    adapter_kind = ADAPTER_KIND
    licenses = ckpt.model_licenses(base_dir)
    if (adapter_dir / MANIFEST).is_file():
        am = read_manifest(adapter_dir)
        adapter_kind, licenses = am.kind, dict(am.licenses)
    inputs = [
        input_record(adapter_dir, adapter_kind, relative_to=out_dir),
        input_record(
            base_dir, ckpt.KIND if (base_dir / MANIFEST).is_file() else "model", relative_to=out_dir
        ),
    ]
    stats = {
        "merged_layers": n_layers,
        "rank": acfg["r"],
        "lora_alpha": acfg["lora_alpha"],
        "params": sum(p.numel() for p in model.parameters()),
    }
    config = {"adapter": str(adapter_dir), "base": str(base_dir)}
    files = ckpt.model_files(out_dir, paths)
    write_manifest(
        out_dir,
        Manifest(
            kind=ckpt.KIND,
            config=config,
            inputs=inputs,
            stats=stats,
            licenses=licenses,
            extra={"files": files},
        ),
    )
    return {**stats, "out_dir": str(out_dir)}
