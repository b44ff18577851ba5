"""`kiban finetune CONFIG.yaml`: instruction-tune a model on chat data, full or LoRA.

    from kiban.finetune import load_finetune_config, run
    stats = run(load_finetune_config("examples/finetune-lora.yaml", ["base=out/demo/model"]))

The steps: read and render the conversations (bad lines quarantined), pack them into rows (loss on
assistant tokens only, no attention across conversations), load the base model (`kiban.model.hf`),
wrap it with LoRA or train every weight, and run AdamW with `kiban train`'s optimizer, schedule,
clipping and metrics. The held-out loss is taken before the first step and at the end.

Output (`out_dir`): for LoRA, a PEFT adapter directory (adapter_config.json,
adapter_model.safetensors) plus the base's tokenizer files; for full fine-tuning, a Hugging Face
checkpoint like `kiban train`'s. Both with manifest.json (written last; kind "adapter" or
"checkpoint") whose inputs are the base model and the chat files (sha256), so `kiban lineage` walks
back through the base model to its corpus; licences of both flow forward. Also metrics.jsonl,
loss.png and quarantine/<file>.jsonl. A run is not resumable: a killed one starts again from scratch.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from kiban.artifacts import MANIFEST, Manifest, input_record, read_manifest, write_manifest
from kiban.errors import ConfigError, DataError
from kiban.finetune import lora
from kiban.finetune.chat_data import ChatRenderer, Example, Quarantined, load_examples
from kiban.finetune.config import FinetuneConfig
from kiban.finetune.packing import Rows, attention_mask, pack
from kiban.progress import Mode, Progress
from kiban.tokenizer.llama_style import TOKENIZER_FILES
from kiban.train import checkpoint as ckpt
from kiban.train.loop import NonFiniteLoss, build_optimizer, keep_freed_memory
from kiban.train.metrics import LOSS_PNG, MetricsLog, plot_loss
from kiban.train.schedule import lr_at

ADAPTER_KIND = "adapter"


def run(cfg: FinetuneConfig, *, progress: Mode = "quiet") -> dict[str, Any]:
    """Fine-tune per `cfg`; returns the stats written into the manifest (and where the output is)."""
    out_dir = Path(cfg.out_dir)
    done = _finished(out_dir, cfg.to_dict())
    if done is not None:
        return done
    keep_freed_memory()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    base = Path(cfg.base)
    if not (base / "config.json").is_file():
        raise ConfigError(
            f"base: {base} has no config.json; give a kiban checkpoint or a Hugging Face Llama directory"
        )
    renderer = ChatRenderer(base)
    train_ex, eval_ex, quarantined = _examples(cfg, renderer)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    _write_quarantine(out_dir, quarantined)
    if not train_ex:
        raise DataError(
            f"{cfg.data.train}: no usable conversation ({len(quarantined)} quarantined; see {out_dir}/quarantine/)"
        )
    pad_id = _pad_id(base)
    device = torch.device(
        "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    )

    from kiban.model.hf import load_hf

    model = load_hf(base).to(device)
    if model.cfg.max_seq_len < cfg.data.seq_len:
        raise ConfigError(
            f"data.seq_len ({cfg.data.seq_len}) exceeds the model's max_seq_len ({model.cfg.max_seq_len})"
        )
    torch.manual_seed(cfg.seed)
    if cfg.method == "lora":
        lcfg = cfg.lora
        lora.inject(
            model, rank=lcfg.rank, alpha=lcfg.alpha, dropout=lcfg.dropout, targets=lcfg.target_modules
        )
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    optimizer = build_optimizer(model, cfg.optim)

    epoch_rows = [pack(train_ex, seq_len=cfg.data.seq_len, pad_id=pad_id, pack=cfg.data.pack, seed=cfg.seed)]
    per_step = cfg.batch.micro_batch * cfg.batch.grad_accum
    steps_per_epoch = math.ceil(len(epoch_rows[0]) / per_step)
    max_steps = cfg.batch.max_steps or steps_per_epoch * cfg.batch.epochs
    eval_rows = (
        pack(eval_ex, seq_len=cfg.data.seq_len, pad_id=pad_id, pack=cfg.data.pack, seed=cfg.seed)
        if eval_ex
        else None
    )

    log = MetricsLog(out_dir, [])
    bar = Progress("finetune", total=max_steps, mode=progress, unit="steps")
    t_start = time.perf_counter()
    stats: dict[str, Any] = {
        "method": cfg.method,
        "train_examples": len(train_ex),
        "eval_examples": len(eval_ex),
        "quarantined": len(quarantined),
        "rows_per_epoch": len(epoch_rows[0]),
        "packing_efficiency": round(
            float((epoch_rows[0].docs >= 0).float().mean()) if len(epoch_rows[0]) else 0.0, 4
        ),
        "trainable_params": lora.trainable(model),
        "total_params": sum(p.numel() for p in model.parameters()),
    }
    init_eval = evaluate(model, eval_rows, cfg.batch.micro_batch, device) if eval_rows is not None else None
    if init_eval is not None:
        log.log({"step": 0, "eval_loss": init_eval})
    tokens_seen = supervised = 0
    elapsed = 0.0
    loss = last_eval = None
    try:
        for step in range(max_steps):
            t0 = time.perf_counter()
            lr = lr_at(
                step,
                peak_lr=cfg.optim.lr,
                max_steps=max_steps,
                warmup_steps=cfg.schedule.warmup_steps,
                kind=cfg.schedule.kind,
                decay_fraction=cfg.schedule.decay_fraction,
                min_lr_ratio=cfg.schedule.min_lr_ratio,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            loss_sum = 0.0
            for micro in range(cfg.batch.grad_accum):
                batch = _micro_batch(cfg, train_ex, epoch_rows, pad_id, step * cfg.batch.grad_accum + micro)
                l_ = _loss(model, batch, device)
                (l_ / cfg.batch.grad_accum).backward()
                loss_sum += float(l_.detach())
                tokens_seen += int((batch.docs >= 0).sum())
                supervised += batch.supervised
            max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
            params = [p for p in model.parameters() if p.requires_grad]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            loss = loss_sum / cfg.batch.grad_accum
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                raise NonFiniteLoss(
                    f"step {step + 1}: fine-tuning loss is {loss} (gradient norm {grad_norm}); nothing saved. "
                    f"Try a lower optim.lr (now {cfg.optim.lr})"
                )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            elapsed += dt
            record: dict[str, Any] = {"step": step + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm}
            record.update(tokens=tokens_seen, elapsed_s=round(elapsed, 3))
            last = step + 1 == max_steps
            if eval_rows is not None and (last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)):
                last_eval = evaluate(model, eval_rows, cfg.batch.micro_batch, device)
                record["eval_loss"] = last_eval
            if last or (step + 1) % cfg.log_every == 0 or "eval_loss" in record:
                log.log(record)
            bar.update(1, loss=f"{loss:.4f}")
    finally:
        bar.close()
        log.close()
    stats.update(
        steps=max_steps,
        tokens_seen=tokens_seen,
        supervised_tokens=supervised,
        train_loss=loss,
        init_eval_loss=init_eval,
        eval_loss=last_eval,
        elapsed_s=round(elapsed, 3),
        tokens_per_s=round(tokens_seen / elapsed, 1) if elapsed else None,
        wall_s=round(time.perf_counter() - t_start, 3),
    )
    _save(cfg, model, base, out_dir, stats, eval_file=cfg.data.eval, n_examples=len(train_ex) + len(eval_ex))
    plot_loss(log.records, out_dir / LOSS_PNG, title=f"kiban finetune ({cfg.method})")
    return {**stats, "out_dir": str(out_dir)}


def _examples(
    cfg: FinetuneConfig, renderer: ChatRenderer
) -> tuple[list[Example], list[Example], list[Quarantined]]:
    import numpy as np

    train, quarantined = load_examples(Path(cfg.data.train), renderer, seq_len=cfg.data.seq_len)
    if cfg.data.eval:
        held, bad = load_examples(Path(cfg.data.eval), renderer, seq_len=cfg.data.seq_len)
        return train, held, quarantined + bad
    n_eval = math.ceil(len(train) * cfg.data.eval_fraction) if cfg.data.eval_fraction > 0 else 0
    n_eval = min(n_eval, max(0, len(train) - 1))
    picked = set(np.random.default_rng([cfg.seed, 1]).permutation(len(train))[:n_eval].tolist())
    return (
        [e for i, e in enumerate(train) if i not in picked],
        [e for i, e in enumerate(train) if i in picked],
        quarantined,
    )


def _micro_batch(
    cfg: FinetuneConfig, examples: list[Example], epochs: list[Rows], pad_id: int, k: int
) -> Rows:
    """Micro-batch `k`: rows k·micro_batch … of the epochs laid end to end (epoch e packed with seed + e)."""
    mb = cfg.batch.micro_batch
    index = []
    for j in range(k * mb, (k + 1) * mb):
        epoch, row = divmod(j, len(epochs[0]))
        while epoch >= len(epochs):
            epochs.append(
                pack(
                    examples,
                    seq_len=cfg.data.seq_len,
                    pad_id=pad_id,
                    pack=cfg.data.pack,
                    seed=cfg.seed + len(epochs),
                )
            )
        rows = epochs[epoch]
        if row >= len(rows):  # a later epoch packed into fewer rows: wrap within it
            row %= len(rows)
        index.append((epoch, row))
    parts = [epochs[e].batch([r]) for e, r in index]
    return Rows(
        *(torch.cat([getattr(p, f) for p in parts]) for f in ("tokens", "targets", "positions", "docs"))
    )


def _loss(model: torch.nn.Module, rows: Rows, device: torch.device) -> torch.Tensor:
    x, y = rows.tokens.to(device), rows.targets.to(device)
    if int(rows.docs.max()) <= 0:
        # One conversation per row, from position 0, then padding: the plain causal path gives
        # the same loss (no real token attends to the padding after it, and padding has no loss)
        # without a (B, 1, T, T) mask or SDPA's masked kernel: less memory, faster.
        _, loss = model(x, y, return_logits=False)
        return loss
    positions, docs = rows.positions.to(device), rows.docs.to(device)
    _, loss = model(x, y, return_logits=False, position_ids=positions, attn_mask=attention_mask(docs))
    return loss


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, rows: Rows | None, micro_batch: int, device: torch.device
) -> float | None:
    """Mean loss per supervised (assistant) token over all `rows`."""
    if rows is None or rows.supervised == 0:
        return None
    model.eval()
    total, count = 0.0, 0
    for s in range(0, len(rows), micro_batch):
        batch = rows.batch(list(range(s, min(s + micro_batch, len(rows)))))
        n = batch.supervised
        if n:
            total += float(_loss(model, batch, device)) * n
            count += n
    return total / count


def _pad_id(base: Path) -> int:
    hf = json.loads((base / "config.json").read_text(encoding="utf-8"))
    for key in ("pad_token_id", "eos_token_id"):
        v = hf.get(key)
        if isinstance(v, list):
            v = v[0] if v else None
        if isinstance(v, int):
            return v
    return 0


def _write_quarantine(out_dir: Path, quarantined: list[Quarantined]) -> None:
    qdir = out_dir / "quarantine"
    shutil.rmtree(qdir, ignore_errors=True)
    if not quarantined:
        return
    qdir.mkdir(parents=True)
    by_file: dict[str, list[Quarantined]] = {}
    for q in quarantined:
        by_file.setdefault(q.file, []).append(q)
    for file, items in by_file.items():
        text = "".join(json.dumps(q.to_dict(), ensure_ascii=False) + "\n" for q in items)
        (qdir / f"{Path(file).name}.jsonl").write_text(text, encoding="utf-8")


def _save(
    cfg: FinetuneConfig,
    model: torch.nn.Module,
    base: Path,
    out_dir: Path,
    stats: dict[str, Any],
    *,
    eval_file: str | None,
    n_examples: int,
) -> None:
    """The adapter or checkpoint files, the base's tokenizer, then manifest.json last."""
    hf = json.loads((base / "config.json").read_text(encoding="utf-8"))
    ids = {k: hf.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    if cfg.method == "lora":
        lc = cfg.lora
        config = lora.adapter_config(
            rank=lc.rank,
            alpha=lc.alpha,
            dropout=lc.dropout,
            targets=lc.target_modules,
            base=str(base.resolve()),
        )
        lora.save_adapter(model, out_dir, config)
        kind, model_paths = ADAPTER_KIND, [lora.ADAPTER_WEIGHTS, lora.ADAPTER_CONFIG]
    else:
        from kiban.model.hf import write_hf

        write_hf(model.cfg, model.state_dict(), out_dir, **ids)
        kind, model_paths = ckpt.KIND, ["config.json", "model.safetensors", "generation_config.json"]
    for name in TOKENIZER_FILES:
        if (base / name).is_file():
            shutil.copy2(base / name, out_dir / name)
            model_paths.append(name)
    base_kind = ckpt.KIND if (base / MANIFEST).is_file() else "model"
    inputs = [input_record(base, base_kind, relative_to=out_dir)]
    inputs.append(input_record(Path(cfg.data.train), "chat-data", relative_to=out_dir))
    if eval_file:
        inputs.append(input_record(Path(eval_file), "chat-data", relative_to=out_dir))
    licenses = ckpt.merge_licenses(ckpt.model_licenses(base), {cfg.data.license: n_examples})
    files = ckpt.model_files(out_dir, model_paths)
    write_manifest(
        out_dir,
        Manifest(
            kind=kind,
            config=cfg.to_dict(),
            inputs=inputs,
            stats=stats,
            licenses=licenses,
            extra={"files": files},
        ),
    )


def _finished(out_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    if not (out_dir / MANIFEST).is_file():
        return None
    m = read_manifest(out_dir)
    if m.kind in (ADAPTER_KIND, ckpt.KIND) and m.config == config:
        return {**m.stats, "out_dir": str(out_dir), "already_complete": True}
    raise ConfigError(
        f"out_dir {out_dir} already holds a finished {m.kind} artifact of another config; choose another out_dir"
    )
