"""kiban eval vs lm-evaluation-harness: the same model and task files, request by request, CPU fp32.

    .venv/bin/python benchmarks/eval_vs_lm_eval.py --repeats 3

Both tools read the same model directory and the same task files:

- the model: a Llama of 6 layers × 512 (8 heads, 4 key/value heads, SwiGLU 1408, untied output
  head, 34.5M parameters) with seeded random weights (the output head 3× the 0.02 init, as
  tests/conftest.py does, so predictions are not uniform), saved in Hugging Face layout with
  `kiban.model.hf.save_hf` (fp32), and a 16,384-token byte-fallback BPE tokenizer trained with
  kiban's Llama-style pipeline (`kiban.tokenizer.llama_style`) on the Japanese prose of Debian's
  manpages-ja, debian-reference-ja and maint-guide-ja (`_corpus.source_texts`);
- a JCommonsenseQA v1.3 file (JSON Lines: q_id, question, choice0..4, label) of `--items` continuation
  cloze items cut from the same prose: the question is the start of a paragraph, the right choice the
  next 4–16 characters, the four others spans of other paragraphs. The cut falls anywhere, often
  inside what the tokenizer would merge, so the context/continuation token split is exercised;
- an llm-jp-eval file (instruction, output_length 32, samples of input/output) of `--gen-items`
  paragraph starts, for greedy generation (until a blank line, at most 32 tokens).

kiban runs `kiban eval`'s own code (`kiban.evaluate.run.evaluate` with `load_backend`, tasks
`jcommonsenseqa` and `llmjp:kiban-bench-gen`, 0-shot). lm-evaluation-harness 0.4.13 (its own venv,
`benchmarks/.venv-lmeval`, created on first use) runs `simple_evaluate` with its `hf` backend
(`HFLM(pretrained=DIR, dtype=float32)`, add_bos_token left at its default, as kiban's add_bos is) on
two task YAMLs written here (`.work/lmeval/tasks/`) that read the same files (`dataset_path: json`)
and spell out jp-stable's JCommonsenseQA 0.2.1 prompt and llm-jp-eval's prompt by hand; the script
then checks that every rendered prompt is the same string as kiban's. Few-shot is left at 0: the two
tools draw few-shot examples with different samplers by design, so k-shot prompts would differ.

Compared, per request: the (context, continuation) strings, their token ids (lm-eval's
`_encode_pair` against kiban's `pair_tokens`), the log-likelihood (targets: max |diff| ≤ 1e-4),
is_greedy; per task: acc and acc_norm (within 0.1 points) and every greedy output (identical).

Throughput: each tool's `loglikelihood` over all the cloze requests (tokenization included, model
load excluded), batch size `--batch-size` on both, `--threads` torch threads on both
(`torch.set_num_threads` and OMP/MKL_NUM_THREADS), in a fresh process per run after a warm-up of
two batches, runs alternating between the tools; items/s = cloze questions (5 requests each) /
seconds, the median over `--repeats`. Target: kiban ≥ 1.0× lm-eval's `hf` backend.

Everything written goes under `benchmarks/.work/lmeval/` (git-ignored): `build/` (tokenizer, model,
data and YAMLs, reused while their parameters match), `kiban-eval/` (kiban's report), and one JSON
result and log per worker process.
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
WORK = HERE / ".work" / "lmeval"
BUILD = WORK / "build"
MODEL = BUILD / "model"
DATA = BUILD / "data"
TASKS_DIR = BUILD / "tasks"
LMEVAL_VENV = HERE / ".venv-lmeval"
# torch first and on its own: this machine's CPU wheel of the project's torch (pip's find-links); an
# unpinned resolve of lm-eval[hf] would otherwise pull a multi-GB CUDA build of torch.
TORCH_REQUIREMENT = "torch==2.13.0"
LMEVAL_REQUIREMENT = "lm-eval[hf]==0.4.13"  # hf: transformers, accelerate, peft (and torch, kept)
BUILD_VERSION = 2  # bump when the build's output for the same parameters changes

GEN_DATASET = "kiban-bench-gen"
KIBAN_TASKS = ("jcommonsenseqa", f"llmjp:{GEN_DATASET}")
LM_MC, LM_GEN = "kiban_bench_jcommonsenseqa", "kiban_bench_gen"
GEN_INSTRUCTION = "文章の続きを書いてください。"
N_CHOICES = 5

TARGET_MAX_LOGPROB_DIFF = 1e-4
TARGET_ACC_POINTS = 0.1
TARGET_RATIO = 1.0
TOOLS = ("kiban", "lmeval")


@dataclass(frozen=True)
class Spec:
    """What every worker process builds, scores or times; passed to it as JSON."""

    items: int = 200
    gen_items: int = 40
    pool_items: int = 20  # JCommonsenseQA's train file (the few-shot pool kiban's loader requires)
    vocab_size: int = 16_384
    dim: int = 512
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int = 4
    ffn_hidden: int = 1408
    max_seq_len: int = 1024
    head_scale: float = 3.0
    max_gen_tokens: int = 32
    batch_size: int = 16
    threads: int = 1
    seed: int = 0

    def build_key(self) -> dict:
        """The fields the build depends on (a rebuild is skipped while they match)."""
        keys = ("items", "gen_items", "pool_items", "vocab_size", "dim", "n_layers", "n_heads")
        keys += ("n_kv_heads", "ffn_hidden", "max_seq_len", "head_scale", "max_gen_tokens", "seed")
        return {"version": BUILD_VERSION, **{k: getattr(self, k) for k in keys}}


# --- the lm-eval venv ----------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_lmeval_venv(venv: Path = LMEVAL_VENV, *, skip_install: bool = False) -> Path:
    """Create the lm-eval venv (torch pinned first, then lm-eval[hf]) unless already done."""
    marker = venv / "kiban-requirements.txt"
    wanted = f"{TORCH_REQUIREMENT}\n{LMEVAL_REQUIREMENT}\n"
    if venv_python(venv).exists() and (skip_install or (marker.exists() and marker.read_text() == wanted)):
        return venv_python(venv)
    if skip_install:
        raise SystemExit(f"--skip-install: {venv} does not exist; run once without it")
    print(f"creating {venv} (torch CPU + lm-eval[hf], ~1.8 GB) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, TORCH_REQUIREMENT], check=True)
    subprocess.run([*pip, LMEVAL_REQUIREMENT, TORCH_REQUIREMENT], check=True)  # torch re-stated: kept
    marker.write_text(wanted)
    return venv_python(venv)


# --- build (kiban venv): tokenizer, model, task files, lm-eval YAMLs -----------------------------


def _paragraphs() -> list[str]:
    """Distinct Japanese prose paragraphs of the installed Debian documentation, in a fixed order."""
    sys.path.insert(0, str(HERE))
    from _corpus import source_texts

    seen: dict[str, None] = {}
    for _, _, paragraphs in source_texts():
        for p in paragraphs:
            seen.setdefault(p, None)
    if len(seen) < 1000:
        raise SystemExit("too little Japanese text: install manpages-ja debian-reference-ja maint-guide-ja")
    return list(seen)


def _train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-fallback BPE as `kiban tokenizer train` makes one (llama_style pipeline, its alphabet
    rule and defaults), trained on `texts` in memory instead of a curated corpus directory."""
    from collections import Counter

    from tokenizers import trainers

    from kiban.tokenizer import llama_style as ls
    from kiban.tokenizer.train import TokenizerConfig, choose_alphabet

    cfg = TokenizerConfig(vocab_size=vocab_size)
    chars = Counter(ch for t in texts for ch in t)
    chars[ls.SPACE] += chars.pop(" ", 0) + len(texts)  # the normalizer's ▁s
    budget = vocab_size - ls.RESERVED
    alphabet = choose_alphabet(chars, cfg.character_coverage, budget // 2)
    if ls.SPACE not in alphabet:  # always a token, so spaces decode through "▁" → " "
        alphabet = sorted([*choose_alphabet(chars, cfg.character_coverage, budget // 2 - 1), ls.SPACE])
    trainer = trainers.BpeTrainer(
        vocab_size=budget,
        min_frequency=cfg.min_frequency,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        max_token_length=cfg.max_token_chars,
    )
    trainer_tok = ls.training_tokenizer()
    trainer_tok.train_from_iterator(texts, trainer, length=len(texts))
    learned, merges = ls.learned_vocab(trainer_tok)
    return ls.build_tokenizer(learned, merges), cfg


def _cloze_items(paragraphs: list[str], n: int, rng) -> list[dict]:
    """JCommonsenseQA-format continuation cloze items: question = the start of a paragraph, the right
    choice its next 4–16 characters, the others spans of the same length range from other paragraphs."""
    usable = [p for p in paragraphs if 80 <= len(p) <= 400]
    rng.shuffle(usable)
    items: list[dict] = []
    for p in usable:
        if len(items) == n:
            break
        cut = rng.randint(int(len(p) * 0.4), int(len(p) * 0.8))
        gold = p[cut : cut + rng.randint(4, 16)]
        others: list[str] = []
        while len(others) < N_CHOICES - 1:
            q = usable[rng.randrange(len(usable))]
            start = rng.randrange(len(q) - 20)
            span = q[start : start + rng.randint(4, 16)]
            if span.strip() and span != gold and span not in others:
                others.append(span)
        if not gold.strip():
            continue
        choices = [gold, *others]
        rng.shuffle(choices)
        item = {"q_id": len(items), "question": p[:cut], **{f"choice{i}": c for i, c in enumerate(choices)}}
        items.append({**item, "label": choices.index(gold)})
    if len(items) < n:
        raise SystemExit(f"only {len(items)} cloze items could be made; ask for fewer --items")
    return items


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def _lmeval_yamls(spec: Spec, mc_file: Path, gen_file: Path) -> dict[str, dict]:
    """lm-eval task configs that read the files above; the prompts are written out here by hand from
    their published sources (not copied from kiban's strings), so that the comparison of rendered
    prompts is a real check of kiban's templates.

    - JCommonsenseQA: Stability-AI's jp-stable fork of lm-evaluation-harness,
      lm_eval/tasks/ja/jcommonsenseqa.py, JCommonsenseQAWithFintanPromptV21 (prompt version 0.2.1):
      DESCRIPTION "与えられた選択肢の中から、最適な答えを選んでください。 \\n\\n" (its space included),
      doc_to_text "質問：{question}\\n選択肢：\\n- {c0}\\n...\\n- {c4}\\n回答：", target "{choice}" with
      no separator, few-shot examples separated by "\\n\\n".
    - llm-jp-eval: PROMPTS.md's default (`get_evaluation_prompt` without a custom template): an
      Alpaca-style header, "### 指示:" + instruction, then "\\n\\n### 入力:\\n{input}\\n\\n### 応答:\\n";
      generation ends at a blank line.

    JSON is YAML, so the configs are written with json.dumps (no quoting surprises for the trailing
    space and newlines of the description).
    """
    choices = "".join(f"\n- {{{{choice{i}}}}}" for i in range(N_CHOICES))
    mc = {
        "task": LM_MC,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"validation": str(mc_file)}},
        "validation_split": "validation",
        "output_type": "multiple_choice",
        "description": "与えられた選択肢の中から、最適な答えを選んでください。 \n\n",
        "doc_to_text": "質問：{{question}}\n選択肢：" + choices + "\n回答：",
        "doc_to_choice": "{{[" + ", ".join(f"choice{i}" for i in range(N_CHOICES)) + "]}}",
        "doc_to_target": "label",
        "target_delimiter": "",
        "fewshot_delimiter": "\n\n",
        "num_fewshot": 0,
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }
    header = (
        "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
    )
    gen = {
        "task": LM_GEN,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"validation": str(gen_file)}, "field": "samples"},
        "validation_split": "validation",
        "output_type": "generate_until",
        "description": f"{header}\n\n### 指示:\n{GEN_INSTRUCTION}",
        "doc_to_text": "\n\n### 入力:\n{{input}}\n\n### 応答:\n",
        "doc_to_target": "{{output}}",
        "target_delimiter": "",
        "fewshot_delimiter": "",
        "num_fewshot": 0,
        "generation_kwargs": {"until": ["\n\n"], "max_gen_toks": spec.max_gen_tokens, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    return {LM_MC: mc, LM_GEN: gen}


def build(spec: Spec) -> dict:
    """Tokenizer, model, task files and lm-eval YAMLs under BUILD; skipped while params.json matches."""
    import random

    params = BUILD / "params.json"
    if params.is_file() and json.loads(params.read_text()).get("key") == spec.build_key():
        return json.loads(params.read_text())["stats"]
    import torch

    from kiban.model.config import ModelConfig
    from kiban.model.hf import save_hf
    from kiban.model.llama import Llama
    from kiban.tokenizer import llama_style as ls

    params.unlink(missing_ok=True)
    paragraphs = _paragraphs()
    tok, tok_cfg = _train_tokenizer(paragraphs, spec.vocab_size)
    MODEL.mkdir(parents=True, exist_ok=True)
    ls.save_hf(tok, MODEL, chat_template=tok_cfg.chat_template, model_max_length=spec.max_seq_len)
    cfg = ModelConfig(
        vocab_size=tok.get_vocab_size(),
        dim=spec.dim,
        n_layers=spec.n_layers,
        n_heads=spec.n_heads,
        n_kv_heads=spec.n_kv_heads,
        ffn_hidden=spec.ffn_hidden,
        max_seq_len=spec.max_seq_len,
        tie_embeddings=False,
    )
    torch.manual_seed(spec.seed)
    model = Llama(cfg)
    # Untied, so that a random model does not just predict its last input token again (with tied
    # embeddings every greedy generation here echoed the prompt's final "\n" and stopped at "\n\n",
    # empty); and a head sharper than the 0.02 init, so that greedy choices are not near-ties.
    with torch.no_grad():
        model.lm_head.weight.mul_(spec.head_scale)
    save_hf(model, MODEL, bos_token_id=1, eos_token_id=2, pad_token_id=3)

    rng = random.Random(spec.seed)
    items = _cloze_items(paragraphs, spec.items + spec.pool_items, rng)
    jc = DATA / "JGLUE" / "datasets" / "jcommonsenseqa-v1.3"
    _write_jsonl(jc / "valid-v1.3.json", items[: spec.items])
    _write_jsonl(jc / "train-v1.3.json", items[spec.items :])
    starts = [p for p in paragraphs if 60 <= len(p) <= 400]
    rng.shuffle(starts)
    samples = []
    for p in starts[: spec.gen_items]:
        cut = rng.randint(int(len(p) * 0.4), int(len(p) * 0.7))
        samples.append({"input": p[:cut], "output": p[cut : cut + 32]})
    gen_file = DATA / "llm-jp-eval" / f"{GEN_DATASET}.json"
    gen_file.parent.mkdir(parents=True, exist_ok=True)
    gen = {
        "instruction": GEN_INSTRUCTION,
        "output_length": spec.max_gen_tokens,
        "metrics": ["exact_match", "char_f1"],
        "few_shots": [],
        "samples": samples,
    }
    gen_file.write_text(json.dumps(gen, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    TASKS_DIR.mkdir(parents=True, exist_ok=True)
    for name, config in _lmeval_yamls(spec, jc / "valid-v1.3.json", gen_file).items():
        (TASKS_DIR / f"{name}.yaml").write_text(json.dumps(config, ensure_ascii=False, indent=1) + "\n")
    stats = {
        "n_params": cfg.n_params()["total"],
        "vocab_size": tok.get_vocab_size(),
        "paragraphs": len(paragraphs),
        "question_chars_median": statistics.median(len(i["question"]) for i in items[: spec.items]),
    }
    params.write_text(json.dumps({"key": spec.build_key(), "stats": stats}, indent=1))
    return stats


# --- inside a worker process (torch imported here only) ------------------------------------------


def _setup_torch(spec: Spec):
    import torch

    torch.set_num_threads(spec.threads)
    return torch


def kiban_check(spec: Spec) -> dict:
    """`kiban eval` on both tasks (its report: acc, acc_norm, generations), then the cloze requests
    scored again one by one through the same backend, with their token ids."""
    _setup_torch(spec)
    import shutil

    from kiban.evaluate.api import LoglikelihoodRequest
    from kiban.evaluate.backends import load_backend, pair_tokens
    from kiban.evaluate.run import EvalOptions, evaluate
    from kiban.evaluate.tasks import get_task

    backend = load_backend(str(MODEL), batch_size=spec.batch_size)
    out = WORK / "kiban-eval"
    shutil.rmtree(out, ignore_errors=True)
    opts = EvalOptions(tasks=list(KIBAN_TASKS), data_dir=DATA, out_dir=out, shots=0, contamination=False)
    report = json.loads(evaluate(backend, opts, model_dir=MODEL).read_text())
    mc = report["results"][KIBAN_TASKS[0]]

    task = get_task(KIBAN_TASKS[0])
    docs, _ = task.load(DATA)
    pairs = [(task.context(d, []), c) for d in docs for c in task.choices(d)]
    results = backend.loglikelihood([LoglikelihoodRequest(c, x) for c, x in pairs])
    gen_task = get_task(KIBAN_TASKS[1])
    gen_docs, _ = gen_task.load(DATA)
    gen_samples = (out / "samples" / f"{KIBAN_TASKS[1].replace(':', '_')}.jsonl").read_text().splitlines()
    describe = backend.describe()
    return {
        "acc": mc["acc,none"],
        "acc_norm": mc["acc_norm,none"],
        "requests": pairs,
        "logprobs": [r.logprob for r in results],
        "is_greedy": [r.is_greedy for r in results],
        "tokens": [pair_tokens(c, x, backend.encode, backend.prefix_id) for c, x in pairs],
        "gen_contexts": [gen_task.context(d, []) for d in gen_docs],
        "gen_outputs": [json.loads(line)["prediction"] for line in gen_samples],
        "backend": {
            k: describe.get(k) for k in ("kind", "dtype", "max_length", "add_bos", "prefix_token_id")
        },
        "versions": report.get("versions"),
    }


def _lmeval_env() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_DATASETS_CACHE"] = str(WORK / "hf-datasets")  # the json loader's Arrow cache
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _hflm(spec: Spec):
    from lm_eval.models.huggingface import HFLM

    # add_bos_token left unset: the tokenizer's own default (its post-processor adds <s>), which is
    # also what kiban's add_bos=None does
    return HFLM(pretrained=str(MODEL), dtype="float32", batch_size=spec.batch_size, device="cpu")


def lmeval_check(spec: Spec) -> dict:
    """lm-eval's `simple_evaluate` on the two YAML tasks: its rendered requests, per-request
    log-likelihoods, acc, acc_norm and generations; plus `_encode_pair` token ids."""
    _setup_torch(spec)
    _lmeval_env()
    from importlib.metadata import version

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    lm = _hflm(spec)
    out = simple_evaluate(
        model=lm,
        tasks=[LM_MC, LM_GEN],
        task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
        log_samples=True,
        bootstrap_iters=0,
    )
    mc = sorted(out["samples"][LM_MC], key=lambda s: s["doc_id"])
    pairs = [tuple(a) for s in mc for a in s["arguments"]]
    responses = [r for s in mc for r in s["filtered_resps"]]  # one (logprob, is_greedy) per choice
    gen = sorted(out["samples"][LM_GEN], key=lambda s: s["doc_id"])
    return {
        "acc": out["results"][LM_MC]["acc,none"],
        "acc_norm": out["results"][LM_MC]["acc_norm,none"],
        "requests": pairs,
        "logprobs": [float(r[0]) for r in responses],
        "is_greedy": [bool(r[1]) for r in responses],
        "tokens": [lm._encode_pair(c, x) for c, x in pairs],
        "gen_contexts": [s["arguments"][0][0] for s in gen],
        "gen_outputs": [s["filtered_resps"][0] for s in gen],
        "versions": {p: version(p) for p in ("lm_eval", "transformers", "torch", "tokenizers", "datasets")},
    }


def _timed(score, pairs: list, spec: Spec) -> dict:
    """Warm up on two batches, then time one `score(all pairs)`."""
    score(pairs[: 2 * spec.batch_size])
    t0 = time.perf_counter()
    score(pairs)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "requests": len(pairs), "items": len(pairs) / N_CHOICES}


def kiban_time(spec: Spec) -> dict:
    torch = _setup_torch(spec)
    from kiban.evaluate.api import LoglikelihoodRequest
    from kiban.evaluate.backends import load_backend

    pairs = json.loads((WORK / "kiban-check.json").read_text())["requests"]
    t0 = time.perf_counter()
    backend = load_backend(str(MODEL), batch_size=spec.batch_size)
    load_s = time.perf_counter() - t0

    def score(ps):
        return backend.loglikelihood([LoglikelihoodRequest(c, x) for c, x in ps])

    return {**_timed(score, pairs, spec), "load_s": load_s, "threads": torch.get_num_threads()}


def lmeval_time(spec: Spec) -> dict:
    torch = _setup_torch(spec)
    _lmeval_env()
    from lm_eval.api.instance import Instance

    pairs = json.loads((WORK / "lmeval-check.json").read_text())["requests"]
    t0 = time.perf_counter()
    lm = _hflm(spec)
    load_s = time.perf_counter() - t0

    def score(ps):
        reqs = [Instance("loglikelihood", {}, (c, x), i) for i, (c, x) in enumerate(ps)]
        return lm.loglikelihood(reqs, disable_tqdm=True)

    return {**_timed(score, pairs, spec), "load_s": load_s, "threads": torch.get_num_threads()}


WORKERS = {
    "build": build,
    "kiban-check": kiban_check,
    "lmeval-check": lmeval_check,
    "kiban": kiban_time,
    "lmeval": lmeval_time,
}


# --- the driver ----------------------------------------------------------------------------------


def run_worker(python: Path, role: str, spec: Spec, out: Path) -> dict:
    """Run one worker role in a fresh process with `spec.threads` threads; return its JSON result."""
    threads = str(spec.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    env.pop("PYTHONPATH", None)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", role, "--spec", json.dumps(asdict(spec))]
    cmd += ["--result", str(out)]
    log = out.with_suffix(".log")
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{role} failed (exit {proc.returncode}); see {log}")
    return json.loads(out.read_text())


def compare(kb: dict, lm: dict) -> dict:
    """Request by request: prompts, token ids, log-likelihoods, is_greedy; then scores and generations."""
    first_prompt_diff = None
    for (kc, kx), (lc, lx) in zip(kb["requests"], lm["requests"], strict=False):
        if (kc, kx) != (lc, lx):
            first_prompt_diff = {"kiban": [kc, kx], "lm_eval": [lc, lx]}
            break
    lm_by_pair = {tuple(p): i for i, p in enumerate(lm["requests"])}
    matched = [(i, lm_by_pair[tuple(p)]) for i, p in enumerate(kb["requests"]) if tuple(p) in lm_by_pair]
    diffs = [abs(kb["logprobs"][i] - lm["logprobs"][j]) for i, j in matched]
    worst = max(range(len(matched)), key=lambda n: diffs[n]) if matched else None
    token_diffs = [i for i, j in matched if [list(t) for t in kb["tokens"][i]] != lm["tokens"][j]]
    gen_pairs = list(zip(kb["gen_outputs"], lm["gen_outputs"], strict=False))
    return {
        "requests": {
            "kiban": len(kb["requests"]),
            "lm_eval": len(lm["requests"]),
            "same_strings": len(matched),
        },
        "prompts_identical": kb["requests"] == [list(p) for p in lm["requests"]],
        "first_prompt_diff": first_prompt_diff,
        "token_ids_differ": len(token_diffs),
        "first_token_diff": (
            {
                "request": kb["requests"][token_diffs[0]],
                "kiban": kb["tokens"][token_diffs[0]],
                "lm_eval": lm["tokens"][lm_by_pair[tuple(kb["requests"][token_diffs[0]])]],
            }
            if token_diffs
            else None
        ),
        "max_abs_logprob_diff": max(diffs) if diffs else None,
        "mean_abs_logprob_diff": statistics.fmean(diffs) if diffs else None,
        "worst_request": kb["requests"][matched[worst][0]] if worst is not None else None,
        "is_greedy_differ": sum(kb["is_greedy"][i] != lm["is_greedy"][j] for i, j in matched),
        "acc": {"kiban": kb["acc"], "lm_eval": lm["acc"], "diff_points": 100 * abs(kb["acc"] - lm["acc"])},
        "acc_norm": {
            "kiban": kb["acc_norm"],
            "lm_eval": lm["acc_norm"],
            "diff_points": 100 * abs(kb["acc_norm"] - lm["acc_norm"]),
        },
        "gen_prompts_identical": kb["gen_contexts"] == lm["gen_contexts"],
        "gen_identical": sum(a == b for a, b in gen_pairs),
        "gen_total": len(gen_pairs),
        "gen_first_diff": next(
            ({"doc": n, "kiban": a, "lm_eval": b} for n, (a, b) in enumerate(gen_pairs) if a != b), None
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--repeats", type=int, default=3, help="timed runs per tool (fresh processes, alternating)"
    )
    ap.add_argument("--items", type=int, default=Spec.items, help="JCommonsenseQA-format cloze questions")
    ap.add_argument("--gen-items", type=int, default=Spec.gen_items, help="greedy generation prompts")
    ap.add_argument("--batch-size", type=int, default=Spec.batch_size)
    ap.add_argument("--threads", type=int, default=Spec.threads, help="torch threads per process")
    ap.add_argument("--seed", type=int, default=Spec.seed)
    ap.add_argument("--quick", action="store_true", help="40 questions, 8 prompts, one timed run per tool")
    ap.add_argument("--skip-install", action="store_true", help="reuse benchmarks/.venv-lmeval as it is")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to OUT")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:  # inside a worker process: the only path that imports torch
        result = WORKERS[args.worker](Spec(**json.loads(args.spec)))
        Path(args.result).write_text(json.dumps(result, ensure_ascii=False))
        return

    if args.quick:
        args.items, args.gen_items, args.repeats = min(args.items, 40), min(args.gen_items, 8), 1
    spec = Spec(
        items=args.items,
        gen_items=args.gen_items,
        batch_size=args.batch_size,
        threads=args.threads,
        seed=args.seed,
    )
    pythons = {"kiban": Path(sys.executable), "lmeval": ensure_lmeval_venv(skip_install=args.skip_install)}
    WORK.mkdir(parents=True, exist_ok=True)

    stats = run_worker(pythons["kiban"], "build", spec, WORK / "build.json")
    print(
        f"model: {spec.n_layers} layers × {spec.dim}, heads {spec.n_heads}/{spec.n_kv_heads} kv, ffn "
        f"{spec.ffn_hidden}, vocabulary {stats['vocab_size']:,} (untied), {stats['n_params']:,} parameters, fp32; "
        f"{spec.items} cloze questions (median {stats['question_chars_median']:.0f} characters), "
        f"{spec.gen_items} generation prompts; batch {spec.batch_size}, {spec.threads} thread(s)"
    )
    kb = run_worker(pythons["kiban"], "kiban-check", spec, WORK / "kiban-check.json")
    lm = run_worker(pythons["lmeval"], "lmeval-check", spec, WORK / "lmeval-check.json")
    agreement = compare(kb, lm)
    a = agreement
    print(f"versions: lm-eval {lm['versions']}; kiban backend {kb['backend']}")
    print(
        f"prompts identical: {a['prompts_identical']} ({a['requests']['same_strings']}/{a['requests']['kiban']} "
        f"requests), generation prompts identical: {a['gen_prompts_identical']}"
    )
    if a["first_prompt_diff"]:
        print(f"  first prompt difference: {a['first_prompt_diff']}")
    print(f"token ids differ: {a['token_ids_differ']} requests")
    if a["first_token_diff"]:
        print(f"  first: {a['first_token_diff']}")
    ok_lp = a["max_abs_logprob_diff"] is not None and a["max_abs_logprob_diff"] <= TARGET_MAX_LOGPROB_DIFF
    print(
        f"log-likelihood |kiban - lm-eval|: max {a['max_abs_logprob_diff']:.2e}, mean "
        f"{a['mean_abs_logprob_diff']:.2e} ({'meets' if ok_lp else 'misses'} ≤ {TARGET_MAX_LOGPROB_DIFF:g}); "
        f"is_greedy differs on {a['is_greedy_differ']}"
    )
    for metric in ("acc", "acc_norm"):
        m = a[metric]
        verdict = "meets" if m["diff_points"] <= TARGET_ACC_POINTS else "misses"
        print(
            f"{metric}: kiban {100 * m['kiban']:.2f}, lm-eval {100 * m['lm_eval']:.2f} "
            f"(|diff| {m['diff_points']:.2f} points, {verdict} ≤ {TARGET_ACC_POINTS})"
        )
    print(f"greedy outputs identical: {a['gen_identical']}/{a['gen_total']}")
    if a["gen_first_diff"]:
        print(f"  first difference: {a['gen_first_diff']}")

    runs: dict[str, list[dict]] = {tool: [] for tool in TOOLS}
    for r in range(args.repeats):
        for tool in TOOLS if r % 2 == 0 else TOOLS[::-1]:
            res = run_worker(pythons[tool], tool, spec, WORK / f"run-{r}-{tool}.json")
            runs[tool].append(res)
            print(
                f"repeat {r + 1}/{args.repeats} {tool:6s} {res['items'] / res['seconds']:7.2f} items/s "
                f"({res['requests'] / res['seconds']:7.2f} requests/s, {res['seconds']:.2f} s; load {res['load_s']:.1f} s)"
            )
    median = {t: statistics.median(r["items"] / r["seconds"] for r in runs[t]) for t in TOOLS}
    ratio = median["kiban"] / median["lmeval"]
    print(f"\n{'tool':8s} {'median items/s':>15s}")
    for tool in TOOLS:
        print(f"{tool:8s} {median[tool]:15.2f}")
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"kiban / lm-eval hf = {ratio:.3f}× ({verdict} the ≥ {TARGET_RATIO}× target)")
    if args.json:
        summary = {
            "spec": asdict(spec),
            "build": stats,
            "versions": {"lm_eval_venv": lm["versions"], "kiban_backend": kb["backend"]},
            "agreement": agreement,
            "targets": {
                "max_abs_logprob_diff": TARGET_MAX_LOGPROB_DIFF,
                "acc_points": TARGET_ACC_POINTS,
                "ratio": TARGET_RATIO,
            },
            "items_per_s": {t: [r["items"] / r["seconds"] for r in runs[t]] for t in TOOLS},
            "median_items_per_s": median,
            "ratio": ratio,
        }
        args.json.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
