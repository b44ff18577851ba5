"""kiban serve under faults: 16 misbehaving clients, then SIGTERM; nothing may go unaudited.

    .venv/bin/python benchmarks/serve_faults.py                # 60 s of traffic
    .venv/bin/python benchmarks/serve_faults.py --seconds 10   # a short run

One `kiban serve` (a subprocess on a free loopback port, `limits.max_request_bytes=65536`,
`limits.max_tokens=256`) on a small random-weight Llama that the script builds (serve_load.py's
builder: 2 layers × 128, vocabulary 2,048; `benchmarks/.work/serve/faults-model/`). For `--seconds`,
16 asyncio clients, each with its own connection pool and a seeded random stream of requests:

- valid (~50 %): chat and completions, streaming and not (temperature 0, or 0.8 with a seed;
  max_tokens 1–24; prompts as text or token ids), chat with a JSON schema (constrained decoding),
  /v1/models, /tokenize, /health without a key;
- disconnects (~15 %): a stream closed after 0–5 events, or a request written on a raw socket that is
  closed 5–50 ms later, before its answer (the client never sees a response or a request id);
- invalid (~35 %): bad JSON, no body, wrong types, n=2, negative or huge max_tokens, unknown model,
  out-of-range token ids, no key, a malformed or unknown key, a key without the scope, a body over
  the limit (with Content-Length, and chunked without it), an unknown route, a wrong method.

When the time is up the clients stop starting requests. 0.5 s later (every request started is written
by then) 8 long requests start (200 tokens each, half of them streaming), and once all of them are
running the server gets SIGTERM; it must drain them. Then:

1. no valid request answered 5xx, and every valid request answered 200 (a stream with `[DONE]` and
   no error event);
2. every invalid request answered 4xx, and the status of its kind (400 bad JSON or values, 401 keys,
   403 scope, 404 model or route, 405 method, 413 size, 422 types and ranges);
3. every request the clients sent is in `audit.jsonl`: a request whose response the client saw is
   matched by its `x-request-id` (same route, same status; a stream the client dropped is 499, or
   200 if the server finished first); the rest (raw-socket disconnects, bodies the server refused
   before the client finished sending) are matched by count per route against the audit records
   no client saw;
4. `kiban audit verify` says the log is intact;
5. the requests in flight at SIGTERM (8 long ones, started just before it) finish, and the server
   stops cleanly (exit 0, or -SIGTERM: uvicorn re-raises the signal once its graceful shutdown is done).

Prints a summary by request kind and each check; exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import KIBAN, PROMPTS, WORK, Server, Shape, build_model, create_key  # noqa: E402

CLIENTS = 16
MAX_REQUEST_BYTES = 65_536
MAX_TOKENS_CAP = 256
DRAIN_PROBES = 8
FAULTS_SHAPE = Shape(
    vocab_size=2048, dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=384, max_seq_len=256
)


@dataclass
class Attempt:
    """One request as a client saw it."""

    client: int
    kind: str
    valid: bool
    route: str  # the path the server sees (its audit `route`)
    status: int | None = None  # None: no response seen
    request_id: str | None = None
    error: str | None = None  # transport error, or an error event inside a 200 stream
    dropped: bool = False  # the client closed the connection on purpose
    expected: int | None = None  # an invalid request's status
    in_flight_at_sigterm: bool = False
    sent: bool = True  # False: the connection was refused, so the server never saw it


class Harness:
    def __init__(self, server: Server, keys: dict[str, str], model: str, seconds: float, seed: int) -> None:
        self.server, self.keys, self.model = server, keys, model
        self.seconds, self.seed = seconds, seed
        self.attempts: list[Attempt] = []
        self.stopping = False
        self.in_flight: set[int] = set()  # ids of Attempt objects currently running

    # -- the request kinds ---------------------------------------------------------------------

    def _auth(self, key: str = "all") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}

    def _chat_body(self, rng: random.Random, stream: bool) -> dict:
        body: dict = {
            "model": self.model,
            "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
            "max_tokens": rng.randint(1, 24),
            "stream": stream,
        }
        if rng.random() < 0.3:
            body["messages"].insert(0, {"role": "system", "content": "日本語で短く答えてください。"})
        body.update(
            {"temperature": 0} if rng.random() < 0.5 else {"temperature": 0.8, "seed": rng.randint(0, 99)}
        )
        if stream and rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
        return body

    def _json_schema_body(self, rng: random.Random) -> dict:
        """Constrained decoding (the grammar path) under the same load."""
        schema = {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 8}, "count": {"type": "integer"}},
            "required": ["name", "count"],
            "additionalProperties": False,
        }
        body = self._chat_body(rng, rng.random() < 0.5)
        body["max_tokens"] = 48
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "part", "schema": schema}}
        return body

    def _completion_body(self, rng: random.Random, stream: bool) -> dict:
        prompt: str | list[int] = rng.choice(PROMPTS)
        if rng.random() < 0.25:
            prompt = [1] + [rng.randint(300, FAULTS_SHAPE.vocab_size - 1) for _ in range(rng.randint(1, 20))]
        body = {"model": self.model, "prompt": prompt, "max_tokens": rng.randint(1, 24), "stream": stream}
        body.update(
            {"temperature": 0} if rng.random() < 0.5 else {"temperature": 0.8, "seed": rng.randint(0, 99)}
        )
        return body

    def valid_kinds(self, rng: random.Random) -> list[tuple[str, str, str, dict | None, dict]]:
        """(kind, method, path, json body, headers) of each valid request."""
        return [
            ("chat", "POST", "/v1/chat/completions", self._chat_body(rng, False), self._auth()),
            ("chat stream", "POST", "/v1/chat/completions", self._chat_body(rng, True), self._auth()),
            ("chat json_schema", "POST", "/v1/chat/completions", self._json_schema_body(rng), self._auth()),
            ("completions", "POST", "/v1/completions", self._completion_body(rng, False), self._auth()),
            ("completions stream", "POST", "/v1/completions", self._completion_body(rng, True), self._auth()),
            ("models", "GET", "/v1/models", None, self._auth()),
            (
                "tokenize",
                "POST",
                "/tokenize",
                {"model": self.model, "prompt": rng.choice(PROMPTS)},
                self._auth(),
            ),
            ("health", "GET", "/health", None, {}),
        ]

    def invalid_kinds(self, rng: random.Random) -> list[tuple[str, str, str, bytes | dict | None, dict, int]]:
        """(kind, method, path, body: raw bytes or JSON, headers, expected status) of each invalid request."""
        chat = self._chat_body(rng, rng.random() < 0.5)
        completion = self._completion_body(rng, False)
        auth, json_type = self._auth(), {"Content-Type": "application/json"}
        unknown_key = {"Authorization": "Bearer kb-0123456789abcdef-" + "x" * 43}
        return [
            (
                "bad json",
                "POST",
                "/v1/chat/completions",
                b'{"model": "x", "messages": [',
                {**auth, **json_type},
                400,
            ),
            ("no body", "POST", "/v1/completions", b"", {**auth, **json_type}, 400),
            (
                "wrong type: max_tokens",
                "POST",
                "/v1/chat/completions",
                {**chat, "max_tokens": "many"},
                auth,
                422,
            ),
            (
                "wrong type: messages",
                "POST",
                "/v1/chat/completions",
                {**chat, "messages": "hello"},
                auth,
                422,
            ),
            (
                "wrong type: prompt",
                "POST",
                "/v1/completions",
                {"model": self.model, "prompt": {"a": 1}},
                auth,
                422,
            ),
            ("n=2", "POST", "/v1/chat/completions", {**chat, "n": 2}, auth, 422),
            ("negative max_tokens", "POST", "/v1/completions", {**completion, "max_tokens": -5}, auth, 422),
            ("huge max_tokens", "POST", "/v1/chat/completions", {**chat, "max_tokens": 10**9}, auth, 400),
            ("unknown model", "POST", "/v1/chat/completions", {**chat, "model": "no-such-model"}, auth, 404),
            (
                "token id out of range",
                "POST",
                "/v1/completions",
                {**completion, "prompt": [1, 10**7]},
                auth,
                400,
            ),
            ("no key", "POST", "/v1/chat/completions", chat, {}, 401),
            (
                "malformed key",
                "POST",
                "/v1/chat/completions",
                chat,
                {"Authorization": "Bearer not-a-key"},
                401,
            ),
            ("unknown key", "GET", "/v1/models", None, unknown_key, 401),
            ("key without scope", "POST", "/v1/chat/completions", chat, self._auth("models_only"), 403),
            ("unknown route", "GET", "/v1/no-such-route", None, auth, 404),
            ("wrong method", "GET", "/v1/chat/completions", None, auth, 405),
            ("oversized body", "POST", "/v1/completions", {**completion, "prompt": "あ" * 40_000}, auth, 413),
        ]

    # -- running one request -------------------------------------------------------------------

    async def _track(self, attempt: Attempt, work) -> None:
        self.attempts.append(attempt)
        self.in_flight.add(id(attempt))
        try:
            await work
        except httpx.ConnectError as e:
            attempt.sent, attempt.error = False, f"{type(e).__name__}: {e}"
        except (httpx.HTTPError, OSError) as e:
            attempt.error = f"{type(e).__name__}: {e}"
        finally:
            self.in_flight.discard(id(attempt))

    async def _plain(
        self, client: httpx.AsyncClient, attempt: Attempt, method: str, body, headers: dict
    ) -> None:
        kwargs: dict = {"headers": headers}
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        if isinstance(body, dict) and body.get("stream"):
            async with client.stream(method, attempt.route, **kwargs) as r:
                attempt.status, attempt.request_id = r.status_code, r.headers.get("x-request-id")
                done = False
                async for line in r.aiter_lines():
                    if line.startswith("data: {") and '"error"' in line[:20]:
                        attempt.error = f"error event: {line[6:200]}"
                    done = done or line == "data: [DONE]"
                if r.status_code == 200 and not done and attempt.error is None:
                    attempt.error = "stream ended without [DONE]"
            return
        r = await client.request(method, attempt.route, **kwargs)
        attempt.status, attempt.request_id = r.status_code, r.headers.get("x-request-id")

    async def _drop_stream(self, client: httpx.AsyncClient, attempt: Attempt, body: dict, after: int) -> None:
        """Read `after` SSE events, then close the connection mid-stream."""
        async with client.stream("POST", attempt.route, json=body, headers=self._auth()) as r:
            attempt.status, attempt.request_id = r.status_code, r.headers.get("x-request-id")
            attempt.dropped = True
            events = 0
            async for line in r.aiter_lines():
                if line == "data: [DONE]":
                    attempt.dropped = False  # finished before we could drop it
                    break
                if line.startswith("data: "):
                    events += 1
                    if events > after:
                        break

    async def _drop_raw(self, attempt: Attempt, body: dict, wait_s: float) -> None:
        """Write a whole request on a raw socket, close it `wait_s` later: usually before any answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        payload = json.dumps(body).encode()
        head = (
            f"POST {attempt.route} HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
            f"Authorization: Bearer {self.keys['all']}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
        attempt.dropped = True
        try:
            data = await asyncio.wait_for(reader.read(65536), timeout=wait_s)
        except TimeoutError:
            data = b""
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        if data:  # the answer came first: it counts as seen (by id, if the headers arrived whole)
            head_text = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            lines = head_text.split("\r\n")
            if lines and lines[0].startswith("HTTP/1.1 "):
                attempt.status = int(lines[0].split()[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "x-request-id":
                    attempt.request_id = value.strip()

    async def _oversized_chunked(self, client: httpx.AsyncClient, attempt: Attempt) -> None:
        """A body over the limit with no Content-Length: the server must count the bytes itself."""

        async def chunks():
            yield b'{"model": "' + self.model.encode() + b'", "prompt": "'
            for _ in range(2 * MAX_REQUEST_BYTES // 8192):
                yield b"a" * 8192
            yield b'"}'

        headers = {**self._auth(), "Content-Type": "application/json"}
        r = await client.post(attempt.route, content=chunks(), headers=headers)
        attempt.status, attempt.request_id = r.status_code, r.headers.get("x-request-id")

    # -- the clients ---------------------------------------------------------------------------

    async def client(self, index: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + index)
        async with httpx.AsyncClient(base_url=self.server.base, timeout=120, trust_env=False) as client:
            while not self.stopping and time.monotonic() < deadline:
                roll = rng.random()
                if roll < 0.50:
                    kind, method, path, body, headers = rng.choice(self.valid_kinds(rng))
                    a = Attempt(index, kind, True, path)
                    await self._track(a, self._plain(client, a, method, body, headers))
                elif roll < 0.65:
                    stream = rng.random() < 0.5
                    if stream:
                        chat = rng.random() < 0.5
                        path = "/v1/chat/completions" if chat else "/v1/completions"
                        body = self._chat_body(rng, True) if chat else self._completion_body(rng, True)
                        body["max_tokens"] = 48
                        a = Attempt(index, "drop mid-stream", True, path)
                        await self._track(a, self._drop_stream(client, a, body, rng.randint(0, 5)))
                    else:
                        body = {**self._completion_body(rng, False), "max_tokens": 64}
                        a = Attempt(index, "drop before answer", True, "/v1/completions")
                        await self._track(a, self._drop_raw(a, body, rng.uniform(0.005, 0.05)))
                elif roll < 0.67:
                    a = Attempt(index, "oversized chunked body", False, "/v1/completions", expected=413)
                    await self._track(a, self._oversized_chunked(client, a))
                else:
                    kind, method, path, body, headers, expected = rng.choice(self.invalid_kinds(rng))
                    a = Attempt(index, kind, False, path, expected=expected)
                    await self._track(a, self._plain(client, a, method, body, headers))

    async def _drain_probe(
        self, client: httpx.AsyncClient, attempt: Attempt, body: dict, started: asyncio.Event
    ) -> None:
        """A long request that is running when SIGTERM comes: the server must finish it."""
        if not body["stream"]:
            started.set()
            await self._plain(client, attempt, "POST", body, self._auth())
            return
        async with client.stream("POST", attempt.route, json=body, headers=self._auth()) as r:
            attempt.status, attempt.request_id = r.status_code, r.headers.get("x-request-id")
            done = False
            async for line in r.aiter_lines():
                started.set()
                done = done or line == "data: [DONE]"
            if not done:
                attempt.error = "stream ended without [DONE]"

    async def run(self) -> int:
        """Traffic for `seconds`, then SIGTERM with requests in flight; the server's exit code."""
        deadline = time.monotonic() + self.seconds
        tasks = [asyncio.create_task(self.client(i, deadline)) for i in range(CLIENTS)]
        await asyncio.sleep(self.seconds)
        self.stopping = True
        await asyncio.sleep(0.5)  # every request started is written by now
        # Long requests (200 tokens) that are surely running when SIGTERM comes: the drain must finish them.
        async with httpx.AsyncClient(base_url=self.server.base, timeout=120, trust_env=False) as client:
            probes, started = [], []
            for i in range(DRAIN_PROBES):
                stream = i % 2 == 0
                body = {
                    "model": self.model,
                    "prompt": PROMPTS[0],
                    "max_tokens": 200,
                    "temperature": 0,
                    "stream": stream,
                }
                a = Attempt(-1, "in flight at SIGTERM", True, "/v1/completions")
                started.append(asyncio.Event())
                probes.append(
                    asyncio.create_task(self._track(a, self._drain_probe(client, a, body, started[-1])))
                )
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), timeout=60)
            await asyncio.sleep(0.2)
            flying = [a for a in self.attempts if id(a) in self.in_flight]
            for a in flying:
                a.in_flight_at_sigterm = True
            self.server.proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*tasks, *probes)
        return await asyncio.to_thread(self.server.proc.wait, 120)


# --- the checks ----------------------------------------------------------------------------------


def read_audit(state: Path) -> list[dict]:
    lines = (state / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if "request_id" in r]  # not checkpoints or events


def check(
    attempts: list[Attempt], audit: list[dict], before: set[str], exit_code: int, state: Path
) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = []
    valid = [a for a in attempts if a.valid and a.kind not in ("drop mid-stream", "drop before answer")]

    fivexx = [a for a in attempts if a.valid and a.status is not None and a.status >= 500]
    results.append(("no 5xx on valid requests", not fivexx, _examples(fivexx)))
    not_ok = [a for a in valid if a.status != 200 or a.error]
    results.append(
        ("every valid request answered 200 (streams ending in [DONE])", not not_ok, _examples(not_ok))
    )
    invalid = [a for a in attempts if not a.valid]
    bad = [a for a in invalid if a.status is not None and not 400 <= a.status < 500]
    results.append(("every invalid request answered 4xx (or cut off while sending)", not bad, _examples(bad)))
    wrong = [a for a in invalid if a.status is not None and a.status != a.expected]
    results.append(
        (
            "every invalid request answered its own status (400/401/403/404/405/413/422)",
            not wrong,
            _examples(wrong),
        )
    )

    records = [r for r in audit if r["request_id"] not in before]
    by_id = {r["request_id"]: r for r in records}
    mismatched, missing = [], []
    for a in attempts:
        if a.request_id is None:
            continue
        r = by_id.get(a.request_id)
        if r is None:
            missing.append(a)
            continue
        expected = {499, 200} if a.dropped else {a.status}
        if r["route"] != a.route or r["status"] not in expected:
            mismatched.append((a, r))
    seen_ids = {a.request_id for a in attempts if a.request_id}
    unseen = Counter(r["route"] for r in records if r["request_id"] not in seen_ids)
    unanswered = Counter(a.route for a in attempts if a.request_id is None and a.sent)
    detail = f"{len(records)} audit records for {sum(a.sent for a in attempts)} requests sent"
    detail += f"; by id: {len(seen_ids)} ({len(missing)} missing, {len(mismatched)} differ)"
    detail += f"; by count: {dict(unanswered)} unanswered vs {dict(unseen)} records no client saw"
    if missing:
        detail += "\n      missing: " + _examples(missing)
    if mismatched:
        detail += "\n      differ: " + "; ".join(
            f"{a.kind} {a.route} client {a.status} audit {r['route']} {r['status']}"
            for a, r in mismatched[:5]
        )
    dropped = Counter(by_id[a.request_id]["status"] for a in attempts if a.dropped and a.request_id in by_id)
    unseen_status = Counter(r["status"] for r in records if r["request_id"] not in seen_ids)
    detail += f"\n      audit status of streams dropped mid-way: {dict(dropped)}; of requests no client saw answered: "
    detail += f"{dict(unseen_status)}"
    ok = not missing and not mismatched and unseen == unanswered and len(by_id) == len(records)
    results.append(("every request sent is in audit.jsonl", ok, detail))

    verify = subprocess.run(
        [*KIBAN, "audit", "verify", "--state", str(state)], capture_output=True, text=True
    )
    out = (verify.stdout + verify.stderr).strip()
    results.append(
        (
            "kiban audit verify: intact",
            verify.returncode == 0 and "intact" in out,
            out.splitlines()[-1] if out else "",
        )
    )

    flying = [a for a in attempts if a.in_flight_at_sigterm]
    unfinished = [a for a in flying if a.valid and not a.dropped and (a.status != 200 or a.error)]
    detail = f"{len(flying)} in flight, {len(unfinished)} unfinished {_examples(unfinished)}".strip()
    results.append(
        ("the requests in flight at SIGTERM finished (200, [DONE])", bool(flying) and not unfinished, detail)
    )
    # uvicorn re-raises the signal after its graceful shutdown, so a clean stop may also read as -SIGTERM
    clean = exit_code in (0, -signal.SIGTERM)
    results.append(
        ("the server stops cleanly on SIGTERM (exit 0 or -SIGTERM)", clean, f"exit status {exit_code}")
    )
    return results


def _examples(attempts: list[Attempt], n: int = 5) -> str:
    if not attempts:
        return ""
    shown = "; ".join(f"{a.kind} {a.route} → {a.status} {a.error or ''}".strip() for a in attempts[:n])
    return f"{len(attempts)}: {shown}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the 16 clients send requests")
    ap.add_argument("--seed", type=int, default=0, help="the clients' random choices")
    ap.add_argument("--json", metavar="PATH", help="also write the summary as JSON to PATH")
    args = ap.parse_args()

    model_dir = build_model(WORK / "faults-model", FAULTS_SHAPE)
    state = WORK / "faults-state"
    shutil.rmtree(state, ignore_errors=True)
    keys = {
        "all": create_key(state, "chat,completions,models,tokenize"),
        "models_only": create_key(state, "models", "models"),
    }
    limits = [
        "--set",
        f"limits.max_request_bytes={MAX_REQUEST_BYTES}",
        "--set",
        f"limits.max_tokens={MAX_TOKENS_CAP}",
    ]
    server = Server([str(model_dir), *limits], state).wait_ready()
    before = {r["request_id"] for r in read_audit(state)}  # the readiness probes
    harness = Harness(server, keys, model_dir.name, args.seconds, args.seed)
    try:
        exit_code = asyncio.run(harness.run())
    finally:
        server.stop()
    attempts = harness.attempts

    by_kind: dict[str, Counter] = defaultdict(Counter)
    for a in attempts:
        outcome = str(a.status) if a.status is not None else ("refused" if not a.sent else "no answer")
        by_kind[f"{'valid' if a.valid else 'invalid'}: {a.kind}"][outcome] += 1
    print(
        f"{len(attempts)} requests from {CLIENTS} clients in {args.seconds:.0f} s; outcomes (status: count):"
    )
    for kind in sorted(by_kind):
        print(f"  {kind:42s} {dict(sorted(by_kind[kind].items()))}")
    results = check(attempts, read_audit(state), before, exit_code, state)
    print()
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"\n      {detail}" if detail else ""))
    if args.json:
        summary = {
            "requests": len(attempts),
            "seconds": args.seconds,
            "outcomes": {k: dict(v) for k, v in by_kind.items()},
            "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in results],
        }
        Path(args.json).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    sys.exit(0 if all(ok for _, ok, _ in results) else 1)


if __name__ == "__main__":
    main()
