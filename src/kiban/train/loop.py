"""`kiban train`: pre-train a Llama-family model on token shards, on CPU, one GPU or under torchrun.

    from kiban.train import load_train_config, run
    result = run(load_train_config("examples/train-tiny.yaml", ["data.shards=out/tokens"]))

Without the CLI (and how torchrun starts it):

    python -m kiban.train.loop CONFIG.yaml [--set key=value ...]
    torchrun --nproc_per_node 2 -m kiban.train.loop CONFIG.yaml --set parallel=ddp

Everything that can be refused is refused before the first step (`prepare`); a non-finite loss
stops the run with the last good checkpoint untouched. See docs/train.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kiban.config import from_dict
from kiban.errors import ConfigError, KibanError
from kiban.model.config import ModelConfig, load_model_config
from kiban.progress import Mode, Progress
from kiban.tokenizer.shards import TokenShards
from kiban.train import checkpoint as ckpt
from kiban.train.baseline import unigram_loss
from kiban.train.config import OptimConfig, TrainConfig, config_diff, load_train_config
from kiban.train.data import (
    Mixture,
    Windows,
    check_compatible,
    eval_batch,
    split_heldout,
    train_batch,
    whole,
)
from kiban.train.metrics import LOSS_PNG, MetricsLog, gpu_peak_tflops, mfu, plot_loss
from kiban.train.parallelize import (
    World,
    all_reduce_sum,
    barrier,
    close_world,
    grad_sync,
    init_world,
    parallelize,
    resolve_mode,
)
from kiban.train.plan import check_fits, flops_per_token
from kiban.train.schedule import lr_at


class NonFiniteLoss(KibanError):
    """The training loss or gradient norm became NaN or Inf."""


@dataclass
class Prepared:
    """What `prepare` checked and resolved, before any model is built."""

    cfg: TrainConfig
    world: World
    mode: str
    model_cfg: ModelConfig
    shards: TokenShards
    inputs: list[tuple[Path, str]]
    """(directory, kind) of every input: token shards, and the base model and replay shards."""
    tokenizer_dir: Path | None
    train: Windows | Mixture
    held: Windows | None
    max_steps: int
    autocast: bool
    unigram_eval_loss: float | None = None
    """The held-out loss of a unigram model of the training tokens (the bar to beat)."""
    licenses: dict[str, int] = dataclasses.field(default_factory=dict)
    """What the checkpoint forwards: the shards', the replay shards' and the base model's licences."""
    init_from: Path | None = None
    replay_held: Windows | None = None
    """The held-out tail of the replay shards (continual pre-training: how much is forgotten)."""


def resolve_model(cfg: TrainConfig, shards: TokenShards) -> ModelConfig:
    """The preset (or YAML) with `model.overrides`; the vocabulary comes from the shards."""
    base = load_model_config(cfg.model.preset)
    overrides = dict(cfg.model.overrides)
    vocab = overrides.pop("vocab_size", shards.vocab_size)
    if not isinstance(vocab, int) or vocab < shards.vocab_size:
        raise ConfigError(
            f"model.overrides.vocab_size ({vocab}) is smaller than the shards' vocab_size "
            f"({shards.vocab_size}, {shards.directory / 'manifest.json'})"
        )
    data = {**dataclasses.asdict(base), **overrides, "vocab_size": vocab}
    return from_dict(ModelConfig, data, where="train config", prefix="model.overrides.")


def resolve_init(init_from: Path, shards: TokenShards) -> ModelConfig:
    """The shape of the base model of a continual pre-training run, checked against the shards."""
    import json

    from kiban.model.hf import CONFIG, config_from_hf

    path = init_from / CONFIG
    if not path.is_file():
        raise ConfigError(
            f"model.init_from: {init_from} has no {CONFIG}; give a kiban checkpoint or a local "
            "Hugging Face LlamaForCausalLM directory"
        )
    try:
        model_cfg = config_from_hf(json.loads(path.read_text(encoding="utf-8")), where=str(path))
    except json.JSONDecodeError as e:
        raise ConfigError(f"model.init_from: {path}: not valid JSON: {e}") from e
    if shards.vocab_size > model_cfg.vocab_size:
        raise ConfigError(
            f"model.init_from: the shards ({shards.directory}) have vocab_size {shards.vocab_size}, "
            f"the model ({path}) only {model_cfg.vocab_size}: tokenize the new corpus with the model's "
            "tokenizer (kiban tokenize CORPUS --tokenizer MODEL_DIR)"
        )
    return model_cfg


def prepare(cfg: TrainConfig, world: World) -> Prepared:
    """Open the data and refuse, by field, every config that cannot work; builds nothing."""
    shards = TokenShards.open(cfg.data.shards)
    inputs = [(shards.directory, "tokens")]
    init_from = Path(cfg.model.init_from) if cfg.model.init_from else None
    if init_from is not None and not init_from.is_dir():
        raise ConfigError(f"model.init_from: {init_from} is not a directory")
    if cfg.data.tokenizer:
        tokenizer_dir: Path | None = Path(cfg.data.tokenizer)
    elif init_from is not None and (init_from / "tokenizer.json").is_file():
        tokenizer_dir = init_from  # the base model's own tokenizer: the shards must be made with it
    else:
        tokenizer_dir = ckpt.tokenizer_dir_of(shards)
    if tokenizer_dir is not None:
        try:
            shards.check_tokenizer(tokenizer_dir)
        except ConfigError as e:
            field = "model.init_from" if tokenizer_dir == init_from else "data.tokenizer"
            raise ConfigError(f"{field}: {e}") from e
    licenses = dict(shards.manifest.licenses)
    if init_from is not None:
        model_cfg = resolve_init(init_from, shards)
        kind = ckpt.KIND if (init_from / "manifest.json").is_file() else "model"
        inputs.append((init_from, kind))
        licenses = ckpt.merge_licenses(licenses, ckpt.model_licenses(init_from))
    else:
        model_cfg = resolve_model(cfg, shards)
    if cfg.data.seq_len > model_cfg.max_seq_len:
        raise ConfigError(
            f"data.seq_len ({cfg.data.seq_len}) exceeds the model's max_seq_len ({model_cfg.max_seq_len}, "
            f"preset {cfg.model.preset!r}); lower data.seq_len or set model.overrides.max_seq_len"
        )
    on_gpu = world.device.type == "cuda"
    if cfg.precision == "bf16" and not on_gpu:
        raise ConfigError("precision: bf16 autocast is for GPUs; on CPU use precision: fp32 (or auto)")
    mode = resolve_mode(cfg.parallel, world)
    device_name = "cpu"
    if on_gpu:
        known = gpu_peak_tflops(torch.cuda.get_device_name(world.device))
        device_name = known[0] if known else ""
    if device_name:  # an unknown GPU has no memory figure in the planner: no check
        check_fits(
            model_cfg,
            cfg.batch.micro_batch,
            cfg.data.seq_len,
            device_name,
            gpus=world.size,
            strategy="fsdp" if mode == "fsdp" else "ddp",
            recompute=cfg.activation_checkpointing,
        )
    if cfg.data.eval_shards:
        held_shards = TokenShards.open(cfg.data.eval_shards)
        check_compatible(shards, held_shards)
        train_segments, held_segments = whole(shards), whole(held_shards)
        held = Windows.from_shards(held_shards, held_segments, cfg.data.seq_len, what="held-out")
        inputs.append((held_shards.directory, "tokens"))
    else:
        train_segments, held_segments = split_heldout(shards, cfg.data.eval_fraction)
        held = (
            Windows.from_shards(shards, held_segments, cfg.data.seq_len, what="held-out")
            if held_segments and any(s.end - s.start > cfg.data.seq_len for s in held_segments)
            else None
        )
    train: Windows | Mixture = Windows.from_shards(shards, train_segments, cfg.data.seq_len, what="training")
    replay_held = None
    if cfg.data.replay_shards:
        replay = TokenShards.open(cfg.data.replay_shards)
        if (replay.tokenizer_sha256, replay.vocab_size) != (shards.tokenizer_sha256, shards.vocab_size):
            raise ConfigError(
                f"data.replay_shards ({replay.directory}) was made with another tokenizer than data.shards "
                f"({shards.directory}): tokenizer_sha256 {replay.tokenizer_sha256[:12]}… vs "
                f"{shards.tokenizer_sha256[:12]}…; tokenize both with the base model's tokenizer"
            )
        r_train, r_held = split_heldout(replay, cfg.data.eval_fraction)
        if r_held and any(s.end - s.start > cfg.data.seq_len for s in r_held):
            replay_held = Windows.from_shards(replay, r_held, cfg.data.seq_len, what="replay held-out")
        if cfg.data.replay_ratio > 0:
            r_windows = Windows.from_shards(replay, r_train, cfg.data.seq_len, what="replay")
            train = Mixture(train, r_windows, cfg.data.replay_ratio)
        inputs.append((replay.directory, "tokens"))
        licenses = ckpt.merge_licenses(licenses, dict(replay.manifest.licenses))
    held_source = held_shards if cfg.data.eval_shards else shards
    unigram = (
        unigram_loss(
            [shards.shard(s.shard)[s.start : s.end] for s in train_segments],
            [held_source.shard(s.shard)[s.start : s.end] for s in held_segments],
            vocab_size=model_cfg.vocab_size,
        )
        if held is not None
        else None
    )
    return Prepared(
        cfg=cfg,
        world=world,
        mode=mode,
        model_cfg=model_cfg,
        shards=shards,
        inputs=inputs,
        tokenizer_dir=tokenizer_dir,
        train=train,
        held=held,
        max_steps=cfg.max_steps_for(world.size),
        autocast=on_gpu and cfg.precision in ("auto", "bf16"),
        unigram_eval_loss=unigram,
        licenses=licenses,
        init_from=init_from,
        replay_held=replay_held,
    )


def keep_freed_memory() -> None:
    """Ask glibc to keep freed blocks instead of returning them to the OS. A training step
    allocates and frees the same large buffers every time; by default glibc serves each with
    mmap and unmaps it on free, and page faults then cost ~15 % of a CPU step (measured with
    benchmarks/train_vs_litgpt.py). No effect where glibc is not the allocator."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 2**31 - 1)


def run(cfg: TrainConfig, *, progress: Mode = "quiet") -> dict[str, Any]:
    """Train per `cfg`; returns the final checkpoint's stats (and where it is)."""
    keep_freed_memory()
    world = init_world(cfg.device)
    try:
        return _run(cfg, world, progress)
    finally:
        close_world(world)


def _run(cfg: TrainConfig, world: World, progress: Mode) -> dict[str, Any]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    p = prepare(cfg, world)
    out_dir = Path(cfg.out_dir)
    config = cfg.to_dict()
    global_batch = cfg.batch.micro_batch * cfg.batch.grad_accum * world.size

    finished = _finished(out_dir, config)
    if finished is not None:
        return finished
    resume_from = ckpt.latest_checkpoint(out_dir)
    if resume_from is not None:
        saved = ckpt.read_state(resume_from)
        diff = config_diff(saved.get("config", {}), config)
        if diff:
            raise ConfigError(
                f"out_dir {out_dir} holds a checkpoint ({resume_from.name}) of a run with another config "
                f"({', '.join(diff)} differ); resume with the same config, or choose another out_dir"
            )
        if saved.get("global_batch") != global_batch:
            raise ConfigError(
                f"out_dir {out_dir}: {resume_from.name} was trained with a global batch of "
                f"{saved.get('global_batch')} sequences, this run has {global_batch} "
                "(batch.micro_batch × batch.grad_accum × processes); resume with the same global batch"
            )
    if world.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt.clean_partial(out_dir)
    barrier(world)

    torch.manual_seed(cfg.seed)
    from kiban.model.llama import Llama

    if p.init_from is not None:  # continual pre-training: the base model's weights
        from kiban.model.hf import load_hf

        raw = load_hf(p.init_from).to(world.device)
    else:
        raw = Llama(p.model_cfg).to(
            world.device
        )  # built on CPU from the seed, then moved: same init anywhere
    model = parallelize(
        raw,
        world,
        mode=p.mode,  # type: ignore[arg-type]
        activation_checkpointing=cfg.activation_checkpointing,
        compile=cfg.compile,
    )
    optimizer = build_optimizer(raw, cfg.optim)
    state: dict[str, Any] = {"step": 0, "tokens_seen": 0, "elapsed_s": 0.0, "metrics": []}
    if resume_from is not None:
        state = ckpt.restore(resume_from, raw, optimizer, p.model_cfg)
    log = MetricsLog(out_dir, state["metrics"]) if world.main else None
    trainer = _Trainer(p, raw, model, optimizer, log, state)
    bar = Progress("train", total=p.max_steps, mode=progress if world.main else "quiet", unit="steps")
    bar.done = state["step"]
    try:
        result = trainer.train(bar, resumed_from=state["step"] if resume_from else None)
    finally:
        bar.close()
        if log is not None:
            log.close()
    return result


def _finished(out_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The stats of a finished run of this config in out_dir (nothing to do), else None."""
    from kiban.artifacts import MANIFEST, read_manifest

    if not (out_dir / MANIFEST).is_file():
        return None
    m = read_manifest(out_dir)
    diff = config_diff(m.config, config) if m.kind == ckpt.KIND else ["kind"]
    if diff:
        raise ConfigError(
            f"out_dir {out_dir} already holds a finished {m.kind} artifact with another config "
            f"({', '.join(diff)} differ); choose another out_dir"
        )
    return {**m.stats, "out_dir": str(out_dir), "already_complete": True}


def build_optimizer(model: nn.Module, o: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over the parameters that require gradients (all of them, or LoRA's when fine-tuning);
    weight decay on matmul weights only (no decay on norms or the embedding, OLMo 2 §3.2.1)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # a tied embedding appears once
        if not param.requires_grad:
            continue
        if param.ndim < 2 or "embed_tokens" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o.lr,
        betas=tuple(o.betas),  # type: ignore[arg-type]
        eps=o.eps,
        foreach=True,
    )


class _Trainer:
    def __init__(
        self,
        p: Prepared,
        raw: nn.Module,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        log: MetricsLog | None,
        state: dict[str, Any],
    ) -> None:
        self.p, self.cfg, self.world = p, p.cfg, p.world
        self.raw, self.model, self.optimizer, self.log = raw, model, optimizer, log
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        self.elapsed_s = float(state["elapsed_s"])
        self.last_loss: float | None = None
        self.last_eval: float | None = None
        self.last_replay_eval: float | None = None
        self.init_evals: dict[str, float] = {}  # the base model's held-out losses (step 0)
        for r in state["metrics"]:
            if r.get("step") == 0:
                self.init_evals = {k: v for k, v in r.items() if k.endswith("eval_loss")}
        for r in reversed(state["metrics"]):
            if self.last_replay_eval is None and "replay_eval_loss" in r:
                self.last_replay_eval = r["replay_eval_loss"]
            if self.last_loss is None and "loss" in r:
                self.last_loss = r["loss"]
            if self.last_eval is None and "eval_loss" in r:
                self.last_eval = r["eval_loss"]
        self.flops_per_token = flops_per_token(p.model_cfg, self.cfg.data.seq_len)[0]
        self.peak_tflops: float | None = None
        if self.world.device.type == "cuda":
            known = gpu_peak_tflops(torch.cuda.get_device_name(self.world.device))
            self.peak_tflops = known[1] if known else None
        self.last_ckpt: Path | None = ckpt.latest_checkpoint(Path(self.cfg.out_dir))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.p.autocast:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train(self, bar: Progress, *, resumed_from: int | None) -> dict[str, Any]:
        cfg, world = self.cfg, self.world
        tokens_per_step = cfg.tokens_per_step(world.size)
        if self.step == 0 and self.p.init_from is not None:  # "before" figures of continual pre-training
            record0: dict[str, Any] = {"step": 0}
            if self.p.held is not None:
                record0["eval_loss"] = self.evaluate()
            if self.p.replay_held is not None:
                record0["replay_eval_loss"] = self.evaluate(self.p.replay_held)
            self.init_evals = {k: v for k, v in record0.items() if k != "step"}
            if self.log is not None and self.init_evals:
                self.log.log(record0)
        while self.step < self.p.max_steps:
            t0 = time.perf_counter()
            loss, grad_norm, lr = self._step(self.step)
            if world.device.type == "cuda":
                torch.cuda.synchronize(world.device)
            dt = time.perf_counter() - t0
            self.step += 1
            self.tokens_seen += tokens_per_step
            self.elapsed_s += dt
            self.last_loss = loss
            record: dict[str, Any] = {
                "step": self.step,
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens": self.tokens_seen,
                "tokens_per_s": round(tokens_per_step / dt, 1),
                "elapsed_s": round(self.elapsed_s, 3),
            }
            if self.peak_tflops:
                per_device = tokens_per_step / dt / world.size
                record["mfu"] = round(mfu(per_device, self.flops_per_token, self.peak_tflops), 4)
            last = self.step == self.p.max_steps
            if last or (cfg.eval_every and self.step % cfg.eval_every == 0):
                if self.p.held is not None:
                    self.last_eval = self.evaluate()
                    record["eval_loss"] = self.last_eval
                if self.p.replay_held is not None:
                    self.last_replay_eval = self.evaluate(self.p.replay_held)
                    record["replay_eval_loss"] = self.last_replay_eval
            if self.log is not None and (last or self.step % cfg.log_every == 0 or "eval_loss" in record):
                self.log.log(record)
            bar.update(1, loss=f"{loss:.4f}")
            if last or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                self.save()
        self.finish()
        return {**self.stats(), "out_dir": str(self.cfg.out_dir), "resumed_from": resumed_from}

    def _step(self, step: int) -> tuple[float, float, float]:
        """One optimizer step over grad_accum micro-batches; returns (mean loss, grad norm, lr)."""
        cfg, world, p = self.cfg, self.world, self.p
        s = cfg.schedule
        lr = lr_at(
            step,
            peak_lr=cfg.optim.lr,
            max_steps=p.max_steps,
            warmup_steps=s.warmup_steps,
            kind=s.kind,
            decay_fraction=s.decay_fraction,
            min_lr_ratio=s.min_lr_ratio,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        accum = cfg.batch.grad_accum
        loss_sum = torch.zeros((), device=world.device)
        for micro in range(accum):
            x, y = train_batch(
                p.train,
                step=step,
                micro=micro,
                rank=world.rank,
                micro_batch=cfg.batch.micro_batch,
                world_size=world.size,
                seed=cfg.seed,
            )
            x, y = x.to(world.device, non_blocking=True), y.to(world.device, non_blocking=True)
            with grad_sync(self.model, p.mode, micro == accum - 1), self._autocast():  # type: ignore[arg-type]
                _, loss = self.model(x, y, return_logits=False)  # no (B, T, V) logits in memory
                (loss / accum).backward()
            loss_sum += loss.detach().float()
        loss_mean = float(all_reduce_sum(loss_sum, world).item()) / (accum * world.size)
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), max_norm)
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
            norm = norm.full_tensor()
        grad_norm = float(norm.item())
        if not (math.isfinite(loss_mean) and math.isfinite(grad_norm)):
            where = f"last good checkpoint: {self.last_ckpt}" if self.last_ckpt else "no checkpoint was saved"
            raise NonFiniteLoss(
                f"step {step + 1}: training loss is {loss_mean} (gradient norm {grad_norm}); stopped "
                f"without saving this step ({where}). Try a lower optim.lr (now {cfg.optim.lr}), a longer "
                f"schedule.warmup_steps (now {cfg.schedule.warmup_steps}) or optim.grad_clip"
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_mean, grad_norm, lr

    @torch.no_grad()
    def evaluate(self, windows: Windows | None = None) -> float:
        """Mean loss over the eval_batches held-out micro-batches (of `windows`, default the held-out
        data), split over ranks (each rank runs the same number of forward passes, as FSDP's
        collectives need; surplus ones weigh zero)."""
        cfg, world = self.cfg, self.world
        held = windows if windows is not None else self.p.held
        assert held is not None
        self.model.eval()
        n = cfg.eval_batches
        total = torch.zeros(2, device=world.device)  # (sum of losses, count)
        for i in range(-(-n // world.size)):
            index = i * world.size + world.rank
            x, y = eval_batch(held, index=index % n, micro_batch=cfg.batch.micro_batch, seed=cfg.seed)
            with self._autocast():
                _, loss = self.model(x.to(world.device), y.to(world.device), return_logits=False)
            if index < n:
                total += torch.stack([loss.float(), torch.ones((), device=world.device)])
        total = all_reduce_sum(total, world)
        return float(total[0] / total[1])

    def stats(self) -> dict[str, Any]:
        return {
            "steps": self.step,
            "tokens_seen": self.tokens_seen,
            "train_loss": self.last_loss,
            "eval_loss": self.last_eval,
            "unigram_eval_loss": self.p.unigram_eval_loss,
            **({"replay_eval_loss": self.last_replay_eval} if self.p.replay_held is not None else {}),
            **{f"init_{k}": v for k, v in self.init_evals.items()},
            "elapsed_s": round(self.elapsed_s, 3),
            "params": self.p.model_cfg.n_params()["total"],
            "world_size": self.world.size,
            "parallel": self.p.mode,
            "model": dataclasses.asdict(self.p.model_cfg),
        }

    def save(self) -> None:
        """A step checkpoint (every rank gathers; rank 0 writes), then the loss curve."""
        model_state, optim_state = ckpt.full_state(self.raw, self.optimizer)
        out_dir = Path(self.cfg.out_dir)
        if self.world.main:
            assert self.log is not None
            state = {
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "elapsed_s": self.elapsed_s,
                "world_size": self.world.size,
                "global_batch": self.cfg.batch.micro_batch * self.cfg.batch.grad_accum * self.world.size,
                "data_position": {"next_step": self.step, "seed": self.cfg.seed},
                "config": self.cfg.to_dict(),
                "metrics": self.log.records,
            }
            self.last_ckpt = ckpt.save_checkpoint(
                out_dir,
                self.step,
                model_cfg=self.p.model_cfg,
                model_state=model_state,
                optimizer_state=optim_state,
                state=state,
                config=self.cfg.to_dict(),
                inputs=self.p.inputs,
                stats=self.stats(),
                shards=self.p.shards,
                tokenizer_dir=self.p.tokenizer_dir,
                licenses=self.p.licenses,
            )
            ckpt.prune(out_dir, self.cfg.keep_checkpoints)
            plot_loss(self.log.records, out_dir / LOSS_PNG, title=f"kiban train: {self.cfg.model.preset}")
        barrier(self.world)
        self.last_ckpt = ckpt.latest_checkpoint(out_dir)

    def finish(self) -> None:
        """Make out_dir the final checkpoint (its manifest.json last)."""
        out_dir = Path(self.cfg.out_dir)
        if self.world.main:
            last = ckpt.step_dir(out_dir, self.step)
            ckpt.write_final(
                out_dir,
                last,
                config=self.cfg.to_dict(),
                inputs=self.p.inputs,
                stats=self.stats(),
                licenses=self.p.licenses,
            )
            assert self.log is not None
            plot_loss(self.log.records, out_dir / LOSS_PNG, title=f"kiban train: {self.cfg.model.preset}")
        barrier(self.world)


def main(argv: list[str] | None = None) -> int:
    """`python -m kiban.train.loop CONFIG.yaml [--set k=v ...] [--json]` (what torchrun starts)."""
    args = list(sys.argv[1:] if argv is None else argv)
    overrides, json_lines, path = [], False, None
    while args:
        a = args.pop(0)
        if a == "--set" and args:
            overrides.append(args.pop(0))
        elif a == "--json":
            json_lines = True
        elif path is None and not a.startswith("-"):
            path = a
        else:
            print(f"usage: python -m kiban.train.loop CONFIG.yaml [--set key=value ...] [--json]; got {a!r}")
            return 2
    try:
        result = run(load_train_config(path, overrides), progress="json" if json_lines else "quiet")
    except KibanError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    if os.environ.get("RANK", "0") == "0":
        print({k: v for k, v in result.items() if k != "model"}, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
