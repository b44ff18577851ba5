"""kiban serve under load: latency and tokens/s at 1, 4 and 16 streams, the gateway's added latency,
and tokens/s against Hugging Face transformers' `generate` on the same checkpoint.

    .venv/bin/python benchmarks/serve_load.py --repeats 3  # ~7 minutes on 2 cores
    .venv/bin/python benchmarks/serve_load.py --quick      # ~1 minute: fewer and shorter requests

The script builds its own model (no downloads): a Llama of 8 layers × 512 (8 heads, 4 key/value
heads, SwiGLU 1408, vocabulary 8,192, untied output; 32.0 M parameters) with seeded random weights
and a byte-fallback BPE tokenizer whose merges are every pair of a fixed alphabet, in Hugging Face
layout (`benchmarks/.work/serve/model/`), reused while its shape matches. The output rows of the
specials and byte tokens are zeroed, so greedy decoding never picks them (every other logit of a
random model has a positive maximum): every request generates exactly `max_tokens` visible tokens
in both tools, and every token is one SSE event.

1. Load. `kiban serve MODEL` (a subprocess on a free loopback port, `engine.threads=--threads`,
   `engine.max_batch=16`), driven by one asyncio `httpx` client with streaming `/v1/completions`
   requests (16 fixed Japanese and English prompts, `max_tokens`, temperature 0,
   `stream_options.include_usage`). At each concurrency c (1, 4, 16), c workers take the same
   `--rounds` × 16 requests from one queue, each sending its next as soon as the last ended:
   - TTFT: request sent → first SSE event with text;
   - ITL: time between consecutive text events of one stream (all gaps of all streams pooled);
   - TPOT: (last text event − first text event) / (completion tokens − 1), per request;
   - tokens/s: completion tokens of all requests (the server's `usage`) / wall-clock seconds
     from the first request sent to the last stream ended.
2. Gateway. A second `kiban serve --upstream http://127.0.0.1:<first>/v1` in front of the first
   (its own key, state and audit log; the upstream key in `KIBAN_UPSTREAM_API_KEY`), and for
   reference a bare FastAPI + uvicorn + aiohttp pass-through (`bare_proxy` below: no keys, audit or
   validation), the floor of one Python HTTP hop. The same request goes directly and through each,
   one at a time, the order rotating: non-streaming `max_tokens=1` (latency = until the whole body
   is read), and streaming `max_tokens=4` (TTFT). The added latency is the difference of the
   percentiles; the median of the paired differences is printed too. Then the same three paths
   again in front of a canned upstream (this script with `--canned-upstream`: fixed answers at
   once, no model), which isolates the gateway's own cost from the engine competing with it for
   this machine's two cores.
3. Peers, with the servers stopped, in a fresh process with the same torch threads: transformers'
   `LlamaForCausalLM.from_pretrained` on the same directory (HF_HUB_OFFLINE=1), the same prompt ids
   (the same tokenizer.json, BOS added) and `max_new_tokens`, greedy:
   - sequential: one `generate` per prompt, one after another (a plain HF server with 16 users);
   - batched: one `generate` over the 16 prompts, left-padded with an attention mask;
   and, for reference, kiban's `NativeEngine` in that process on the 16 prompts at once (no HTTP):
   the difference to `kiban serve` at 16 streams is what the server around the engine costs.
   tokens/s = generated tokens / seconds of the `generate` calls (after one warm-up call). The
   ratios printed are kiban serve's tokens/s at concurrency 16 over each peer's. kiban's figure
   includes everything a client sees (HTTP, SSE, auth, the fsync'd audit record, and this client's
   own CPU on the same cores).

`--repeats N` runs kiban (levels; the gateway only in the first repeat) and the peers N times each,
alternating which goes first; tokens/s is the median over repeats, latency percentiles pool the
streams of all repeats. Every part prints how many cores other processes used meanwhile (from
/proc/stat minus this script's own CPU): on a shared machine a busy neighbour slows a 2-thread
`generate` at batch 1 far more than a batched step (its OpenMP threads wait on each other), so
compare runs with little other load; `--wait-idle 0.15` waits for a quiet moment before each part.

Greedy outputs of kiban at concurrency 1 and of the sequential peer are compared as text; on a
random-weight model near-ties may differ by float rounding, so the count is a sanity check.

Everything written goes under `benchmarks/.work/serve/` (git-ignored): `model/`, `load-state/` and
`gateway-state/` (keys, audit logs, `server.log` of the last run), `bare-proxy/` (its log),
`peers-N.json` and `.log`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "serve"
KIBAN = [sys.executable, "-m", "kiban.cli"]
TARGET_RATIO = 2.0  # kiban at 16 streams vs the sequential HF loop
TARGET_GATEWAY_MS = 2.0  # added p95 latency of the gateway
DIRECT, GATEWAY, BARE = "direct", "kiban serve --upstream", "bare FastAPI+aiohttp proxy"

PROMPTS = [
    "日本の首都は東京です。東京には多くの人が住んでいます。",
    "The quick brown fox jumps over the lazy dog, and then",
    "きょうはとてもいいてんきですね。あしたはどうなるでしょうか。",
    "Write a short story about a robot who learns to cook rice:",
    "しずかなよるに、ねこがまどのそとをみていました。",
    "In 1868, the Meiji Restoration began a period of rapid change in Japan, when",
    "にほんごのぶんしょうをよむのはたのしいです。まいにちすこしずつよみます。",
    "Explain, step by step, how a key-value cache speeds up decoding in a transformer.",
    "やまのうえからみるけしきはとてもきれいでした。",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "あさごはんにごはんとみそしるをたべました。それから",
    "List three reasons why continuous batching improves throughput:",
    "でんしゃはえきにとまりました。たくさんのひとがおりて、",
    "The audit log records every request with its key, route, status and latency, so that",
    "はるになると、さくらのはながさきます。ひとびとは",
    "A good benchmark states its workload, its peer, its hardware and its variance; this one",
]


@dataclass(frozen=True)
class Shape:
    """The benchmark model (kiban ModelConfig fields)."""

    vocab_size: int = 8192
    dim: int = 512
    n_layers: int = 8
    n_heads: int = 8
    n_kv_heads: int = 4
    ffn_hidden: int = 1408
    max_seq_len: int = 512
    tie_embeddings: bool = False
    seed: int = 0


# --- the model -----------------------------------------------------------------------------------

# What the tokenizer learns: "▁", ASCII, hiragana, some katakana and kanji; then every pair of them
# as a merge (in this order) until the vocabulary is full. Digits stay alone, as kiban's trainer keeps them.
_ALPHABET = (
    ["▁"]
    + list("etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ")
    + list("、。.,:;!?'\"()-")
    + [chr(c) for c in range(ord("ぁ"), ord("ゖ") + 1)]
    + list("アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンー")
    + list("日本語東京人年大中小山川学生先月火水木金土時間国会社前後上下")
    + list("0123456789")
)


def build_tokenizer(vocab_size: int):
    from kiban.tokenizer import llama_style as ls

    chars = list(dict.fromkeys(_ALPHABET))
    room = vocab_size - ls.RESERVED - len(chars)
    if room < 0:
        raise SystemExit(f"--vocab {vocab_size} is too small for the {len(chars)}-character alphabet")
    letters = [c for c in chars if not ls.is_digit(c)]
    pairs = [(a, b) for a, b in itertools.product(letters, letters) if b != "▁"][:room]
    if len(pairs) < room:
        raise SystemExit(f"--vocab {vocab_size} is larger than this alphabet's pairs can fill")
    return ls.build_tokenizer(chars + [a + b for a, b in pairs], pairs)


def build_model(directory: Path, shape: Shape) -> Path:
    """A Hugging Face-layout checkpoint of `shape` with seeded random weights (reused if it exists)."""
    marker = directory / "bench-shape.json"
    if marker.is_file() and json.loads(marker.read_text()) == asdict(shape):
        return directory
    import torch

    from kiban.model.config import ModelConfig
    from kiban.model.hf import save_hf
    from kiban.model.llama import Llama
    from kiban.tokenizer import llama_style as ls

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    tok = build_tokenizer(shape.vocab_size)
    assert tok.get_vocab_size(with_added_tokens=True) == shape.vocab_size
    ls.save_hf(tok, directory, chat_template=ls.DEFAULT_CHAT_TEMPLATE, model_max_length=shape.max_seq_len)
    fields = {k: v for k, v in asdict(shape).items() if k != "seed"}
    torch.manual_seed(shape.seed)
    model = Llama(ModelConfig(**fields))
    with torch.no_grad():  # specials and bytes never win greedy decoding (see the module docstring)
        model.lm_head.weight[: ls.RESERVED].zero_()
    save_hf(model, directory, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    marker.write_text(json.dumps(asdict(shape)))
    return directory


def n_params(shape: Shape) -> int:
    from kiban.model.config import ModelConfig

    return ModelConfig(**{k: v for k, v in asdict(shape).items() if k != "seed"}).n_params()["total"]


# --- a kiban serve process -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_key(
    state: Path, scopes: str = "chat,completions,models,tokenize,admin", name: str = "bench"
) -> str:
    out = subprocess.run(
        [*KIBAN, "keys", "create", "--name", name, "--scopes", scopes, "--state", str(state)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


class Server:
    """`kiban serve ARGS --port P --state STATE` in a subprocess on loopback; its log in STATE/server.log.

    `program` replaces `kiban serve` (the bare proxy of the gateway measurement is this script)."""

    def __init__(
        self,
        args: list[str],
        state: Path,
        *,
        env: dict[str, str] | None = None,
        program: list[str] | None = None,
    ) -> None:
        self.state, self.port = state, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        state.mkdir(parents=True, exist_ok=True)
        self.log_path = state / "server.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*(program or [*KIBAN, "serve"]), *args, "--port", str(self.port), "--state", str(state)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )

    def wait_ready(self, timeout_s: float = 180) -> Server:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"kiban serve exited {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"kiban serve not ready after {timeout_s} s; see {self.log_path}")

    def stop(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# --- measuring -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class StreamResult:
    prompt_index: int
    sent_s: float
    ttft_s: float
    e2e_s: float
    completion_tokens: int
    text: str
    itl_s: list[float] = field(default_factory=list)

    @property
    def tpot_s(self) -> float | None:
        if self.completion_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.completion_tokens - 1)


async def stream_completion(
    client: httpx.AsyncClient, base: str, body: dict, *, prompt_index: int = 0
) -> StreamResult:
    """One streaming /v1/completions request, timed per SSE event."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    times: list[float] = []
    pieces: list[str] = []
    tokens = 0
    async with client.stream("POST", f"{base}/v1/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(f"error in stream: {event['error']}")
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                if choice.get("text"):
                    times.append(time.perf_counter())
                    pieces.append(choice["text"])
    if not times:
        raise RuntimeError("the stream had no text")
    return StreamResult(
        prompt_index=prompt_index,
        sent_s=t0,
        ttft_s=times[0] - t0,
        e2e_s=times[-1] - t0,
        completion_tokens=tokens,
        text="".join(pieces),
        itl_s=[b - a for a, b in zip(times, times[1:], strict=False)],
    )


def _client(key: str, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(600.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,
    )


async def run_level(
    base: str, key: str, model: str, concurrency: int, rounds: int, max_tokens: int
) -> tuple[list[StreamResult], float]:
    """`concurrency` closed-loop workers over `rounds` × the prompts: every stream and the wall time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(rounds * len(PROMPTS)):
        queue.put_nowait(i % len(PROMPTS))
    results: list[StreamResult] = []

    async with _client(key, concurrency) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"model": model, "prompt": PROMPTS[i], "max_tokens": max_tokens, "temperature": 0}
                results.append(await stream_completion(client, base, body, prompt_index=i))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall_s = time.perf_counter() - t0
    return results, wall_s


def summarize_level(concurrency: int, runs: list[tuple[list[StreamResult], float]]) -> dict:
    """tokens/s: the median over repeats; latency percentiles: over the streams of all repeats."""
    streams = [r for results, _ in runs for r in results]
    per_run = [sum(r.completion_tokens for r in results) / wall_s for results, wall_s in runs]
    ttft = [r.ttft_s * 1e3 for r in streams]
    tpot = [r.tpot_s * 1e3 for r in streams if r.tpot_s is not None]
    itl = [x * 1e3 for r in streams for x in r.itl_s]
    return {
        "concurrency": concurrency,
        "requests": len(streams),
        "completion_tokens": sum(r.completion_tokens for r in streams),
        "tokens_per_s": statistics.median(per_run),
        "tokens_per_s_runs": per_run,
        **{
            name: {"p50": percentile(values, 50), "p95": percentile(values, 95)}
            for name, values in (("ttft_ms", ttft), ("tpot_ms", tpot), ("itl_ms", itl))
        },
    }


async def measure_gateway(paths: dict[str, tuple[str, str]], model: str, n: int, warmup: int = 10) -> dict:
    """Latency of the same request on each path (name → (base URL, key)), one request at a time, the
    order of the paths rotating; the first path is the direct one that the others are compared with."""
    names = list(paths)
    clients = {name: _client(key, 2) for name, (_, key) in paths.items()}
    body = {"model": model, "prompt": PROMPTS[0], "temperature": 0}
    samples = {kind: {name: [] for name in names} for kind in ("non-streaming", "streaming TTFT")}

    async def once(name: str, kind: str) -> float:
        base = paths[name][0]
        if kind == "streaming TTFT":
            return (await stream_completion(clients[name], base, {**body, "max_tokens": 4})).ttft_s
        t0 = time.perf_counter()
        r = await clients[name].post(f"{base}/v1/completions", json={**body, "max_tokens": 1})
        r.raise_for_status()
        return time.perf_counter() - t0

    try:
        for kind, by_path in samples.items():
            for i in range(warmup + n):
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    dt = await once(name, kind)
                    if i >= warmup:
                        by_path[name].append(dt * 1e3)
    finally:
        for c in clients.values():
            await c.aclose()
    out: dict = {}
    direct = names[0]
    for kind, by_path in samples.items():
        row: dict = {
            name: {"p50": percentile(v, 50), "p95": percentile(v, 95)} for name, v in by_path.items()
        }
        row["added_ms"] = {
            name: {
                "p50": row[name]["p50"] - row[direct]["p50"],
                "p95": row[name]["p95"] - row[direct]["p95"],
                "paired_median": percentile(
                    [g - d for g, d in zip(by_path[name], by_path[direct], strict=True)], 50
                ),
            }
            for name in names[1:]
        }
        out[kind] = row
    return out


def bare_proxy(port: int, upstream: str, key: str) -> None:
    """The reference hop: FastAPI + uvicorn + aiohttp (the client kiban's gateway uses) passing
    /v1/completions through, nothing else (no keys, no audit, no validation). What it adds is the
    floor for any gateway on this stack."""
    import aiohttp
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import Response, StreamingResponse

    app = FastAPI()
    sessions: list[aiohttp.ClientSession] = []  # made inside the server's loop, on first use

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    async def completions(request: Request) -> Response:
        if not sessions:
            sessions.append(aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}))
        headers = {"Content-Type": "application/json"}
        r = await sessions[0].post(f"{upstream}/completions", data=await request.body(), headers=headers)
        if r.headers.get("content-type", "").startswith("text/event-stream"):

            async def relay():
                async for chunk in r.content.iter_any():
                    yield chunk
                r.release()

            return StreamingResponse(relay(), media_type="text/event-stream")
        data = await r.read()
        r.release()
        return Response(data, status_code=r.status, media_type="application/json")

    # registered by hand: with `from __future__ import annotations` FastAPI would see the string
    # "Request" of a function-local import, fail to resolve it, and take `request` for a query field
    completions.__annotations__.update(request=Request, **{"return": Response})
    app.post("/v1/completions")(completions)

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


# --- the peers, in a fresh process with nothing else running ------------------------------------


def peers_worker(spec: dict) -> dict:
    """transformers' generate, sequential and batched, and (for reference) kiban's engine without HTTP."""
    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

    torch.set_num_threads(spec["threads"])
    model_dir = Path(spec["model_dir"])
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    prompt_ids = [tok.encode(p).ids for p in PROMPTS]  # BOS added, as kiban's engine encodes
    max_new, pad, eos = spec["max_tokens"], 3, 2
    greedy = dict(do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad)

    def generate(batch: list[list[int]]) -> list[list[int]]:
        width = max(len(ids) for ids in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch])  # (B, T), left padding
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new, **greedy)
        rows = out[:, width:].tolist()  # (B, new)
        return [row[: row.index(eos) + 1] if eos in row else row for row in rows]

    generate([prompt_ids[0]])  # warm-up (first-call allocations), outside the time
    t0 = time.perf_counter()
    sequential = [generate([ids])[0] for ids in prompt_ids]
    seq_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = generate(prompt_ids)
    batch_s = time.perf_counter() - t0
    engine_tokens, engine_s = asyncio.run(_engine_in_process(model_dir, prompt_ids, max_new))

    def figures(tokens: int, seconds: float) -> dict:
        return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}

    return {
        "sequential": figures(sum(len(r) for r in sequential), seq_s),
        "batched": figures(sum(len(r) for r in batched), batch_s),
        "engine": figures(engine_tokens, engine_s),
        "texts": [tok.decode(r, skip_special_tokens=True) for r in sequential],
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
    }


async def _engine_in_process(model_dir: Path, prompt_ids: list[list[int]], max_new: int) -> tuple[int, float]:
    """kiban's NativeEngine on the 16 prompts at once, no HTTP: what the server adds is the rest."""
    from kiban.serve.engine.base import GenerationRequest, SamplingParams
    from kiban.serve.engine.native import NativeEngine

    engine = NativeEngine.from_dir(model_dir, max_batch=len(prompt_ids))

    async def one(i: int, ids: list[int], n: int) -> int:
        params = SamplingParams(max_tokens=n, temperature=0, stop_token_ids=list(engine.eos_token_ids))
        tokens = 0
        async for delta in engine.generate(GenerationRequest(f"bench-{i}", ids, params)):
            tokens += len(delta.token_ids)
        return tokens

    try:
        await one(0, prompt_ids[0], 4)  # warm-up
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(one(i, ids, max_new) for i, ids in enumerate(prompt_ids)))
        return sum(counts), time.perf_counter() - t0
    finally:
        await engine.shutdown()


def run_peers(model_dir: Path, max_tokens: int, threads: int, out: Path) -> dict:
    spec = {"model_dir": str(model_dir), "max_tokens": max_tokens, "threads": threads}
    env = {**os.environ, **_thread_env(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec), "--result", str(out)]
    log = out.with_suffix(".log")
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"the peer process failed (exit {proc.returncode}); see {log}")
    return json.loads(out.read_text())


def _thread_env(threads: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


# --- kiban serve, one run ------------------------------------------------------------------------


def run_kiban(model_dir: Path, args: argparse.Namespace, levels: list[int], *, gateway: bool) -> dict:
    """Start `kiban serve`, measure each concurrency level (and the gateway), stop it."""
    model = model_dir.name
    load_state, gw_state = WORK / "load-state", WORK / "gateway-state"
    for d in (load_state, gw_state):
        shutil.rmtree(d, ignore_errors=True)
    key = create_key(load_state)
    settings = ["--set", f"engine.threads={args.threads}", "--set", f"engine.max_batch={max(levels)}"]
    server = Server([str(model_dir), *settings], load_state, env=_thread_env(args.threads)).wait_ready()
    front = bare = None
    out: dict = {"levels": {}}
    try:
        warm = {"model": model, "prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0}
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=600) as c:
            for _ in range(3):
                c.post(f"{server.base}/v1/completions", json=warm).raise_for_status()
        for c in levels:
            out["levels"][c] = asyncio.run(
                run_level(server.base, key, model, c, args.rounds, args.max_tokens)
            )
        if gateway:
            gw_key = create_key(gw_state)
            front = Server(["--upstream", f"{server.base}/v1"], gw_state, env={"KIBAN_UPSTREAM_API_KEY": key})
            front.wait_ready()
            program = [sys.executable, str(Path(__file__).resolve()), "--bare-proxy"]
            bare_env = {"BENCH_UPSTREAM": f"{server.base}/v1", "BENCH_UPSTREAM_KEY": key}
            bare = Server([], WORK / "bare-proxy", env=bare_env, program=program).wait_ready()
            paths = {DIRECT: (server.base, key), GATEWAY: (front.base, gw_key), BARE: (bare.base, "unused")}
            out["gateway"] = asyncio.run(measure_gateway(paths, model, args.gateway_requests))
            out["gateway"]["fsync_ms"] = fsync_latency(gw_state)
    finally:
        if bare is not None:
            bare.stop()
        if front is not None:
            front.stop()
        server.stop()
    if gateway:
        out["gateway_alone"] = measure_gateway_alone(model, args.gateway_requests)
    return out


def measure_gateway_alone(model: str, n: int) -> dict:
    """The same three paths in front of a canned upstream (fixed answers, no model): what the gateway
    itself costs, without the engine competing with it for this machine's cores."""
    program = [sys.executable, str(Path(__file__).resolve())]
    canned = Server(["--canned-upstream", model], WORK / "canned", program=program).wait_ready()
    front = bare = None
    try:
        state = WORK / "gateway-alone-state"
        shutil.rmtree(state, ignore_errors=True)
        key = create_key(state)
        front = Server(["--upstream", f"{canned.base}/v1"], state).wait_ready()
        env = {"BENCH_UPSTREAM": f"{canned.base}/v1", "BENCH_UPSTREAM_KEY": "unused"}
        bare = Server([], WORK / "bare-proxy", env=env, program=[*program, "--bare-proxy"]).wait_ready()
        paths = {DIRECT: (canned.base, "unused"), GATEWAY: (front.base, key), BARE: (bare.base, "unused")}
        return asyncio.run(measure_gateway(paths, model, n))
    finally:
        for server in (bare, front, canned):
            if server is not None:
                server.stop()


def canned_upstream(port: int, model: str) -> None:
    """An OpenAI-shaped server that answers every completion at once with the same few tokens."""
    import uvicorn

    usage = {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12}
    answer = json.dumps(
        {
            "id": "cmpl-canned",
            "object": "text_completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "text": " の設定", "finish_reason": "length", "logprobs": None}],
            "usage": usage,
        },
        ensure_ascii=False,
    ).encode()
    chunks = [
        {"id": "cmpl-canned", "object": "text_completion", "model": model, "choices": [c], "usage": None}
        for c in [{"index": 0, "text": t, "finish_reason": None} for t in (" の", "設", "定", "を")]
    ]
    chunks.append(
        {"id": "cmpl-canned", "object": "text_completion", "model": model, "choices": [], "usage": usage}
    )
    stream = b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n" for c in chunks)
    models = json.dumps({"object": "list", "data": [{"id": model, "object": "model"}]}).encode()

    async def app(scope: dict, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return
        raw, more = b"", True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
        streaming = scope["path"].endswith("/completions") and b'"stream":true' in raw.replace(b" ", b"")
        body = {"/health": b'{"status":"ok"}', "/v1/models": models}.get(scope["path"], answer)
        ctype = b"text/event-stream" if streaming else b"application/json"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype)]})
        if streaming:
            await send({"type": "http.response.body", "body": stream, "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        else:
            await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the driver ----------------------------------------------------------------------------------


class OtherLoad:
    """CPU that other processes used while a part ran: all busy CPU time (/proc/stat) minus this
    script's and its finished children's (getrusage). On a shared machine it says how far to trust a run."""

    def __enter__(self) -> OtherLoad:
        self.t0, self.busy0, self.own0 = time.monotonic(), _busy_cpu_s(), _own_cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.monotonic() - self.t0
        busy = _busy_cpu_s()
        self.cores = (
            None if busy is None else max(0.0, busy - self.busy0 - (_own_cpu_s() - self.own0)) / self.wall_s
        )

    def note(self) -> str:
        return (
            "" if self.cores is None else f"  (other processes: {self.cores:.2f} of {os.cpu_count()} cores)"
        )


def wait_idle(max_cores: float, timeout_s: float = 900, window_s: float = 5) -> None:
    """Wait until other processes use under `max_cores` over `window_s` (no child of ours runs now)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with OtherLoad() as other:
            time.sleep(window_s)
        if other.cores is None or other.cores < max_cores:
            return
    print(f"  (the machine stayed busy for {timeout_s:.0f} s; going on)")


def _busy_cpu_s() -> float | None:
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    import resource

    return sum(
        u.ru_utime + u.ru_stime
        for u in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def _same_text(a: str, b: str) -> bool:
    return a.lstrip(" ") == b.lstrip(" ")  # a stream may keep the first token's leading space


def fsync_latency(directory: Path, n: int = 200) -> dict:
    """What one append + fsync costs on the disk holding the audit log: the part of the gateway's
    added latency that is the durability promise (a record is on disk before its answer leaves)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 400 + b"\n")
            os.fsync(fd)
            times.append((time.perf_counter() - t0) * 1e3)
    finally:
        os.close(fd)
        path.unlink()
    return {"p50": percentile(times, 50), "p95": percentile(times, 95)}


def print_gateway(gw: dict, n: int, upstream: str) -> None:
    print(f"\ngateway {upstream}: the same request directly and through a front server, {n} per path (ms)")
    print(
        f"{'request':15s} {'path':28s} {'p50':>7s} {'p95':>7s} {'added p50':>10s} {'p95':>7s} "
        f"{'paired median':>14s}"
    )
    for kind, row in gw.items():
        if kind == "fsync_ms":
            continue
        for name in [k for k in row if k != "added_ms"]:
            line = f"{kind:15s} {name:28s} {row[name]['p50']:7.2f} {row[name]['p95']:7.2f}"
            if name in row["added_ms"]:
                a = row["added_ms"][name]
                line += f" {a['p50']:10.2f} {a['p95']:7.2f} {a['paired_median']:14.2f}"
            print(line)
            kind = ""
    worst = max(row["added_ms"][GATEWAY]["p95"] for kind, row in gw.items() if kind != "fsync_ms")
    verdict = "meets" if worst <= TARGET_GATEWAY_MS else "misses"
    print(
        f"kiban gateway's added p95 latency: up to {worst:.2f} ms ({verdict} the ≤ {TARGET_GATEWAY_MS} ms target)"
    )
    if "fsync_ms" in gw:
        f = gw["fsync_ms"]
        print(
            f"of which the audit record's fsync on this disk (append + fsync, measured after): "
            f"p50 {f['p50']:.2f} ms, p95 {f['p95']:.2f} ms"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="max_tokens 32, 1 round, 50 gateway requests")
    ap.add_argument(
        "--repeats", type=int, default=1, help="runs of kiban and of the peers, order alternating"
    )
    ap.add_argument("--max-tokens", type=int, default=128, help="tokens generated per request")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the 16 prompts per concurrency level")
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated concurrency levels")
    ap.add_argument("--gateway-requests", type=int, default=300, help="timed requests per path and kind")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, every tool")
    ap.add_argument("--layers", type=int, default=Shape.n_layers)
    ap.add_argument("--dim", type=int, default=Shape.dim)
    ap.add_argument("--heads", type=int, default=Shape.n_heads)
    ap.add_argument("--kv-heads", type=int, default=Shape.n_kv_heads)
    ap.add_argument("--ffn-hidden", type=int, default=Shape.ffn_hidden)
    ap.add_argument("--vocab", type=int, default=Shape.vocab_size)
    ap.add_argument("--seed", type=int, default=Shape.seed, help="model weights")
    ap.add_argument(
        "--wait-idle",
        type=float,
        metavar="CORES",
        help="before each part, wait (up to 15 min) until other processes use fewer than CORES cores",
    )
    ap.add_argument("--no-gateway", action="store_true", help="skip the gateway measurement")
    ap.add_argument("--no-peers", action="store_true", help="skip transformers (and the in-process engine)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--bare-proxy", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--canned-upstream", metavar="MODEL", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)  # of the bare proxy
    ap.add_argument("--state", help=argparse.SUPPRESS)  # of the bare proxy (its log's directory)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.canned_upstream:  # the fixed-answer upstream's own process
        canned_upstream(args.port, args.canned_upstream)
        return
    if args.bare_proxy:  # the reference proxy's own process
        bare_proxy(args.port, os.environ["BENCH_UPSTREAM"], os.environ["BENCH_UPSTREAM_KEY"])
        return
    if args.worker:  # the peers' own process
        Path(args.result).write_text(json.dumps(peers_worker(json.loads(args.worker))))
        return
    if args.quick:
        args.max_tokens, args.rounds, args.gateway_requests = 32, 1, 50
    levels = [int(c) for c in args.concurrency.split(",")]
    shape = Shape(
        vocab_size=args.vocab,
        dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        n_kv_heads=args.kv_heads,
        ffn_hidden=args.ffn_hidden,
        seed=args.seed,
    )
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(WORK / "model", shape)
    print(
        f"model: {shape.n_layers} layers × {shape.dim}, heads {shape.n_heads}/{shape.n_kv_heads} kv, ffn "
        f"{shape.ffn_hidden}, vocab {shape.vocab_size:,} (untied): {n_params(shape) / 1e6:.1f} M parameters, "
        f"fp32; {args.threads} torch thread(s); {len(PROMPTS)} prompts, max_tokens {args.max_tokens}, greedy"
    )

    kiban_runs: list[dict] = []
    peer_runs: list[dict] = []
    for r in range(args.repeats):
        order = ("kiban", "peers") if r % 2 == 0 else ("peers", "kiban")
        for part in order:
            if args.wait_idle is not None:
                wait_idle(args.wait_idle)
            if part == "kiban":
                with OtherLoad() as other:
                    run = run_kiban(model_dir, args, levels, gateway=r == 0 and not args.no_gateway)
                run["other_cores"] = other.cores
                kiban_runs.append(run)
                figures = ", ".join(
                    f"{c}: {sum(s.completion_tokens for s in res) / wall:.1f}"
                    for c, (res, wall) in run["levels"].items()
                )
                print(
                    f"repeat {r + 1}/{args.repeats} kiban serve tokens/s by streams: {figures}{other.note()}"
                )
            elif not args.no_peers:
                with OtherLoad() as other:
                    peer = run_peers(model_dir, args.max_tokens, args.threads, WORK / f"peers-{r}.json")
                peer["other_cores"] = other.cores
                peer_runs.append(peer)
                print(
                    f"repeat {r + 1}/{args.repeats} peers tokens/s: transformers sequential "
                    f"{peer['sequential']['tokens_per_s']:.1f}, batched {peer['batched']['tokens_per_s']:.1f}; "
                    f"kiban engine in-process {peer['engine']['tokens_per_s']:.1f}{other.note()}"
                )

    load = [summarize_level(c, [run["levels"][c] for run in kiban_runs]) for c in levels]
    results: dict = {"shape": asdict(shape), "n_params": n_params(shape), "args": vars(args), "load": load}
    results["other_cores"] = {
        "kiban": [run["other_cores"] for run in kiban_runs],
        "peers": [p["other_cores"] for p in peer_runs],
    }
    print(
        f"\nkiban serve, streaming /v1/completions ({args.rounds} × {len(PROMPTS)} requests per level and run)"
    )
    print(
        f"{'streams':>7s} {'tokens/s':>9s} {'TTFT p50':>9s} {'p95':>7s} {'TPOT p50':>9s} {'p95':>7s} "
        f"{'ITL p50':>8s} {'p95':>7s}   (ms)"
    )
    for lv in load:
        print(
            f"{lv['concurrency']:7d} {lv['tokens_per_s']:9.1f} {lv['ttft_ms']['p50']:9.1f} {lv['ttft_ms']['p95']:7.1f} "
            f"{lv['tpot_ms']['p50']:9.1f} {lv['tpot_ms']['p95']:7.1f} {lv['itl_ms']['p50']:8.1f} {lv['itl_ms']['p95']:7.1f}"
        )
    if "gateway" in kiban_runs[0]:
        results["gateway"] = kiban_runs[0]["gateway"]
        print_gateway(results["gateway"], args.gateway_requests, "in front of the kiban serve above")
        results["gateway_alone"] = kiban_runs[0]["gateway_alone"]
        print_gateway(results["gateway_alone"], args.gateway_requests, "in front of a canned upstream")

    if peer_runs:
        top = load[-1]
        peers = {
            name: statistics.median(p[name]["tokens_per_s"] for p in peer_runs)
            for name in ("sequential", "batched", "engine")
        }
        ratios = {name: top["tokens_per_s"] / v for name, v in peers.items()}
        results.update(peers_tokens_per_s=peers, ratios=ratios)
        results["peer_runs"] = [{k: v for k, v in p.items() if k != "texts"} for p in peer_runs]
        p0 = peer_runs[0]
        print(
            f"\npeers: transformers {p0['transformers']}, torch {p0['torch']}; {len(PROMPTS)} prompts (tokens/s)"
        )
        label = f"kiban@{top['concurrency']} / peer"
        print(f"{'peer':44s} {'tokens/s':>9s} {label:>16s}")
        for name, text in (
            ("sequential", "transformers generate, one prompt at a time"),
            ("batched", "transformers generate, 16 prompts padded"),
            ("engine", "kiban NativeEngine in-process (no HTTP)"),
        ):
            print(f"{text:44s} {peers[name]:9.1f} {ratios[name]:15.2f}×")
        verdict = "meets" if ratios["sequential"] >= TARGET_RATIO else "misses"
        print(
            f"kiban serve at {top['concurrency']} streams / sequential transformers = {ratios['sequential']:.2f}× "
            f"({verdict} the ≥ {TARGET_RATIO}× target)"
        )
        one = next((run["levels"][1][0] for run in kiban_runs if 1 in run["levels"]), None)
        if one is not None:
            kiban_text = {s.prompt_index: s.text for s in one}
            same = sum(_same_text(text, p0["texts"][i]) for i, text in kiban_text.items())
            results["same_greedy_text"] = [same, len(kiban_text)]
            print(f"greedy outputs identical, kiban at 1 stream vs transformers: {same}/{len(kiban_text)}")

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
