"""kiban's GGUF export against kiban itself: token ids, greedy text, KL, and decode speed in llama.cpp.

    .venv/bin/python benchmarks/export_parity.py --model out/demo/model --threads 1

One run, on a trained kiban checkpoint (default: the demo's, `scripts/demo.sh`):

1. exports f16, q8_0 and q4_k_m GGUF files (`kiban.export.export_gguf`), timing each;
2. tokenization parity: every non-empty line of `--pages` Japanese man pages (manpages-ja, the
   pages after the first 300, which the demo tokenizer trained on least), the GPL-3 text and a few
   emoji / full-width / whitespace lines, encoded by the kiban tokenizer and by llama.cpp's own
   tokenizer from the f16 file (`Llama.tokenize(..., special=True)`): lines that differ;
3. greedy parity: 64 greedy tokens of kiban (fp32, `kiban.model.generate`) and of llama.cpp (f16)
   for 4 Japanese and English prompts: identical continuations;
4. KL(kiban fp32 ‖ llama.cpp) of the next-token distribution at every position of `--kl-tokens`
   tokens of held-out Japanese text, for each file (mean and max over positions, in nats), and how
   often the argmax agrees;
5. decode speed at batch 1, `--threads` threads, through the same engine contract the server uses:
   kiban's NativeEngine (PyTorch fp32) and LlamaCppEngine on each file (median of 3 runs of
   `--decode-tokens` greedy tokens), and the bare llama.cpp eval loop; with the `kiban plan --serve`
   bandwidth estimate next to each file's measurement.

`--also-preset s` repeats step 5 for a random-weight model of that preset (a model larger than the
CPU's L3 cache, where the bandwidth estimate applies). Files go under benchmarks/.work/export/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from kiban.export.gguf import export_gguf
from kiban.export.quantize import silence_llama_cpp
from kiban.model.generate import generate
from kiban.model.hf import load_hf
from kiban.serve.engine.base import GenerationRequest, SamplingParams
from kiban.serve.engine.llamacpp import LlamaCppEngine
from kiban.serve.engine.native import NativeEngine
from kiban.serve.plan import measure_decode, serve_plan, shape_from_gguf

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "export"
QUANTS = ("f16", "q8_0", "q4_k_m")
PROMPTS = [
    "日本語の文書を読む。",
    "このコマンドは、ファイルを",
    "This program is free software",
    "オプション",
]


def _texts(n_pages: int) -> tuple[list[str], str]:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import GPL3, ja_texts, require_manpages_ja

    pages = require_manpages_ja()
    ja = ja_texts(pages[300:], n_pages)
    lines = [line for t in ja for line in t.splitlines() if line.strip()]
    lines += [line for line in GPL3.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines += ["絵文字😀👍🏽と日本語", "  二つの  空白\tタブ ", "ｶﾀｶﾅ　全角", "x<s>y</s>", "改行\n\n二つ"]
    held_out = ja_texts(pages[-40:], 1)[0]
    return lines, held_out


def _llm(path: Path, threads: int, n_ctx: int = 1024, logits_all: bool = False):  # noqa: ANN202
    import llama_cpp

    return llama_cpp.Llama(
        str(path),
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=logits_all,
        verbose=False,
    )


def tokenization(tok: Tokenizer, path: Path, lines: list[str]) -> dict:
    llm = _llm(path, 1)
    differ = [
        line
        for line in lines
        if tok.encode(line).ids != llm.tokenize(line.encode(), add_bos=True, special=True)
    ]
    ids = sum(len(tok.encode(line).ids) for line in lines)
    return {"lines": len(lines), "chars": sum(map(len, lines)), "tokens": ids, "differ": len(differ)}


def greedy(model: torch.nn.Module, tok: Tokenizer, path: Path, n: int = 64) -> dict:
    llm = _llm(path, 1, logits_all=True)
    same = 0
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        want = generate(model, ids, n, temperature=0)
        llm.reset()
        llm.eval(ids)
        got = []
        for _ in range(n):
            got.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval([got[-1]])
        same += got == want
    return {"prompts": len(PROMPTS), "identical": same, "tokens_each": n}


def kl(model: torch.nn.Module, tok: Tokenizer, path: Path, text: str, n: int) -> dict:
    ids = tok.encode(text).ids[:n]
    with torch.no_grad():
        ref = torch.log_softmax(model(torch.tensor([ids]))[0].double(), -1)  # (T, V)
    llm = _llm(path, 1, logits_all=True)
    llm.eval(ids)
    got = torch.log_softmax(torch.from_numpy(np.array(llm.scores[: len(ids)])).double(), -1)
    per = (ref.exp() * (ref - got)).sum(-1)  # (T,)
    return {
        "positions": len(ids),
        "kl_mean": float(per.mean()),
        "kl_max": float(per.max()),
        "argmax_agree": float((ref.argmax(-1) == got.argmax(-1)).double().mean()),
    }


def engine_tokens_s(engine, prompt: list[int], n: int) -> float:  # noqa: ANN001
    async def once() -> float:
        req = GenerationRequest("b", prompt, SamplingParams(max_tokens=n, temperature=0, stop_token_ids=[]))
        t0 = None
        count = 0
        async for d in engine.generate(req):
            if t0 is None and d.token_ids:
                t0 = time.perf_counter()  # decode only: from the first token on
                continue
            count += len(d.token_ids)
        count += 0
        return count / (time.perf_counter() - t0)

    rates = [asyncio.run(once()) for _ in range(3)]
    asyncio.run(engine.shutdown())
    return statistics.median(rates)


def speed(model_dir: Path, files: dict[str, Path], threads: int, n: int) -> dict:
    torch.set_num_threads(threads)
    native = NativeEngine.from_dir(model_dir, max_batch=1, threads=threads)
    prompt = native.encode(PROMPTS[0], add_bos=True)
    out = {"native_fp32": engine_tokens_s(native, prompt, n)}
    for q, path in files.items():
        cfg, quant = shape_from_gguf(path)
        est = serve_plan(cfg, quant=quant, device="cpu", context=len(prompt) + n)
        out[f"llamacpp_{q}"] = engine_tokens_s(LlamaCppEngine.from_file(path, threads=threads), prompt, n)
        out[f"llamacpp_{q}_bare"] = measure_decode(path, threads=threads, tokens=n)["decode_tokens_s"]
        out[f"plan_{q}_estimate"] = est.decode_tokens_s
        out[f"plan_{q}_weights_bytes"] = est.weights_bytes
        out[f"{q}_file_bytes"] = path.stat().st_size
    return out


def random_preset(name: str, out: Path) -> Path:
    import shutil

    from kiban.model.config import preset
    from kiban.model.hf import save_hf
    from kiban.model.llama import Llama

    out.mkdir(parents=True, exist_ok=True)
    demo_tok = ROOT / "out" / "demo" / "model"
    torch.manual_seed(0)
    save_hf(Llama(preset(name)), out, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(demo_tok / f, out / f)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "out" / "demo" / "model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pages", type=int, default=60)
    ap.add_argument("--kl-tokens", type=int, default=400)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--also-preset", default=None, help="a preset (e.g. s) to time with random weights too")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    silence_llama_cpp()
    WORK.mkdir(parents=True, exist_ok=True)

    files, export_s = {}, {}
    for q in QUANTS:
        t0 = time.perf_counter()
        files[q] = export_gguf(args.model, WORK / f"{args.model.name}-{q}.gguf", quant=q)
        export_s[q] = time.perf_counter() - t0
    tok = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    model = load_hf(args.model)
    lines, held_out = _texts(args.pages)
    result = {
        "model": str(args.model),
        "params": sum(p.numel() for p in model.parameters()),
        "export_s": export_s,
        "tokenization": tokenization(tok, files["f16"], lines),
        "greedy_f16": greedy(model, tok, files["f16"]),
        "kl": {q: kl(model, tok, p, held_out, args.kl_tokens) for q, p in files.items()},
        "speed": speed(args.model, files, args.threads, args.decode_tokens),
    }
    if args.also_preset:
        d = random_preset(args.also_preset, WORK / f"random-{args.also_preset}")
        pfiles = {q: export_gguf(d, WORK / f"random-{args.also_preset}-{q}.gguf", quant=q) for q in QUANTS}
        result[f"speed_random_{args.also_preset}"] = speed(d, pfiles, args.threads, args.decode_tokens)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    t = result["tokenization"]
    print(f"model {result['model']} ({result['params']:,} parameters)")
    print("export s: " + ", ".join(f"{q} {s:.1f}" for q, s in export_s.items()))
    print(
        f"tokenization: {t['differ']} of {t['lines']:,} lines differ ({t['chars']:,} chars, {t['tokens']:,} tokens)"
    )
    g = result["greedy_f16"]
    print(f"greedy f16: {g['identical']} of {g['prompts']} prompts identical over {g['tokens_each']} tokens")
    for q, k in result["kl"].items():
        print(
            f"KL {q:7s} mean {k['kl_mean']:.2e}  max {k['kl_max']:.2e}  argmax agree {k['argmax_agree']:.4f}"
            f"  ({k['positions']} positions)"
        )
    for key in [k for k in result if k.startswith("speed")]:
        s = result[key]
        print(f"{key} ({args.threads} thread(s), {args.decode_tokens} tokens, tokens/s):")
        print(f"  kiban native fp32        {s['native_fp32']:8.1f}")
        for q in QUANTS:
            print(
                f"  llama.cpp {q:7s} engine {s[f'llamacpp_{q}']:8.1f}  bare {s[f'llamacpp_{q}_bare']:8.1f}"
                f"  plan estimate {s[f'plan_{q}_estimate']:8.1f}"
                f"  ×{s[f'llamacpp_{q}'] / s['native_fp32']:.2f} vs native"
                f"  file {s[f'{q}_file_bytes'] / 2**20:.1f} MiB (plan weights {s[f'plan_{q}_weights_bytes'] / 2**20:.1f})"
            )


if __name__ == "__main__":
    main()
