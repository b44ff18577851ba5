"""kiban vs litgpt: training tokens/s of the same Llama shape on CPU, one thread each.

    .venv/bin/python benchmarks/train_vs_litgpt.py --repeats 3 --warmup 2 --steps 6

Both tools train the same model from the same initial weights on batches of random tokens:
6 layers, width 384, 6 heads, 2 key/value heads (GQA), SwiGLU hidden 1024, vocabulary 32,768,
tied embeddings, RMSNorm eps 1e-5, RoPE theta 10,000 in the rotate-half layout; micro-batch 8 ×
sequence 256, fp32, AdamW (lr 3e-4, betas 0.9/0.95, weight decay 0.1), gradient clipping at 1.0.

- kiban: `kiban train` itself (`kiban.train.loop.run` with a TrainConfig built here: fp32, one
  thread, no eval, no step checkpoints) on a token shard of uniform random ids; tokens/s is the
  trainer's own per-step figure in metrics.jsonl (batch fetch, forward, loss, backward, clip,
  AdamW, zero_grad, `loss.item()`).
- litgpt 0.5.13 (in its own venv, `benchmarks/.venv-litgpt`, created on first use), on batches
  drawn from a fixed seed, data outside the time:
  `litgpt.model.GPT(Config(...))` with a Llama config (RMSNorm, LLaMAMLP, full rotary,
  `parallel_residual=False`, no bias), stepped as `litgpt/pretrain.py` steps it: Lightning Fabric
  (CPU, 32-true) around the model and optimizer, `chunked_cross_entropy(logits, targets)`,
  `fabric.backward`, `fabric.clip_gradients`, `AdamW.step` (not fused: pretrain asks for fused only
  on CUDA), `zero_grad`. pretrain.py also wraps the model in `torch.compile`; with `--compile` both
  sides compile (litgpt the whole model, kiban each block, as `kiban train`'s `compile: true`
  does), without it both run eagerly.

Each run is a fresh process with `torch.set_num_threads(1)` and OMP_NUM_THREADS=MKL_NUM_THREADS=1;
runs alternate between the tools (kiban first in odd repeats, litgpt first in even ones).
Tokens/s = micro_batch × seq_len × timed steps / seconds of the timed steps (the `--warmup` steps
before them are excluded); each step ends with `loss.item()` (on CPU nothing runs asynchronously,
so it waits for nothing). The figure is the median over `--repeats` runs per tool.

Before timing, the script checks that the two models are the same function: kiban builds the
initial weights from the seed (as `kiban train` does with the same seed and shape) and saves them,
litgpt loads them (q/k/v stacked into its fused `qkv`), and both parameter counts and the logits on
one batch are compared.

Everything written goes under `benchmarks/.work/litgpt/` (git-ignored): `init.pt` (the shared initial
weights and the reference logits), `shards/`, `kiban-train/`, and one JSON result and log per
worker process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "litgpt"
LITGPT_VENV = HERE / ".venv-litgpt"
# torch first and on its own: this machine's CPU wheel of the project's torch (pip's find-links); an
# unpinned resolve of litgpt would otherwise pull a multi-GB CUDA build of torch.
TORCH_REQUIREMENT = "torch==2.13.0"
LITGPT_REQUIREMENT = "litgpt==0.5.13"
TARGET_RATIO = 1.1
TOOLS = ("kiban", "litgpt")


@dataclass(frozen=True)
class Spec:
    """What every worker process trains; passed to it as JSON."""

    n_layers: int = 6
    dim: int = 384
    n_heads: int = 6
    n_kv_heads: int = 2
    ffn_hidden: int = 1024
    vocab_size: int = 32_768
    seq_len: int = 256
    micro_batch: int = 8
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    warmup: int = 2
    steps: int = 6
    seed: int = 0
    threads: int = 1
    compile: bool = False
    init_path: str = str(WORK / "init.pt")

    @property
    def tokens_per_step(self) -> int:
        return self.micro_batch * self.seq_len


# --- the litgpt venv -----------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_litgpt_venv(venv: Path = LITGPT_VENV) -> Path:
    """Create the litgpt venv (torch pinned first, then litgpt) unless already done."""
    marker = venv / "kiban-requirements.txt"
    wanted = f"{TORCH_REQUIREMENT}\n{LITGPT_REQUIREMENT}\n"
    if marker.exists() and marker.read_text() == wanted and venv_python(venv).exists():
        return venv_python(venv)
    print(f"creating {venv} (torch CPU + litgpt, ~1.1 GB) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, TORCH_REQUIREMENT], check=True)
    subprocess.run([*pip, LITGPT_REQUIREMENT, TORCH_REQUIREMENT], check=True)  # torch re-stated: kept
    marker.write_text(wanted)
    return venv_python(venv)


# --- inside a worker process (torch imported here only) ------------------------------------------


def _setup_torch(spec: Spec):
    import torch

    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    return torch


def _batches(spec: Spec):
    """(warmup + steps) batches of random tokens, the same in every process: # each (B, T+1)"""
    import torch

    g = torch.Generator().manual_seed(spec.seed + 1)
    n = spec.warmup + spec.steps
    return torch.randint(0, spec.vocab_size, (n, spec.micro_batch, spec.seq_len + 1), generator=g)


def _timed(step, batches, spec: Spec) -> dict:
    """Run `step(x, y) -> loss` over the batches; time the steps after the warm-up ones."""
    seconds, losses = [], []
    for i, batch in enumerate(batches):
        x, y = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()  # (B, T) each
        t0 = time.perf_counter()
        loss = step(x, y).item()
        dt = time.perf_counter() - t0
        losses.append(loss)
        if i >= spec.warmup:
            seconds.append(dt)
    return {
        "tokens_per_s": spec.tokens_per_step * len(seconds) / sum(seconds),
        "step_seconds": seconds,
        "losses": losses,
    }


def _kiban_shape(spec: Spec) -> dict:
    """The benchmark shape as kiban ModelConfig fields (tied embeddings, RoPE theta 1e4, eps 1e-5)."""
    return {
        "vocab_size": spec.vocab_size,
        "dim": spec.dim,
        "n_layers": spec.n_layers,
        "n_heads": spec.n_heads,
        "n_kv_heads": spec.n_kv_heads,
        "ffn_hidden": spec.ffn_hidden,
        "max_seq_len": spec.seq_len,
        "rope_theta": 10_000.0,
        "norm_eps": 1e-5,
        "tie_embeddings": True,
    }


def kiban_init(spec: Spec) -> dict:
    """Build kiban's model from the seed; save its weights, its logits on the first batch, and token
    shards of random tokens for `kiban train` to read."""
    torch = _setup_torch(spec)
    import numpy as np

    from kiban.model.config import ModelConfig
    from kiban.model.llama import Llama
    from kiban.tokenizer.shards import dtype_for, write_shard, write_tokens_manifest

    model = Llama(ModelConfig(**_kiban_shape(spec)))  # what `kiban train` builds from the same seed
    batch = _batches(spec)[0]
    with torch.no_grad():
        logits = model(batch[:, :-1])  # (B, T, V)
    Path(spec.init_path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "logits": logits}, spec.init_path)

    shards = WORK / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    doc = rng.integers(0, spec.vocab_size, size=1_000_000, dtype=np.int64)  # one long document
    entry = write_shard(shards, 0, [doc], dtype_for(spec.vocab_size))
    write_tokens_manifest(
        shards,
        [entry],
        vocab_size=spec.vocab_size,
        bos_id=None,
        eos_id=0,
        pad_id=None,
        tokenizer_sha256="none: uniform random tokens for benchmarks/train_vs_litgpt.py",
    )
    return {"n_params": sum(p.numel() for p in model.parameters())}


def kiban_run(spec: Spec) -> dict:
    """Train with `kiban train` itself (`kiban.train.loop.run`) and read its metrics.jsonl.

    The trainer times each optimizer step (batch fetch, forward, backward, clip, AdamW, zero_grad,
    `loss.item()`) and logs tokens/s per step; checkpoint writing at the end is outside that time.
    """
    import shutil

    from kiban.train.config import (
        BatchConfig,
        DataConfig,
        ModelSection,
        OptimConfig,
        ScheduleConfig,
        TrainConfig,
    )
    from kiban.train.loop import run

    out_dir = WORK / "kiban-train"
    shutil.rmtree(out_dir, ignore_errors=True)  # else `kiban train` resumes or finds the run finished
    cfg = TrainConfig(
        data=DataConfig(shards=str(WORK / "shards"), seq_len=spec.seq_len, eval_fraction=0.0),
        model=ModelSection(preset="xs", overrides=_kiban_shape(spec)),  # every field set
        optim=OptimConfig(
            lr=spec.lr,
            betas=spec.betas,
            eps=spec.eps,
            weight_decay=spec.weight_decay,
            grad_clip=spec.grad_clip,
        ),
        schedule=ScheduleConfig(warmup_steps=1),
        batch=BatchConfig(micro_batch=spec.micro_batch, grad_accum=1, max_steps=spec.warmup + spec.steps),
        out_dir=str(out_dir),
        seed=spec.seed,
        device="cpu",
        precision="fp32",
        compile=spec.compile,
        threads=spec.threads,
        eval_every=0,
        checkpoint_every=0,
        log_every=1,
    )
    stats = run(cfg)
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line]
    steps = [r for r in records if "tokens_per_s" in r]
    timed = steps[spec.warmup :]
    seconds = [spec.tokens_per_step / r["tokens_per_s"] for r in timed]
    return {
        "tokens_per_s": spec.tokens_per_step * len(seconds) / sum(seconds),
        "step_seconds": seconds,
        "losses": [r["loss"] for r in steps],
        "n_params": stats["params"],  # ModelConfig.n_params()["total"]
    }


def _litgpt_model(spec: Spec):
    import torch
    from litgpt.config import Config
    from litgpt.model import GPT

    config = Config(
        name="kiban-bench-llama",
        block_size=spec.seq_len,
        n_layer=spec.n_layers,
        n_embd=spec.dim,
        n_head=spec.n_heads,
        n_query_groups=spec.n_kv_heads,
        head_size=spec.dim // spec.n_heads,
        vocab_size=spec.vocab_size,
        padded_vocab_size=spec.vocab_size,
        rotary_percentage=1.0,
        parallel_residual=False,
        bias=False,
        norm_class_name="RMSNorm",
        norm_eps=1e-5,
        mlp_class_name="LLaMAMLP",
        intermediate_size=spec.ffn_hidden,
        rope_base=10_000,
    )
    model = GPT(config)
    model.transformer.wte.weight = model.lm_head.weight  # as pretrain.py does for tie_embeddings
    sd = torch.load(spec.init_path)["state_dict"]
    model.load_state_dict(_kiban_to_litgpt(sd, spec.n_layers))
    return model


def _kiban_to_litgpt(sd: dict, n_layers: int) -> dict:
    """kiban (Hugging Face) parameter names -> litgpt's; q, k, v rows stacked into litgpt's fused qkv."""
    import torch

    out = {"transformer.wte.weight": sd["embed_tokens.weight"], "lm_head.weight": sd["lm_head.weight"]}
    out["transformer.ln_f.weight"] = sd["norm.weight"]
    for i in range(n_layers):
        k, h = f"layers.{i}.", f"transformer.h.{i}."
        out[h + "norm_1.weight"] = sd[k + "input_layernorm.weight"]
        out[h + "norm_2.weight"] = sd[k + "post_attention_layernorm.weight"]
        qkv = [sd[k + f"self_attn.{n}_proj.weight"] for n in "qkv"]
        out[h + "attn.qkv.weight"] = torch.cat(qkv, dim=0)  # litgpt splits (q, k, v) in this order
        out[h + "attn.proj.weight"] = sd[k + "self_attn.o_proj.weight"]
        out[h + "mlp.fc_1.weight"] = sd[k + "mlp.gate_proj.weight"]  # silu(fc_1(x)) * fc_2(x)
        out[h + "mlp.fc_2.weight"] = sd[k + "mlp.up_proj.weight"]
        out[h + "mlp.proj.weight"] = sd[k + "mlp.down_proj.weight"]
    return out


def litgpt_parity(spec: Spec) -> dict:
    """litgpt's logits on the first batch, from kiban's initial weights, against kiban's."""
    torch = _setup_torch(spec)
    model = _litgpt_model(spec)
    batch = _batches(spec)[0]
    with torch.no_grad():
        logits = model(batch[:, :-1])  # (B, T, V)
    ref = torch.load(spec.init_path)["logits"]
    return {
        "n_params": sum(p.numel() for p in model.parameters()),
        "max_abs_logit_diff": (logits - ref).abs().max().item(),
    }


def litgpt_run(spec: Spec) -> dict:
    """Train litgpt's model the way litgpt/pretrain.py's `fit` steps it."""
    torch = _setup_torch(spec)
    import lightning as L
    from litgpt.utils import chunked_cross_entropy, instantiate_torch_optimizer

    fabric = L.Fabric(accelerator="cpu", devices=1, precision="32-true")
    model = _litgpt_model(spec)
    if spec.compile:
        model = torch.compile(model)
    model = fabric.setup(model)
    optimizer = instantiate_torch_optimizer(
        {
            "class_path": "torch.optim.AdamW",
            "init_args": {
                "lr": spec.lr,
                "betas": spec.betas,
                "eps": spec.eps,
                "weight_decay": spec.weight_decay,
            },
        },
        model.parameters(),
        fused=fabric.device.type == "cuda",
    )
    optimizer = fabric.setup_optimizers(optimizer)
    model.train()

    def litgpt_step(x, y):
        logits = model(x)
        loss = chunked_cross_entropy(logits, y)
        fabric.backward(loss)
        fabric.clip_gradients(model, optimizer, max_norm=spec.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        return loss.detach()

    result = _timed(litgpt_step, _batches(spec), spec)
    result["n_params"] = sum(p.numel() for p in model.parameters())
    return result


WORKERS = {
    "kiban-init": kiban_init,
    "kiban": kiban_run,
    "litgpt-parity": litgpt_parity,
    "litgpt": litgpt_run,
}


# --- the driver ----------------------------------------------------------------------------------


def run_worker(python: Path, role: str, spec: Spec, out: Path) -> dict:
    """Run one worker role in a fresh process, one thread; return its JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": str(spec.threads), "MKL_NUM_THREADS": str(spec.threads)}
    env.pop("PYTHONPATH", None)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", role, "--spec", json.dumps(asdict(spec))]
    cmd += ["--result", str(out)]
    log = out.with_suffix(".log")
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{role} failed (exit {proc.returncode}); see {log}")
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per tool, order alternating")
    ap.add_argument("--warmup", type=int, default=Spec.warmup, help="untimed steps at the start of a run")
    ap.add_argument("--steps", type=int, default=Spec.steps, help="timed steps per run")
    ap.add_argument("--layers", type=int, default=Spec.n_layers)
    ap.add_argument("--dim", type=int, default=Spec.dim)
    ap.add_argument("--heads", type=int, default=Spec.n_heads)
    ap.add_argument("--kv-heads", type=int, default=Spec.n_kv_heads)
    ap.add_argument("--ffn-hidden", type=int, default=Spec.ffn_hidden)
    ap.add_argument("--vocab", type=int, default=Spec.vocab_size)
    ap.add_argument("--seq-len", type=int, default=Spec.seq_len)
    ap.add_argument("--micro-batch", type=int, default=Spec.micro_batch)
    ap.add_argument("--threads", type=int, default=Spec.threads, help="torch threads per process")
    ap.add_argument("--compile", action="store_true", help="torch.compile both (needs a C++ compiler)")
    ap.add_argument("--seed", type=int, default=Spec.seed)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:  # inside a worker process: the only path that imports torch
        spec_dict = json.loads(args.spec)
        spec_dict["betas"] = tuple(spec_dict["betas"])
        result = WORKERS[args.worker](Spec(**spec_dict))
        Path(args.result).write_text(json.dumps(result))
        return

    spec = Spec(
        n_layers=args.layers,
        dim=args.dim,
        n_heads=args.heads,
        n_kv_heads=args.kv_heads,
        ffn_hidden=args.ffn_hidden,
        vocab_size=args.vocab,
        seq_len=args.seq_len,
        micro_batch=args.micro_batch,
        warmup=args.warmup,
        steps=args.steps,
        seed=args.seed,
        threads=args.threads,
        compile=args.compile,
    )
    pythons = {"kiban": Path(sys.executable), "litgpt": ensure_litgpt_venv()}
    WORK.mkdir(parents=True, exist_ok=True)
    log = (lambda *a: None) if args.json else print

    init = run_worker(pythons["kiban"], "kiban-init", spec, WORK / "kiban-init.json")
    parity = run_worker(pythons["litgpt"], "litgpt-parity", spec, WORK / "litgpt-parity.json")
    log(
        f"shape: {spec.n_layers} layers × {spec.dim}, heads {spec.n_heads}/{spec.n_kv_heads} kv, "
        f"ffn {spec.ffn_hidden}, vocab {spec.vocab_size:,} (tied); batch {spec.micro_batch} × "
        f"{spec.seq_len}; fp32, {spec.threads} thread(s), {'compiled' if spec.compile else 'eager'}"
    )
    log(
        f"parameters: kiban {init['n_params']:,}, litgpt {parity['n_params']:,}; "
        f"max |logit diff| at init {parity['max_abs_logit_diff']:.2e}"
    )
    if init["n_params"] != parity["n_params"]:
        raise SystemExit("the two models differ in parameter count; not comparable")

    runs: dict[str, list[dict]] = {tool: [] for tool in TOOLS}
    for r in range(args.repeats):
        order = TOOLS if r % 2 == 0 else TOOLS[::-1]
        for tool in order:
            res = run_worker(pythons[tool], tool, spec, WORK / f"run-{r}-{tool}.json")
            runs[tool].append(res)
            log(
                f"repeat {r + 1}/{args.repeats} {tool:6s} {res['tokens_per_s']:8.1f} tokens/s  "
                f"(s/step {statistics.median(res['step_seconds']):.2f}; loss "
                f"{res['losses'][0]:.4f} → {res['losses'][-1]:.4f})"
            )
    median = {tool: statistics.median(r["tokens_per_s"] for r in runs[tool]) for tool in TOOLS}
    ratio = median["kiban"] / median["litgpt"]
    summary = {
        "spec": asdict(spec),
        "n_params": init["n_params"],
        "max_abs_logit_diff": parity["max_abs_logit_diff"],
        "tokens_per_s": {tool: [r["tokens_per_s"] for r in runs[tool]] for tool in TOOLS},
        "median_tokens_per_s": median,
        "ratio": ratio,
        "target": TARGET_RATIO,
        "final_loss": {tool: [r["losses"][-1] for r in runs[tool]] for tool in TOOLS},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"\n{'tool':8s} {'median tokens/s':>16s}")
    for tool in TOOLS:
        print(f"{tool:8s} {median[tool]:16.1f}")
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"kiban / litgpt = {ratio:.3f}× ({verdict} the ≥ {TARGET_RATIO}× target)")


if __name__ == "__main__":
    main()
