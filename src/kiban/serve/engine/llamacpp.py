"""LlamaCppEngine: a kiban GGUF file run by llama.cpp (llama-cpp-python), behind the same gateway.

    engine = LlamaCppEngine.from_file("out/model-q4_k_m.gguf", threads=2)
    async for delta in engine.generate(GenerationRequest("r1", engine.encode("日本の首都は", add_bos=True),
                                                         SamplingParams(max_tokens=32, temperature=0))):
        print(delta.text, end="")

    generate(request) ─▶ waiting (deque) ─▶ one thread, one request at a time:
                                             1. keep the KV cache of the longest prefix the last request
                                                shares with this one (a chat's system prompt is not
                                                prefilled twice); llama.cpp evaluates the rest
                                             2. logits of the last position ─▶ kiban's sampler (the
                                                native engine's: same seeds, top_p, constraints, logprobs)
                                             3. stop ids, constraint, Detokenizer (never half a UTF-8
                                                character, never a stop string) ─▶ Delta ─▶ the consumer

llama.cpp computes the logits; everything the client sees around them is kiban's own code, shared
with the native engine: token ids come from the kiban tokenizer stored in the file
(`tokenizer.huggingface.json`, which llama.cpp's own tokenizer matches id for id, tested), text goes
through `Detokenizer`, sampling through `engine.sampling`. So a seed, a stop string or a JSON
schema behaves the same on an edge box as in the data centre; only the arithmetic differs (f16 or
quantized weights, llama.cpp's kernels).

One request runs at a time (llama.cpp's single-sequence context): on a CPU with few cores a batch
would share the same memory bandwidth, so latency per request is what this engine optimises.
Requests wait in order; a cancelled one (the client left) stops at its next token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from kiban.errors import DataError
from kiban.serve.engine.base import (
    Delta,
    EngineClosed,
    EngineError,
    GenerationRequest,
    TokenLogprob,
    allowed_mask,
    check_request,
)
from kiban.serve.engine.detokenize import Detokenizer
from kiban.serve.engine.sampling import RequestSampler, sample, token_logprobs

log = logging.getLogger(__name__)

HF_JSON_KEY = "tokenizer.huggingface.json"


@dataclass
class GgufInfo:
    """What the gateway needs from a kiban GGUF file's metadata."""

    tokenizer_json: str
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    eos_token_ids: list[int]
    context_length: int
    vocab_size: int


def read_gguf_info(path: Path) -> GgufInfo:
    """The tokenizer, chat template, special tokens and shape stored in a kiban GGUF file."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable GGUF file: {e}") from e

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    arch = value("general.architecture")
    if arch != "llama":
        raise DataError(f"{path}: field 'general.architecture' is {arch!r}; kiban serves 'llama' GGUF files")
    tokenizer_json = value(HF_JSON_KEY)
    if not tokenizer_json:
        raise DataError(
            f"{path}: no '{HF_JSON_KEY}' metadata; export the model with `kiban export --format gguf`"
        )
    tokens = value("tokenizer.ggml.tokens") or []
    bos, eos = value("tokenizer.ggml.bos_token_id"), value("tokenizer.ggml.eos_token_id")
    return GgufInfo(
        tokenizer_json=tokenizer_json,
        chat_template=value("tokenizer.chat_template"),
        bos_token=tokens[bos] if bos is not None and bos < len(tokens) else None,
        eos_token=tokens[eos] if eos is not None and eos < len(tokens) else None,
        eos_token_ids=[int(eos)] if eos is not None else [],
        context_length=int(value("llama.context_length")),
        vocab_size=int(value("llama.vocab_size") or len(tokens)),
    )


def verify_gguf(path: Path) -> dict[str, Any]:
    """Check `path` against the sha256 its export wrote in `FILE.gguf.manifest.json`.

    IntegrityError (exit 2) naming the file when the hash differs or the sidecar is unreadable;
    a GGUF without a sidecar (made elsewhere) passes with verified=False and a warning to log.
    """
    from kiban.artifacts import sha256_file
    from kiban.export.gguf import sidecar_path
    from kiban.serve.integrity import IntegrityError

    path = Path(path)
    if not path.is_file():
        raise IntegrityError(f"{path}: no such file")
    side = sidecar_path(path)
    if not side.is_file():
        return {"verified": False, "warning": f"integrity unverified: no {side.name} next to {path.name}"}
    try:
        want = json.loads(side.read_text(encoding="utf-8"))["files"][path.name]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise IntegrityError(f"{side}: not a kiban GGUF manifest listing {path.name} ({e!r})") from e
    got = sha256_file(path)
    if got != want:
        raise IntegrityError(f"{path}: sha256 {got} differs from {want} recorded in {side.name}")
    return {"verified": True, "sha256": got}


@dataclass(eq=False)
class _Request:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Delta | BaseException]
    submitted_s: float
    cancelled: bool = False
    done: bool = False

    def push(self, item: Delta | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the consumer's loop is closed
            self.cancelled = True


class LlamaCppEngine:
    """The llama.cpp engine (see the module docstring); meets `kiban.serve.engine.base.Engine`."""

    def __init__(self, llm: Any, tokenizer: Tokenizer, *, model_id: str, eos_token_ids: list[int]) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.llm = llm
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.max_context = int(llm.n_ctx())
        self.model_vocab_size = int(llm.n_vocab())
        self.n_vocab = min(tokenizer.get_vocab_size(with_added_tokens=True), self.model_vocab_size)
        self.eos_token_ids = list(eos_token_ids)
        self._token_text = [(tokenizer.id_to_token(i) or "").replace("▁", " ") for i in range(self.n_vocab)]
        self._cached: list[int] = []  # the tokens whose keys and values are in llama.cpp's KV cache
        self._waiting: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        self._counts: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._loop, name=f"kiban-llamacpp-{model_id}", daemon=True)
        self._thread.start()

    @classmethod
    def from_file(
        cls,
        path: Path | str,
        *,
        threads: int | None = None,
        n_ctx: int | None = None,
        model_id: str | None = None,
    ) -> LlamaCppEngine:
        """A GGUF file written by `kiban export --format gguf` (it carries the kiban tokenizer)."""
        from kiban.export.quantize import llama_cpp_module, silence_llama_cpp

        path = Path(path)
        info = read_gguf_info(path)
        llama_cpp = llama_cpp_module()
        silence_llama_cpp()
        ctx = min(n_ctx or info.context_length, info.context_length)
        try:
            llm = llama_cpp.Llama(
                str(path),
                n_ctx=ctx,
                n_batch=min(512, ctx),
                n_threads=threads,
                n_threads_batch=threads,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError) as e:
            raise DataError(f"{path}: llama.cpp could not load it: {e}") from e
        tokenizer = Tokenizer.from_str(info.tokenizer_json)
        return cls(llm, tokenizer, model_id=model_id or path.stem, eos_token_ids=info.eos_token_ids)

    # -----------------------------------------------------------------------------------------
    # the Engine contract

    def encode(self, text: str, *, add_bos: bool) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_bos).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def stats(self) -> dict[str, float]:
        return {
            "running": float(self._busy),
            "waiting": float(len(self._waiting)),
            "kv_slots_used": float(self._busy),
            "kv_slots_total": 1.0,
            **{f"requests_{k}": float(self._counts[k]) for k in ("finished", "cancelled", "failed")},
            "tokens_generated": float(self._counts["tokens"]),
        }

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        check_request(request, max_context=self.max_context, vocab_size=self.model_vocab_size)
        req = _Request(request, asyncio.get_running_loop(), asyncio.Queue(), time.monotonic())
        with self._cond:
            if self._closing:
                raise EngineClosed("the engine is shutting down and accepts no new requests")
            self._waiting.append(req)
            self._cond.notify()
        try:
            while True:
                item = await req.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            if not req.done:
                req.cancelled = True

    async def shutdown(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        await asyncio.to_thread(self._thread.join)
        self.llm.close()

    # -----------------------------------------------------------------------------------------
    # the worker thread

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._waiting or self._closing):
                    self._cond.wait()
                if not self._waiting:
                    return  # closing, nothing left
                req = self._waiting.popleft()
                self._busy = True
            try:
                if req.cancelled:
                    self._counts["cancelled"] += 1
                else:
                    self._run(req)
            except Exception as e:
                log.warning("request %s failed: %r", req.request.request_id, e)
                self._cached = []  # the cache may hold half an evaluation
                self._counts["failed"] += 1
                err = EngineError(f"request {req.request.request_id} failed in the engine: {e!r}")
                err.__cause__ = e
                req.done = True
                req.push(err)
            finally:
                self._busy = False

    def _eval(self, ids: list[int]) -> np.ndarray:
        """Evaluate `ids` after the cached tokens; the logits of the last one. # (V,)"""
        self.llm.n_tokens = len(self._cached)
        self.llm.eval(ids)
        self._cached += ids
        ptr = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.model_vocab_size,)).copy()

    def _prefill(self, ids: list[int], *, all_logits: bool) -> list[np.ndarray]:
        """Bring the KV cache to `ids`; logits after each token when `all_logits`, else the last."""
        keep = 0
        limit = len(ids) - 1 if not all_logits else 0  # re-evaluate at least the last token
        for a, b in zip(self._cached, ids[:limit], strict=False):
            if a != b:
                break
            keep += 1
        self._cached = self._cached[:keep]
        if all_logits:  # llama.cpp keeps one row of logits per evaluation here: one token at a time
            return [self._eval([t]) for t in ids]
        return [self._eval(ids[keep:])]

    def _run(self, req: _Request) -> None:
        r, p = req.request, req.request.params
        sampler = RequestSampler(p)
        detok = Detokenizer(self.tokenizer, stop=p.stop, context=r.prompt_ids[-4:])
        prompt_lp: list[TokenLogprob | None] | None = None
        if p.max_tokens == 0 and not p.prompt_logprobs:
            self._finish(req, Delta(), "length", detok, 0, None, prompt_lp)
            return
        rows = self._prefill(r.prompt_ids, all_logits=p.prompt_logprobs)
        if p.prompt_logprobs:
            logits = torch.from_numpy(np.stack(rows[:-1]))  # (T-1, V)
            targets = torch.tensor(r.prompt_ids[1:], dtype=torch.long)
            prompt_lp = [None, *self._logprobs(logits, targets, p.logprobs or 0)] if len(targets) else [None]
        position, n_out, first_s = len(r.prompt_ids), 0, None
        if p.max_tokens == 0 or position >= self.max_context:
            self._finish(req, Delta(), "length", detok, 0, None, prompt_lp)
            return
        logits_row = rows[-1]
        while True:
            if req.cancelled:
                req.done = True
                self._counts["cancelled"] += 1
                return
            x = torch.from_numpy(logits_row)[None]  # (1, V)
            if not bool(torch.isfinite(x).all()):
                raise FloatingPointError("the model produced non-finite logits")
            allowed = allowed_mask(p.constraint, vocab_size=self.model_vocab_size, n_vocab=self.n_vocab)
            token = int(sample(x, [sampler], n_vocab=self.n_vocab, allowed=[allowed])[0])
            lp = None
            if p.logprobs is not None:
                lp = self._logprobs(x, torch.tensor([token]), p.logprobs)[0]
            n_out += 1
            self._counts["tokens"] += 1
            first_s = first_s if first_s is not None else time.monotonic() - req.submitted_s
            if token in p.stop_token_ids:  # EOS: neither in the text nor in token_ids
                self._finish(req, Delta(), "stop", detok, n_out, first_s, prompt_lp)
                return
            if p.constraint is not None:
                p.constraint.advance(token)
            delta = Delta(text=detok.push(token), token_ids=[token], logprobs=[lp] if lp else [])
            if detok.stopped or (p.constraint is not None and p.constraint.is_finished()):
                self._finish(req, delta, "stop", detok, n_out, first_s, prompt_lp)
                return
            if n_out >= p.max_tokens or position + 1 >= self.max_context:
                self._finish(req, delta, "length", detok, n_out, first_s, prompt_lp)
                return
            delta.prompt_logprobs, prompt_lp = prompt_lp, None
            req.push(delta)
            logits_row = self._eval([token])
            position += 1

    def _finish(
        self,
        req: _Request,
        delta: Delta,
        reason: str,
        detok: Detokenizer,
        n_out: int,
        first_s: float | None,
        prompt_lp: list[TokenLogprob | None] | None,
    ) -> None:
        delta.text += detok.flush()
        delta.prompt_logprobs = prompt_lp
        delta.finish_reason = reason
        delta.prompt_tokens = len(req.request.prompt_ids)
        delta.completion_tokens = n_out
        delta.time_to_first_token_s = first_s
        req.done = True
        self._counts["finished"] += 1
        req.push(delta)

    def _logprobs(self, logits: torch.Tensor, tokens: torch.Tensor, k: int) -> list[TokenLogprob]:
        chosen, top_ids, top_lp = token_logprobs(logits, tokens, k=k, n_vocab=self.n_vocab)
        rows = zip(tokens.tolist(), chosen.tolist(), top_ids.tolist(), top_lp.tolist(), strict=True)
        return [
            TokenLogprob(
                token_id=t,
                token=self._text_of(t),
                logprob=lp,
                top=[(i, self._text_of(i), v) for i, v in zip(ids, lps, strict=True)],
            )
            for t, lp, ids, lps in rows
        ]

    def _text_of(self, token: int) -> str:
        return self._token_text[token] if token < self.n_vocab else ""
