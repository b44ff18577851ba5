"""NativeEngine: the model in this process, a KV cache, and one thread that batches every request.

    engine = NativeEngine.from_dir("ckpt/hf", max_batch=16)
    async for delta in engine.generate(GenerationRequest("r1", engine.encode("日本の首都は", add_bos=True),
                                                         SamplingParams(max_tokens=32, temperature=0))):
        print(delta.text, end="")

    generate(request) ─▶ waiting (deque) ─▶ the step thread, forever:
          ▲                                   1. admit: waiting requests into free slots; prefill each
          │                                      (KVCache.prefill), sample its first token
          │                                   2. decode: ONE batched forward for all running requests
          │                                      (KVCache.decode), sample one token per row
          │                                   3. per request: stop ids, constraint, detokenize and stop
          │                                      strings (Detokenizer); a finished request frees its slot
          └── asyncio.Queue ◀─ loop.call_soon_threadsafe(Delta | EngineError)

Requests join and leave between steps (continuous batching, Yu et al. 2022, "Orca", §3): a new
request waits for a free slot, never for the batch to finish. Closing the async iterator (the client
went away) marks the request cancelled; the thread frees its slot at its next step. An error while
serving one request ends that request's stream with `EngineError` (the HTTP layer answers 500) and
nothing else; only a failed batched forward, which no single request can be blamed for, ends the
whole batch. Counters for `stats()` are named: finished, cancelled, failed.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from kiban.errors import DataError
from kiban.model.kv_cache import KVCache
from kiban.model.llama import Llama
from kiban.serve.engine.base import (
    Delta,
    EngineClosed,
    EngineError,
    GenerationRequest,
    InvalidRequest,  # noqa: F401 - re-exported: callers catch it from here
    TokenLogprob,
    allowed_mask,
    check_request,
)
from kiban.serve.engine.detokenize import Detokenizer
from kiban.serve.engine.sampling import RequestSampler, sample, token_logprobs

log = logging.getLogger(__name__)

PREFILL_TOKENS_PER_STEP = 4096
"""Prompt tokens admitted per step (at least one request): bounds the stall running requests see."""


def _eos_token_ids(model_dir: Path) -> list[int]:
    """`eos_token_id` of generation_config.json, else of config.json (an int or a list)."""
    for name in ("generation_config.json", "config.json"):
        path = model_dir / name
        if path.is_file():
            eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
            if eos is not None:
                return [int(e) for e in eos] if isinstance(eos, list) else [int(eos)]
    return []


@dataclass(eq=False)
class _Sequence:
    """One request as the step thread sees it."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop  # the consumer's
    queue: asyncio.Queue[Delta | BaseException]  # read by the consumer, written via `push`
    sampler: RequestSampler
    detok: Detokenizer
    submitted_s: float
    slot: int = -1
    position: int = 0  # tokens in the cache; the pending `last_id` goes in at this position
    last_id: int = 0
    completion_tokens: int = 0  # sampled tokens, a stop token id included (it was computed and billed)
    first_token_s: float | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None  # sent with the first delta
    cancelled: bool = False  # set by the consumer's side
    done: bool = False  # set by the step thread once the last delta or the error is pushed

    def push(self, item: Delta | BaseException) -> None:
        """Hand `item` to the consumer; callable from any thread."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the consumer's event loop is closed: nobody is listening
            self.cancelled = True


class NativeEngine:
    """The in-process engine (see the module docstring); meets `kiban.serve.engine.base.Engine`."""

    def __init__(
        self,
        model: Llama,
        tokenizer: Tokenizer,
        *,
        model_id: str,
        max_batch: int = 16,
        eos_token_ids: list[int] | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.max_context = model.cfg.max_seq_len
        self.max_batch = max_batch
        self.eos_token_ids = list(eos_token_ids or [])  # what a caller passes as stop_token_ids
        self.model_vocab_size = model.cfg.vocab_size
        # The model's vocabulary may be padded past the tokenizer's; those ids are never sampled.
        self.n_vocab = min(tokenizer.get_vocab_size(with_added_tokens=True), self.model_vocab_size)
        # A token's own text for logprobs: "▁" shown as the space it stands for, bytes as "<0xE3>"
        self._token_text = [(tokenizer.id_to_token(i) or "").replace("▁", " ") for i in range(self.n_vocab)]
        self._cache = KVCache(model, max_batch=max_batch)
        # One token through both forwards before serving: a checkpoint that cannot run fails here,
        # at startup, and the BLAS / OpenMP thread pools are up before the first request times them.
        self._cache.prefill(0, [0])
        if self.max_context > 1:
            self._cache.decode([0], [0], [1])
        self._free = list(range(max_batch))  # a heap: the lowest slot first keeps decode's rows dense
        self._running: list[_Sequence] = []  # owned by the step thread
        self._waiting: deque[_Sequence] = deque()  # guarded by _cond
        self._cond = threading.Condition()
        self._closing = False
        self._counts: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._loop, name=f"kiban-engine-{model_id}", daemon=True)
        self._thread.start()

    @classmethod
    def from_dir(
        cls,
        model_dir: Path | str,
        *,
        max_batch: int = 16,
        dtype: torch.dtype = torch.float32,
        threads: int | None = None,
        device: str | torch.device = "cpu",
    ) -> NativeEngine:
        """A Hugging Face-layout directory: config.json, model.safetensors, tokenizer.json."""
        from kiban.model.hf import load_hf

        model_dir = Path(model_dir)
        if threads is not None:
            torch.set_num_threads(threads)
        tok_path = model_dir / "tokenizer.json"
        if not tok_path.is_file():
            raise DataError(f"{model_dir}: no tokenizer.json next to the model")
        model = load_hf(model_dir, dtype=dtype).to(device)
        return cls(
            model,
            Tokenizer.from_file(str(tok_path)),
            model_id=model_dir.name,
            max_batch=max_batch,
            eos_token_ids=_eos_token_ids(model_dir),
        )

    # -----------------------------------------------------------------------------------------
    # the Engine contract (called on the event loop)

    def encode(self, text: str, *, add_bos: bool) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_bos).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def stats(self) -> dict[str, float]:
        used = self.max_batch - len(self._free)  # a running request holds exactly one slot
        return {
            "running": float(used),
            "waiting": float(len(self._waiting)),
            "kv_slots_used": float(used),
            "kv_slots_total": float(self.max_batch),
            **{f"requests_{k}": float(self._counts[k]) for k in ("finished", "cancelled", "failed")},
            "tokens_generated": float(self._counts["tokens"]),
        }

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        check_request(request, max_context=self.max_context, vocab_size=self.model_vocab_size)
        seq = _Sequence(
            request=request,
            loop=asyncio.get_running_loop(),
            queue=asyncio.Queue(),
            sampler=RequestSampler(request.params),
            detok=Detokenizer(self.tokenizer, stop=request.params.stop, context=request.prompt_ids[-4:]),
            submitted_s=time.monotonic(),
        )
        with self._cond:
            if self._closing:
                raise EngineClosed("the engine is shutting down and accepts no new requests")
            self._waiting.append(seq)
            self._cond.notify()
        try:
            while True:
                item = await seq.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:  # normal end, error, or the consumer closed us (GeneratorExit / CancelledError)
            if not seq.done:
                seq.cancelled = True
                with self._cond:
                    self._cond.notify()

    async def shutdown(self) -> None:
        """Refuse new requests, finish the accepted ones, stop the step thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        await asyncio.to_thread(self._thread.join)

    # -----------------------------------------------------------------------------------------
    # the step thread

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not (self._waiting or self._running or self._closing):
                        self._cond.wait()
                    if self._closing and not self._waiting and not self._running:
                        return
                try:
                    self._step()
                except Exception as e:  # a bug of ours, not of one request: end the batch, keep serving
                    log.exception("engine step failed; failing the requests in flight")
                    for seq in list(self._running):
                        self._fail(seq, e)
                    self._running = [s for s in self._running if not s.done]

    def _step(self) -> None:
        self._admit()
        for seq in self._running:
            if seq.cancelled and not seq.done:
                self._release(seq, "cancelled")
        self._running = [s for s in self._running if not s.done]
        if self._running:
            self._decode()
            self._running = [s for s in self._running if not s.done]

    def _admit(self) -> None:
        budget = PREFILL_TOKENS_PER_STEP
        admitted: list[_Sequence] = []
        while self._free and (budget > 0 or not admitted):
            with self._cond:
                if not self._waiting:
                    break
                seq = self._waiting.popleft()
            if seq.cancelled:
                self._counts["cancelled"] += 1
                continue
            seq.slot = heapq.heappop(self._free)
            budget -= len(seq.request.prompt_ids)
            admitted.append(seq)
        # Plain generation requests arriving together share one padded prefill forward; requests
        # that want prompt logprobs (echo) or no generation take the one-at-a-time path.
        batched = [
            s for s in admitted if not s.request.params.prompt_logprobs and s.request.params.max_tokens > 0
        ]
        batched = batched if len(batched) > 1 else []
        if batched:
            try:
                self._prefill_batch(batched)
            except Exception as e:
                for seq in batched:
                    self._fail(seq, e)
        in_batch = {id(s) for s in batched}
        for seq in admitted:
            if id(seq) not in in_batch:
                try:
                    self._prefill(seq)
                except Exception as e:
                    self._fail(seq, e)
            if not seq.done:
                self._running.append(seq)

    def _prefill_batch(self, seqs: list[_Sequence]) -> None:
        full = [s for s in seqs if len(s.request.prompt_ids) >= self.max_context]
        for seq in full:
            seq.position = len(seq.request.prompt_ids)
            self._finish(seq, Delta(), "length")
        seqs = [s for s in seqs if all(s is not f for f in full)]
        if not seqs:
            return
        logits = self._cache.prefill_batch(
            [s.slot for s in seqs], [s.request.prompt_ids for s in seqs]
        )  # (B, V)
        for seq in seqs:
            seq.position = len(seq.request.prompt_ids)
        self._sample_and_emit(seqs, logits)

    def _prefill(self, seq: _Sequence) -> None:
        ids, p = seq.request.prompt_ids, seq.request.params
        if p.max_tokens == 0 and not p.prompt_logprobs:
            self._finish(seq, Delta(), "length")  # nothing asked that needs the model
            return
        logits = self._cache.prefill(seq.slot, ids, all_logits=p.prompt_logprobs)  # (T or 1, V)
        seq.position = len(ids)
        if p.prompt_logprobs:
            seq.prompt_logprobs = self._prompt_logprobs(ids, logits, k=p.logprobs or 0)
        if p.max_tokens == 0 or len(ids) >= self.max_context:
            self._finish(seq, Delta(), "length")
            return
        self._sample_and_emit([seq], logits[-1:])

    def _decode(self) -> None:
        seqs = sorted(self._running, key=lambda s: s.slot)  # rows in slot order: a dense batch, no gather
        try:
            logits = self._cache.decode(
                [s.slot for s in seqs], [s.last_id for s in seqs], [s.position for s in seqs]
            )  # (B, V)
        except Exception as e:  # not attributable to one request
            log.exception("batched decode of %d requests failed", len(seqs))
            for seq in seqs:
                self._fail(seq, e)
            return
        for seq in seqs:
            seq.position += 1
        self._sample_and_emit(seqs, logits)

    def _sample_and_emit(self, seqs: list[_Sequence], logits: torch.Tensor) -> None:
        """Sample a token for each of `seqs` from its row of `logits` (B, V) and push its Delta."""
        allowed: list[torch.Tensor | None] = []
        for seq in seqs:  # a constraint is the request's own code: its failure is the request's
            try:
                allowed.append(
                    allowed_mask(
                        seq.request.params.constraint, vocab_size=self.model_vocab_size, n_vocab=self.n_vocab
                    )
                )
            except Exception as e:
                self._fail(seq, e)
                allowed.append(None)
        # a row that overflowed (NaN, inf: float16 on an odd prompt) fails its request, not the batch
        for seq, finite in zip(seqs, torch.isfinite(logits).all(dim=-1).tolist(), strict=True):
            if not finite:
                self._fail(seq, FloatingPointError("the model produced non-finite logits"))
        rows = [b for b, s in enumerate(seqs) if not s.done]
        if not rows:
            return
        if len(rows) < len(seqs):
            logits = logits[rows]
            seqs, allowed = [seqs[b] for b in rows], [allowed[b] for b in rows]
        tokens_t = sample(logits, [s.sampler for s in seqs], n_vocab=self.n_vocab, allowed=allowed)  # (B,)
        logprobs = self._sampled_logprobs(seqs, logits, tokens_t)
        for seq, token, lp in zip(seqs, tokens_t.tolist(), logprobs, strict=True):
            try:
                self._accept(seq, token, lp)
            except Exception as e:
                self._fail(seq, e)

    def _accept(self, seq: _Sequence, token: int, lp: TokenLogprob | None) -> None:
        """One sampled token of `seq`: stop checks, text, and the Delta pushed to the consumer."""
        p = seq.request.params
        seq.completion_tokens += 1
        self._counts["tokens"] += 1
        if seq.first_token_s is None:
            seq.first_token_s = time.monotonic() - seq.submitted_s
        if token in p.stop_token_ids:  # EOS: neither in the text nor in token_ids
            self._finish(seq, Delta(), "stop")
            return
        seq.last_id = token
        if p.constraint is not None:
            p.constraint.advance(token)
        delta = Delta(text=seq.detok.push(token), token_ids=[token], logprobs=[lp] if lp else [])
        if seq.detok.stopped or (p.constraint is not None and p.constraint.is_finished()):
            self._finish(seq, delta, "stop")
        elif seq.completion_tokens >= p.max_tokens or seq.position + 1 >= self.max_context:
            self._finish(seq, delta, "length")  # position + 1: the cache plus the pending token
        else:
            delta.prompt_logprobs, seq.prompt_logprobs = seq.prompt_logprobs, None
            seq.push(delta)

    def _finish(self, seq: _Sequence, delta: Delta, reason: str) -> None:
        delta.text += seq.detok.flush()  # "" after a stop string
        delta.prompt_logprobs, seq.prompt_logprobs = seq.prompt_logprobs, None
        delta.finish_reason = reason
        delta.prompt_tokens = len(seq.request.prompt_ids)
        delta.completion_tokens = seq.completion_tokens
        delta.time_to_first_token_s = seq.first_token_s
        self._release(seq, "finished")
        seq.push(delta)

    def _fail(self, seq: _Sequence, e: BaseException) -> None:
        if seq.done:
            return
        log.warning("request %s failed: %r", seq.request.request_id, e)
        self._release(seq, "failed")
        err = EngineError(f"request {seq.request.request_id} failed in the engine: {e!r}")
        err.__cause__ = e
        seq.push(err)

    def _release(self, seq: _Sequence, outcome: str) -> None:
        """Mark `seq` done and give its slot back (the running list is pruned by the caller)."""
        seq.done = True
        self._counts[outcome] += 1
        if seq.slot >= 0:
            heapq.heappush(self._free, seq.slot)
            seq.slot = -1

    # -----------------------------------------------------------------------------------------
    # logprobs

    def _sampled_logprobs(
        self, seqs: list[_Sequence], logits: torch.Tensor, tokens: torch.Tensor
    ) -> list[TokenLogprob | None]:
        want = [b for b, s in enumerate(seqs) if s.request.params.logprobs is not None]
        out: list[TokenLogprob | None] = [None] * len(seqs)
        if not want:
            return out
        k = max(seqs[b].request.params.logprobs or 0 for b in want)
        idx = torch.tensor(want, dtype=torch.long, device=logits.device)
        found = self._logprobs(
            logits[idx], tokens[idx], [seqs[b].request.params.logprobs or 0 for b in want], k
        )
        for b, lp in zip(want, found, strict=True):
            out[b] = lp
        return out

    def _prompt_logprobs(self, ids: list[int], logits: torch.Tensor, *, k: int) -> list[TokenLogprob | None]:
        """logprob of ids[t] given ids[:t], t >= 1, from the prefill's logits (T, V); [0] is None."""
        targets = torch.tensor(ids[1:], dtype=torch.long, device=logits.device)  # (T-1,)
        logits = logits[:-1]  # (T-1, V): the last position predicts a token not in the prompt
        out: list[TokenLogprob | None] = [None]
        chunk = 1024  # log_softmax over (chunk, V) at a time: a long prompt x 128k vocab adds up
        for start in range(0, len(targets), chunk):
            rows = slice(start, start + chunk)
            out += self._logprobs(logits[rows], targets[rows], [k] * len(targets[rows]), k)
        return out

    def _logprobs(
        self, logits: torch.Tensor, tokens: torch.Tensor, ks: list[int], k: int
    ) -> list[TokenLogprob]:
        """TokenLogprob of tokens (N,) under logits (N, V), row n with its ks[n] best alternatives."""
        chosen, top_ids, top_lp = token_logprobs(logits, tokens, k=k, n_vocab=self.n_vocab)
        rows = zip(tokens.tolist(), chosen.tolist(), top_ids.tolist(), top_lp.tolist(), ks, strict=True)
        return [
            TokenLogprob(
                token_id=t,
                token=self._text_of(t),
                logprob=lp,
                top=[(i, self._text_of(i), v) for i, v in zip(ids[:kn], lps[:kn], strict=True)],
            )
            for t, lp, ids, lps, kn in rows
        ]

    def _text_of(self, token: int) -> str:
        return self._token_text[token] if token < self.n_vocab else ""
