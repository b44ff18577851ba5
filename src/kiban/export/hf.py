"""A clean Hugging Face directory of a kiban checkpoint: what transformers and vLLM need, nothing else.

export_hf("out/model", "out/model-hf", dtype="bfloat16")

out/model                              out/model-hf
  config.json, model.safetensors   ─▶    config.json, model.safetensors (re-written in `dtype`),
  generation_config.json                 generation_config.json
  tokenizer.json, tokenizer_config.json,  tokenizer files, chat_template.jinja (copied as they are)
  special_tokens_map.json                README.md: a model card with the lineage and licences
  manifest.json                          manifest.json: kind "model", the checkpoint as input,
  training_state/, checkpoints/,           its licences, `files` (sha256: what `kiban serve`
  metrics.jsonl, loss.png                  verifies)
                                         (training state, step checkpoints and metrics left out)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kiban.artifacts import MANIFEST, Manifest, input_record, sha256_file, write_manifest, write_text_atomic
from kiban.errors import ConfigError, DataError
from kiban.tokenizer.llama_style import TOKENIZER_FILES

DTYPES = ("float32", "bfloat16", "float16")


def export_hf(model_dir: Path | str, out_dir: Path | str, *, dtype: str = "float32") -> Path:
    """Write `out_dir` (which must not exist or be empty); returns it. manifest.json is written last."""
    import torch

    from kiban.model.hf import CONFIG, load_hf, save_hf

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not (model_dir / CONFIG).is_file():
        raise DataError(f"{model_dir}: no {CONFIG}; not a model directory")
    if out_dir.resolve() == model_dir.resolve():
        raise ConfigError(f"--out {out_dir} is the model itself")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"--out {out_dir} exists and is not empty")
    if not (model_dir / "tokenizer.json").is_file():
        raise DataError(f"{model_dir}: no tokenizer.json next to the model")
    out_dir.mkdir(parents=True, exist_ok=True)

    hf_cfg = json.loads((model_dir / CONFIG).read_text(encoding="utf-8"))
    ids = {k: hf_cfg.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    model = load_hf(model_dir, dtype=torch.float32)
    save_hf(model, out_dir, dtype=getattr(torch, dtype), **ids)
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out_dir / name)

    src = _source_manifest(model_dir)
    licenses = dict(src.get("licenses", {}))
    write_text_atomic(out_dir / "README.md", _model_card(model_dir, src, dtype, licenses))
    files = {
        p.relative_to(out_dir).as_posix(): sha256_file(p)
        for p in sorted(out_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    write_manifest(
        out_dir,
        Manifest(
            kind="model",
            config={"format": "hf", "dtype": dtype},
            inputs=[input_record(model_dir, src.get("kind", "model"), relative_to=out_dir)],
            stats={"params": sum(p.numel() for p in model.parameters()), **_stats(src)},
            licenses=licenses,
            extra={"files": files},
        ),
    )
    return out_dir


def _source_manifest(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from e


def _stats(src: dict[str, Any]) -> dict[str, Any]:
    s = src.get("stats", {})
    return {k: s[k] for k in ("steps", "tokens_seen", "eval_loss") if k in s}


def _model_card(model_dir: Path, src: dict[str, Any], dtype: str, licenses: dict[str, int]) -> str:
    lines = [
        f"# {model_dir.resolve().name}",
        "",
        f"A Llama-architecture model exported by kiban {src.get('kiban_version', '')} ({dtype} weights).",
        "",
        "## Training data licences (documents per licence)",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in sorted(licenses.items())] or ["- (no manifest: unknown)"]
    lines += ["", "## Lineage", ""]
    lines += [
        f"- {i.get('kind')}: `{i.get('path')}` sha256 `{i.get('sha256')}`" for i in src.get("inputs", [])
    ]
    lines += ["", "Run `kiban lineage` on this directory to check every hash back to the sources.", ""]
    return "\n".join(lines)
