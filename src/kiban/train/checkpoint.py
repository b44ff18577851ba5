"""Checkpoints: Hugging Face directories that also carry everything needed to resume exactly.

    out_dir/
      checkpoints/step-000100/      one per `checkpoint_every` steps (the newest `keep_checkpoints`)
        config.json model.safetensors generation_config.json    (save_hf: fp32 weights)
        tokenizer.json tokenizer_config.json ...                 (copied from the shards' tokenizer)
        manifest.json                                             kind "checkpoint": config, inputs, licences,
                                                                  stats, and `files`: {path: sha256} of the
                                                                  files above (what `kiban serve` verifies)
        training_state/state.json    step, tokens seen, world size, global batch, metrics so far
        training_state/optimizer.pt  AdamW state, full (gathered) and keyed by parameter name
        training_state/rng.pt        torch CPU (and CUDA) RNG states
      manifest.json, config.json, ...   the final checkpoint: the last step's files, hard-linked

A step checkpoint is written into `checkpoints/.tmp-step-…` and renamed into place when complete,
so a process killed while writing leaves no `step-*` directory; the final one gets its
`manifest.json` last, so `out_dir/manifest.json` exists only once the run has finished.
Weights are saved in fp32 (the optimizer's master copy), which is what makes resumption exact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kiban.artifacts import (
    MANIFEST,
    Manifest,
    _fsync_dir,
    input_record,
    sha256_file,
    write_json_atomic,
    write_manifest,
)
from kiban.errors import DataError
from kiban.model.config import ModelConfig
from kiban.model.hf import WEIGHTS, write_hf
from kiban.tokenizer.llama_style import TOKENIZER_FILES
from kiban.tokenizer.shards import TokenShards

CHECKPOINTS = "checkpoints"
STATE = "training_state"
KIND = "checkpoint"


def step_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS / f"step-{step:06d}"


def is_complete(ckpt: Path) -> bool:
    return (ckpt / MANIFEST).is_file() and (ckpt / STATE / "state.json").is_file()


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete step checkpoint in `out_dir`, or None."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and is_complete(p))
    return done[-1] if done else None


def clean_partial(out_dir: Path) -> None:
    """Remove `.tmp-*` directories a killed run left behind (rank 0, before training)."""
    root = Path(out_dir) / CHECKPOINTS
    if root.is_dir():
        for p in root.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)


def tokenizer_dir_of(shards: TokenShards) -> Path | None:
    """The tokenizer the shards' manifest names as an input, if it is still on disk."""
    for inp in shards.manifest.inputs:
        if inp.get("kind") == "tokenizer" and isinstance(inp.get("path"), str):
            path = Path(inp["path"])
            path = path if path.is_absolute() else (shards.directory / path).resolve()
            if (path / "tokenizer.json").is_file():
                return path
    return None


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model, optimizer) state dicts gathered on rank 0, on CPU, keyed by parameter name.

    A collective under FSDP: every rank calls it; ranks other than 0 get empty dicts.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)


def save_checkpoint(
    out_dir: Path,
    step: int,
    *,
    model_cfg: ModelConfig,
    model_state: dict[str, Any],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
    config: dict[str, Any],
    inputs: list[tuple[Path, str]],
    stats: dict[str, Any],
    shards: TokenShards,
    tokenizer_dir: Path | None,
    licenses: dict[str, int],
) -> Path:
    """Write `checkpoints/step-NNNNNN/` atomically (rank 0 only); returns its path."""
    final = step_dir(out_dir, step)
    if is_complete(final):
        return final
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_hf(
        model_cfg,
        model_state,
        tmp,
        dtype=torch.float32,
        bos_token_id=shards.bos_id,
        eos_token_id=shards.eos_id,
        pad_token_id=shards.pad_id,
    )
    if tokenizer_dir is not None:
        # A tokenizer directory gives all its files; a model directory (continual pre-training takes
        # the base model's tokenizer) only its tokenizer files, never its weights or metrics.
        is_model = (Path(tokenizer_dir) / "config.json").is_file()
        for f in sorted(Path(tokenizer_dir).iterdir()):
            if f.is_file() and f.name != MANIFEST and (not is_model or f.name in TOKENIZER_FILES):
                shutil.copy2(f, tmp / f.name)
    (tmp / STATE).mkdir()
    torch.save(optimizer_state, tmp / STATE / "optimizer.pt")
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / STATE / "rng.pt")
    write_json_atomic(tmp / STATE / "state.json", state)
    files = model_files(tmp, _model_paths(tmp))
    write_manifest(
        tmp,
        checkpoint_manifest(final, config=config, inputs=inputs, licenses=licenses, stats=stats, files=files),
    )
    for f in tmp.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    return final


def checkpoint_manifest(
    where: Path,
    *,
    config: dict[str, Any],
    inputs: list[tuple[Path, str]],
    licenses: dict[str, int],
    stats: dict[str, Any],
    files: dict[str, str] | None = None,
) -> Manifest:
    """kind "checkpoint" for the directory `where`: the resolved config, the inputs as (path, kind)
    (token shards, and for continual pre-training the base model and replay shards; paths relative
    to `where`, sha256 of their manifests), the licences they forward (`train_licenses`) and, as
    the top-level key `files`, the sha256 of every model file (see `model_files`)."""
    return Manifest(
        kind=KIND,
        config=config,
        inputs=[input_record(p, kind, relative_to=where) for p, kind in inputs],
        stats=stats,
        licenses=dict(licenses),
        extra={} if files is None else {"files": files},
    )


def _model_paths(ckpt: Path) -> list[str]:
    """Relative posix paths of a step checkpoint's files, all but manifest.json and training_state/."""
    rels = (f.relative_to(ckpt).as_posix() for f in ckpt.rglob("*") if f.is_file())
    return sorted(r for r in rels if r != MANIFEST and not r.startswith(f"{STATE}/"))


def model_files(directory: Path, paths: list[str]) -> dict[str, str]:
    """{relative posix path: sha256} of `paths` in `directory`, sorted by path.

    Written into the manifest as `files`, so that `kiban serve` can refuse a model whose weights,
    config or tokenizer were swapped or edited after training (kiban.serve.integrity). The rule
    for which files are listed (everything but manifest.json and training_state/) must stay the
    one `kiban.serve.integrity.file_hashes` applies to a step checkpoint.
    """
    return {rel: sha256_file(Path(directory) / rel) for rel in sorted(paths)}


def prune(out_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints (0: keep all)."""
    root = Path(out_dir) / CHECKPOINTS
    if keep <= 0 or not root.is_dir():
        return
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and is_complete(p))
    for p in done[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def write_final(
    out_dir: Path,
    ckpt: Path,
    *,
    config: dict[str, Any],
    inputs: list[tuple[Path, str]],
    stats: dict[str, Any],
    licenses: dict[str, int],
) -> None:
    """Make `out_dir` the final checkpoint: hard links to `ckpt`'s files, then manifest.json last."""
    out_dir = Path(out_dir)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for f in sorted(ckpt.rglob("*")):
        rel = f.relative_to(ckpt)
        if not f.is_file() or rel.as_posix() == MANIFEST:
            continue
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(f, target)  # same bytes, no copy: the step checkpoint may be pruned later
        except OSError:
            shutil.copy2(f, target)
    # Only the files linked from the step checkpoint are the model: out_dir also holds
    # metrics.jsonl, loss.png (redrawn after this) and checkpoints/, which serve never loads.
    files = model_files(out_dir, _model_paths(ckpt))
    write_manifest(
        out_dir,
        checkpoint_manifest(
            out_dir, config=config, inputs=inputs, licenses=licenses, stats=stats, files=files
        ),
    )


def model_licenses(model_dir: Path) -> dict[str, int]:
    """The licences a base model forwards: its manifest's table (a kiban artifact), else the
    `license:` of its Hugging Face model card (README.md front matter), else {"unknown": 1}.

    >>> model_licenses(Path("/nonexistent"))
    {'unknown': 1}
    """
    import yaml

    model_dir = Path(model_dir)
    if (model_dir / MANIFEST).is_file():
        from kiban.artifacts import read_manifest

        return dict(read_manifest(model_dir).licenses)
    card = model_dir / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            try:
                front = yaml.safe_load(text.split("---", 2)[1])
            except yaml.YAMLError:
                front = None
            lic = front.get("license") if isinstance(front, dict) else None
            if isinstance(lic, str) and lic.strip():
                return {lic.strip(): 1}
    return {"unknown": 1}


def merge_licenses(*tables: dict[str, int]) -> dict[str, int]:
    """Sum licence tables (counts of documents, or of models, per licence), largest first.

    >>> merge_licenses({"GPL-2+": 3}, {"GPL-2+": 1, "MIT": 2})
    {'GPL-2+': 4, 'MIT': 2}
    """
    out: dict[str, int] = {}
    for t in tables:
        for k, v in t.items():
            out[k] = out.get(k, 0) + int(v)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def read_state(ckpt: Path) -> dict[str, Any]:
    path = ckpt / STATE / "state.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable training state: {e}") from e


def load_model_state(ckpt: Path, model_cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The kiban state dict (embed_tokens.weight, layers.0…, lm_head.weight) from `model.safetensors`."""
    from safetensors.torch import load_file

    tensors = load_file(str(ckpt / WEIGHTS))
    state = {name.removeprefix("model."): t for name, t in tensors.items()}
    if model_cfg.tie_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    return state


def restore(
    ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer, model_cfg: ModelConfig
) -> dict[str, Any]:
    """Load weights, optimizer state and RNG states into an already parallelized model; returns state.json.

    Every rank reads the full state from disk and keeps its own shard (checkpoints live on a file
    system all ranks see, as with torchrun on one node or a shared mount).
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, load_model_state(ckpt, model_cfg), options=opts)
    optim_state = torch.load(ckpt / STATE / "optimizer.pt", map_location="cpu", weights_only=True)
    set_optimizer_state_dict(model, optimizer, optim_state, options=opts)
    rng = torch.load(ckpt / STATE / "rng.pt", map_location="cpu", weights_only=True)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return read_state(ckpt)
