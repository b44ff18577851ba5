"""LoRA vs full fine-tuning in kiban, and kiban's LoRA vs PEFT + transformers' Trainer: tokens/s and
peak memory on the same model, the same rows and the same optimizer, CPU fp32.

    .venv/bin/python benchmarks/lora_vs_full.py --repeats 3            # creates benchmarks/.venv-peft once
    .venv/bin/python benchmarks/lora_vs_full.py --repeats 3 --skip-install

The setup, built once under `benchmarks/.work/lora/` (git-ignored):

- the model: kiban's `xs` shape (6 layers × 384, 6 heads / 2 key-value heads, SwiGLU 1024, tied
  embeddings) with seeded random weights, saved in Hugging Face layout (`kiban.model.hf.save_hf`),
  with a character-level byte-fallback tokenizer of the chat text (`kiban.tokenizer.llama_style`)
  and kiban's default (Llama 2) chat template;
- the data: `--examples` conversations written from Debian's Japanese man pages (manpages-ja): "what
  does COMMAND do?", answered by the page's NAME line and first description sentences; rendered with
  the chat template by kiban (`kiban.finetune.chat_data`), one conversation per row of `--seq-len`
  tokens (no packing, so both tools see identical rows), labels only on the assistant tokens.

Workers, each a fresh process (so peak RSS is its own), alternating over `--repeats` rounds:

- `kiban-full` and `kiban-lora`: kiban's fine-tuning code (`kiban.finetune`: `lora.inject`,
  `loop._loss` with the per-row positions and document mask, `kiban.train.loop.build_optimizer`);
- `peft-lora` (in `benchmarks/.venv-peft`: torch 2.13.0 CPU, transformers 5.24.0, peft 0.21.2,
  accelerate 1.15.0): `LlamaForCausalLM.from_pretrained` + `get_peft_model(LoraConfig(...))` trained
  by `transformers.Trainer` (`use_cpu`, AdamW torch, the same lr, grad clip 1.0, no eval, no saving)
  on the same rows (input_ids, attention_mask, labels).

LoRA: rank 8, alpha 16, dropout 0, all 7 projections, on both. Batch `--batch` rows, `--threads`
torch threads on both. tokens/s = rows × seq_len / step time, the median of `--steps` steps after
`--warmup`; peak memory = the worker's peak RSS (ru_maxrss), and the part of it added by training
(peak − RSS after the model and data were loaded). Targets: kiban LoRA ≥ 1.0× PEFT's tokens/s at
equal or lower peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "lora"
MODEL = WORK / "model"
ROWS = WORK / "rows.npz"
PEFT_VENV = HERE / ".venv-peft"
TORCH_REQUIREMENT = "torch==2.13.0"
PEFT_REQUIREMENTS = ["peft==0.21.2", "transformers==5.24.0", "accelerate==1.15.0", "numpy"]
LORA = {
    "rank": 8,
    "alpha": 16.0,
    "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
LR = 1e-3
TARGET_RATIO = 1.0
WORKERS = ("kiban-full", "kiban-lora", "peft-lora")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- the PEFT venv ---------------------------------------------------------------------------------


def ensure_peft_venv(*, skip_install: bool) -> Path:
    python = PEFT_VENV / "bin" / "python"
    marker = PEFT_VENV / "kiban-requirements.txt"
    wanted = "\n".join([TORCH_REQUIREMENT, *PEFT_REQUIREMENTS])
    if python.exists() and (skip_install or (marker.exists() and marker.read_text() == wanted)):
        return python
    if skip_install:
        raise SystemExit(f"--skip-install: {PEFT_VENV} does not exist; run once without it")
    print(f"creating {PEFT_VENV} (torch CPU + transformers + peft) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(PEFT_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, TORCH_REQUIREMENT], check=True)  # first and pinned: never a CUDA build
    subprocess.run([*pip, *PEFT_REQUIREMENTS, TORCH_REQUIREMENT], check=True)
    marker.write_text(wanted)
    return python


# --- build (kiban venv): tokenizer, model, rows ----------------------------------------------------


def conversations(n: int) -> list[list[dict]]:
    import gzip

    from kiban.curate.readers.roff import roff_to_text

    out = []
    for page in sorted(Path("/usr/share/man/ja/man1").glob("*.1.gz")):
        text = roff_to_text(gzip.decompress(page.read_bytes()).decode("utf-8", errors="replace"))
        lines = [x.strip() for x in text.split("\n")]
        if "名前" not in lines or "説明" not in lines:
            continue
        name = lines[lines.index("名前") + 1]
        desc = next((x for x in lines[lines.index("説明") + 1 :] if "。" in x), "")
        if " - " not in name or not desc:
            continue
        cmd, what = name.split(" - ", 1)
        answer = f"{what.strip()}。{desc[:160]}"
        out.append(
            [
                {"role": "user", "content": f"{cmd.strip()} コマンドは何をしますか？"},
                {"role": "assistant", "content": answer},
            ]
        )
        if len(out) == n:
            break
    if len(out) < n:
        raise SystemExit(f"only {len(out)} man pages usable; install manpages-ja (make test-data)")
    return out


def build(examples: int, seq_len: int) -> None:
    import numpy as np
    import torch

    from kiban.finetune.chat_data import ChatRenderer, Example
    from kiban.finetune.packing import pack
    from kiban.model.config import preset
    from kiban.model.hf import save_hf
    from kiban.model.llama import Llama
    from kiban.tokenizer import llama_style as ls

    key = json.dumps({"examples": examples, "seq_len": seq_len, "v": 1})
    if (WORK / "build.json").is_file() and (WORK / "build.json").read_text() == key:
        return
    convs = conversations(examples)
    chars = sorted({c for conv in convs for m in conv for c in m["content"]} | set("[INST]/ <>SYS\n"))
    tok = ls.build_tokenizer(["▁", *chars], [])
    MODEL.mkdir(parents=True, exist_ok=True)
    ls.save_hf(tok, MODEL, chat_template=ls.DEFAULT_CHAT_TEMPLATE, model_max_length=512)
    cfg = preset("xs")
    cfg = type(cfg)(**{**cfg.__dict__, "vocab_size": tok.get_vocab_size()})
    torch.manual_seed(0)
    save_hf(Llama(cfg), MODEL, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    renderer = ChatRenderer(MODEL)
    exs: list[Example] = []
    for i, conv in enumerate(convs):
        ex = renderer.example(i + 1, conv)
        if len(ex.ids) <= seq_len + 1:
            exs.append(ex)
    rows = pack(exs, seq_len=seq_len, pad_id=3, pack=False, seed=0)
    np.savez(
        ROWS,
        tokens=rows.tokens.numpy(),
        targets=rows.targets.numpy(),
        positions=rows.positions.numpy(),
        docs=rows.docs.numpy(),
    )
    (WORK / "build.json").write_text(key)


# --- workers ---------------------------------------------------------------------------------------


def worker_kiban(method: str, args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from kiban.finetune import lora
    from kiban.finetune.loop import _loss
    from kiban.finetune.packing import Rows
    from kiban.model.hf import load_hf
    from kiban.train.config import OptimConfig
    from kiban.train.loop import build_optimizer, keep_freed_memory

    keep_freed_memory()  # what `kiban finetune` does
    torch.set_num_threads(args.threads)
    d = np.load(ROWS)
    rows = Rows(*(torch.from_numpy(d[k]) for k in ("tokens", "targets", "positions", "docs")))
    model = load_hf(MODEL)
    torch.manual_seed(0)
    if method == "lora":
        lora.inject(model, rank=LORA["rank"], alpha=LORA["alpha"], dropout=0.0, targets=LORA["targets"])
    opt = build_optimizer(model, OptimConfig(lr=LR, weight_decay=0.0))
    params = [p for p in model.parameters() if p.requires_grad]
    base_rss = current_rss_mb()
    model.train()
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        idx = [(step * args.batch + j) % len(rows) for j in range(args.batch)]
        t0 = time.perf_counter()
        loss = _loss(model, rows.batch(idx), torch.device("cpu"))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        losses.append(float(loss))
        if step >= args.warmup:
            times.append(dt)
    return _result(times, losses, base_rss, args, sum(p.numel() for p in params))


def worker_peft(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    torch.set_num_threads(args.threads)
    d = np.load(ROWS)
    x, y, docs = (torch.from_numpy(d[k]) for k in ("tokens", "targets", "docs"))
    # HF shifts labels itself: labels[t] is predicted from position t-1, so kiban's target row y
    # (y[t] predicted at t) becomes [-100, y[0], ..., y[T-2]] over the same T input tokens.
    labels = torch.cat([torch.full_like(y[:, :1], -100), y[:, :-1]], dim=1)
    mask = (docs >= 0).long()

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return (args.warmup + args.steps) * args.batch

        def __getitem__(self, i: int) -> dict:
            j = i % len(x)
            return {"input_ids": x[j], "attention_mask": mask[j], "labels": labels[j]}

    model = LlamaForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32)
    torch.manual_seed(0)
    cfg = LoraConfig(
        r=LORA["rank"],
        lora_alpha=LORA["alpha"],
        lora_dropout=0.0,
        target_modules=LORA["targets"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, cfg)
    times, losses, t0 = [], [], [0.0]

    class Clock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):  # noqa: ANN001, ANN201
            t0[0] = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):  # noqa: ANN001, ANN201
            if state.global_step > args.warmup:
                times.append(time.perf_counter() - t0[0])

        def on_log(self, a, state, control, logs=None, **kw):  # noqa: ANN001, ANN201
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    targs = TrainingArguments(
        output_dir=str(WORK / "peft-out"),
        per_device_train_batch_size=args.batch,
        max_steps=args.warmup + args.steps,
        learning_rate=LR,
        weight_decay=0.0,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        optim="adamw_torch",
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=Rows(), callbacks=[Clock()])
    base_rss = current_rss_mb()
    trainer.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return _result(times, losses, base_rss, args, trainable)


def _result(
    times: list[float], losses: list[float], base_rss: float, args: argparse.Namespace, trainable: int
) -> dict:
    step_s = statistics.median(times)
    return {
        "tokens_per_s": args.batch * args.seq_len / step_s,
        "step_s": step_s,
        "peak_rss_mb": rss_mb(),
        "train_mem_mb": rss_mb() - base_rss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "trainable_params": trainable,
    }


# --- driver ----------------------------------------------------------------------------------------


def run_worker(python: Path, name: str, args: argparse.Namespace) -> dict:
    cmd = [
        str(python),
        __file__,
        "--worker",
        name,
        "--threads",
        str(args.threads),
        "--batch",
        str(args.batch),
        "--seq-len",
        str(args.seq_len),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "PYTHONPATH": str(HERE.parent / "src"),
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", choices=WORKERS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--examples", type=int, default=96)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-install", action="store_true", help="reuse benchmarks/.venv-peft as it is")
    args = ap.parse_args()
    if args.worker:
        if args.worker == "peft-lora":
            result = worker_peft(args)
        else:
            result = worker_kiban(args.worker.split("-")[1], args)
        print(json.dumps(result))
        return 0

    peft_python = ensure_peft_venv(skip_install=args.skip_install)
    build(args.examples, args.seq_len)
    pythons = {
        "kiban-full": Path(sys.executable),
        "kiban-lora": Path(sys.executable),
        "peft-lora": peft_python,
    }
    runs: dict[str, list[dict]] = {w: [] for w in WORKERS}
    for r in range(args.repeats):
        for w in WORKERS:
            res = run_worker(pythons[w], w, args)
            runs[w].append(res)
            print(
                f"round {r + 1} {w}: {res['tokens_per_s']:.0f} tokens/s, peak RSS {res['peak_rss_mb']:.0f} MB "
                f"(training +{res['train_mem_mb']:.0f} MB), loss {res['first_loss']:.3f} → {res['last_loss']:.3f}",
                file=sys.stderr,
            )
    med = {
        w: {
            k: statistics.median(r[k] for r in runs[w])
            for k in ("tokens_per_s", "peak_rss_mb", "train_mem_mb")
        }
        for w in WORKERS
    }
    kl, kf, pl = med["kiban-lora"], med["kiban-full"], med["peft-lora"]
    ratios = {
        "kiban_lora_vs_full_tokens_per_s": kl["tokens_per_s"] / kf["tokens_per_s"],
        "kiban_lora_vs_full_peak_rss": kl["peak_rss_mb"] / kf["peak_rss_mb"],
        "kiban_lora_vs_full_train_mem": kl["train_mem_mb"] / max(kf["train_mem_mb"], 1e-9),
        "kiban_lora_vs_peft_tokens_per_s": kl["tokens_per_s"] / pl["tokens_per_s"],
        "kiban_lora_vs_peft_peak_rss": kl["peak_rss_mb"] / pl["peak_rss_mb"],
        "kiban_lora_vs_peft_train_mem": kl["train_mem_mb"] / max(pl["train_mem_mb"], 1e-9),
    }
    print("\n| path | tokens/s | peak RSS (MB) | added by training (MB) | trainable params |")
    print("| --- | --- | --- | --- | --- |")
    for w in WORKERS:
        print(
            f"| {w} | {med[w]['tokens_per_s']:.0f} | {med[w]['peak_rss_mb']:.0f} | {med[w]['train_mem_mb']:.0f} | "
            f"{runs[w][0]['trainable_params']:,} |"
        )
    print()
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}×")
    ok = (
        ratios["kiban_lora_vs_peft_tokens_per_s"] >= TARGET_RATIO
        and ratios["kiban_lora_vs_peft_peak_rss"] <= 1.0
    )
    print(
        f"target (kiban LoRA ≥ {TARGET_RATIO}× PEFT tokens/s at ≤ its peak memory): {'met' if ok else 'NOT met'}"
    )
    (WORK / "result.json").write_text(
        json.dumps({"median": med, "ratios": ratios, "runs": runs, "args": vars(args)}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
