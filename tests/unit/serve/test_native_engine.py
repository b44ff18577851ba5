"""NativeEngine end to end on the tiny real model: parity with the full forward, batching, seeds,
cancellation, byte-fallback streaming, stop strings, logprobs, failures and shutdown."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from torch import nn

from kiban.model.hf import load_hf
from kiban.model.llama import Llama
from kiban.serve.engine.base import Delta, GenerationRequest, SamplingParams
from kiban.serve.engine.native import EngineClosed, EngineError, InvalidRequest, NativeEngine

N_VOCAB = 405  # the tiny tokenizer's; the model's vocabulary is padded to 512
PROMPTS = ["こんにちは the", "日本語の文書です。", "abc", "x", "Hello, world!", "ます", "1 2 3", "東京"]


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Llama:
    """The fixture's model with an untied, seeded output layer. Its own tied head (x20) only ever
    repeats the last token, which a broken cache would reproduce just as well."""
    m = load_hf(tiny_model_dir)
    head = nn.Linear(m.cfg.dim, m.cfg.vocab_size, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.3)
    m.lm_head = head
    return m


@pytest.fixture
def engines():
    """engines(model, tok, max_batch=...) -> a running NativeEngine, shut down after the test."""
    made: list[NativeEngine] = []

    def make(model: Llama, tok: Tokenizer, **kw) -> NativeEngine:
        made.append(NativeEngine(model, tok, model_id="tiny", **kw))
        return made[-1]

    yield make
    for e in made:
        asyncio.run(asyncio.wait_for(e.shutdown(), 30))


def request(prompt: list[int], rid: str = "r", **params) -> GenerationRequest:
    params.setdefault("stop_token_ids", [])  # a random model: EOS would end runs at random places
    return GenerationRequest(rid, prompt, SamplingParams(**params))


async def collect(engine: NativeEngine, req: GenerationRequest) -> list[Delta]:
    return [d async for d in engine.generate(req)]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def ids_of(deltas: list[Delta]) -> list[int]:
    return [t for d in deltas for t in d.token_ids]


def greedy_reference(model: Llama, prompt: list[int], n: int) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy decoding by the full forward over the whole sequence at every step (no cache)."""
    ids, logprobs = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids]))[0, -1]
            logprobs.append(torch.log_softmax(logits, -1))
            ids.append(int(logits[:N_VOCAB].argmax()))
    return ids[len(prompt) :], logprobs


class Forced:
    """A grammar with one sentence: exactly `ids`, in order."""

    def __init__(self, ids: list[int], vocab_size: int = 512) -> None:
        self.ids, self.i, self.vocab_size = ids, 0, vocab_size

    def allowed(self) -> torch.Tensor:
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        mask[self.ids[self.i]] = True
        return mask

    def advance(self, token_id: int) -> None:
        assert token_id == self.ids[self.i]
        self.i += 1

    def is_finished(self) -> bool:
        return self.i == len(self.ids)


class Slow:
    """No constraint at all, but 2 ms per token: a request that is surely still running when the
    test acts on it, however fast the machine."""

    def allowed(self) -> None:
        time.sleep(0.002)

    def advance(self, token_id: int) -> None:
        pass

    def is_finished(self) -> bool:
        return False


def byte_ids(tok: Tokenizer, text: str) -> list[int]:
    return [tok.token_to_id(f"<0x{b:02X}>") for b in text.encode("utf-8")]


# ---------------------------------------------------------------------------------------------


def test_from_dir_reads_the_model_and_its_tokenizer(tiny_model_dir: Path) -> None:
    e = NativeEngine.from_dir(tiny_model_dir, max_batch=2, threads=torch.get_num_threads())
    try:
        hf_config = json.loads((tiny_model_dir / "config.json").read_text())
        assert e.max_context == hf_config["max_position_embeddings"] == e.model.cfg.max_seq_len
        assert (e.model_id, e.n_vocab, e.model_vocab_size, e.eos_token_ids) == ("model", 405, 512, [2])
        ids = e.encode("日本語😀", add_bos=True)
        assert ids[0] == 1 and e.encode("日本語😀", add_bos=False) == ids[1:]
        assert e.decode(ids) == "日本語😀"
        assert e.stats() == {
            "running": 0.0,
            "waiting": 0.0,
            "kv_slots_used": 0.0,
            "kv_slots_total": 2.0,
            "requests_finished": 0.0,
            "requests_cancelled": 0.0,
            "requests_failed": 0.0,
            "tokens_generated": 0.0,
        }
    finally:
        run(e.shutdown())


def test_greedy_equals_repeated_full_forward_with_logprobs(model, tok, engines) -> None:
    e = engines(model, tok, max_batch=4)
    for text in PROMPTS[:3]:
        prompt = tok.encode(text).ids
        deltas = run(collect(e, request(prompt, max_tokens=12, temperature=0, logprobs=3)))
        want, ref_lp = greedy_reference(model, prompt, 12)
        assert ids_of(deltas) == want
        assert deltas[-1].finish_reason == "length" and deltas[-1].completion_tokens == 12
        assert deltas[-1].prompt_tokens == len(prompt)
        for d, lp, token in zip(deltas, ref_lp, want, strict=True):
            (got,) = d.logprobs
            assert got.token_id == token and got.token == tok.id_to_token(token).replace("▁", " ")
            assert got.logprob == pytest.approx(float(lp[token]), abs=1e-4)
            assert [i for i, _, _ in got.top] == lp[:N_VOCAB].topk(3).indices.tolist()
            assert [v for _, _, v in got.top] == pytest.approx(lp[:N_VOCAB].topk(3).values.tolist(), abs=1e-4)


def test_eight_concurrent_requests_give_what_each_gives_alone(model, tok, engines) -> None:
    e = engines(model, tok, max_batch=16)
    reqs = [
        request(tok.encode(t).ids, f"r{i}", max_tokens=6 + 3 * i, temperature=0)
        for i, t in enumerate(PROMPTS)
    ]
    alone = [ids_of(run(collect(e, r))) for r in reqs]

    async def together():
        return await asyncio.gather(*(collect(e, r) for r in reqs))

    # different lengths: rows leave the batch at different steps and leave holes behind them
    assert [ids_of(d) for d in run(together())] == alone
    assert alone[0] == greedy_reference(model, reqs[0].prompt_ids, 6)[0]
    assert e.stats()["kv_slots_used"] == 0 and e.stats()["requests_finished"] == 16


def test_same_seed_same_output_in_any_company_other_seed_other_output(model, tok, engines) -> None:
    e = engines(model, tok, max_batch=8)
    prompt = tok.encode("日本語の文書です。").ids

    def sampled(seed: int) -> GenerationRequest:
        return request(prompt, f"s{seed}", max_tokens=24, temperature=1.0, seed=seed)

    a = ids_of(run(collect(e, sampled(7))))
    assert ids_of(run(collect(e, sampled(7)))) == a
    assert ids_of(run(collect(e, sampled(8)))) != a

    async def in_company():
        others = [
            request(tok.encode(t).ids, f"o{i}", max_tokens=10, temperature=0.8) for i, t in enumerate(PROMPTS)
        ]
        return await asyncio.gather(collect(e, sampled(7)), *(collect(e, r) for r in others))

    assert ids_of(run(in_company())[0]) == a


def test_a_new_request_starts_and_ends_while_a_long_one_runs(model, tok, engines) -> None:
    e = engines(model, tok, max_batch=4)
    events: list[tuple[str, str | None]] = []

    async def consume(req: GenerationRequest, started: asyncio.Event | None = None) -> None:
        async for d in e.generate(req):
            events.append((req.request_id, d.finish_reason))
            if started is not None and len(events) == 5:
                started.set()

    async def main():
        started = asyncio.Event()
        long_req = request(tok.encode("abc").ids, "long", max_tokens=200, constraint=Slow())
        long = asyncio.create_task(consume(long_req, started))
        await started.wait()
        await consume(request(tok.encode("x").ids, "short", max_tokens=3))
        await long

    run(main())
    order = [rid for rid, _ in events]
    short_end = events.index(("short", "length"))
    assert order.index("short") > 0 and "long" in order[short_end:]  # joined mid-run, left before it ended
    assert order.count("long") == 200 and events[-1] == ("long", "length")


def test_cancelling_frees_the_slot_and_leaves_the_others_alone(model, tok, engines) -> None:
    e = engines(model, tok, max_batch=2)
    other = request(tok.encode("東京").ids, "other", max_tokens=40, temperature=0)
    alone = ids_of(run(collect(e, other)))

    async def main():
        gen = e.generate(request(tok.encode("abc").ids, "gone", max_tokens=250, constraint=Slow()))
        other_task = asyncio.create_task(collect(e, other))
        for _ in range(3):
            await gen.__anext__()
        await gen.aclose()  # what the HTTP layer does when the client disconnects
        deltas = await other_task
        for _ in range(500):
            if e.stats()["requests_cancelled"] == 1:
                break
            await asyncio.sleep(0.01)
        return deltas

    assert ids_of(run(main())) == alone
    stats = e.stats()
    assert stats["requests_cancelled"] == 1 and stats["kv_slots_used"] == 0 and stats["running"] == 0


def test_a_cancelled_request_gives_its_only_slot_to_the_next(model, tok, engines) -> None:
    e = engines(model, tok, max_batch=1)

    def slow(rid: str) -> GenerationRequest:
        return request(tok.encode("abc").ids, rid, max_tokens=250, constraint=Slow())

    def quick(rid: str) -> GenerationRequest:
        return request(tok.encode("x").ids, rid, max_tokens=4)

    async def main():
        gen = e.generate(slow("closed"))
        await gen.__anext__()
        waiting = asyncio.create_task(collect(e, quick("next")))
        await asyncio.sleep(0.05)
        assert not waiting.done() and e.stats()["waiting"] == 1  # the only slot is taken
        await gen.aclose()  # a streaming client went away
        first = await waiting
        task = asyncio.create_task(collect(e, slow("task")))
        while e.stats()["running"] == 0:
            await asyncio.sleep(0.001)
        task.cancel()  # a non-streaming request whose client went away: its task is cancelled
        with pytest.raises(asyncio.CancelledError):
            await task
        return first, await collect(e, quick("after"))

    for deltas in run(main()):
        assert deltas[-1].finish_reason == "length" and len(ids_of(deltas)) == 4
    assert e.stats()["requests_cancelled"] == 2 and e.stats()["requests_finished"] == 2


def test_byte_fallback_japanese_and_emoji_stream_whole_characters(tiny_model_dir: Path, tok, engines) -> None:
    e = NativeEngine.from_dir(tiny_model_dir, max_batch=2)
    try:
        forced = byte_ids(tok, "日本語😀")  # 3 + 3 + 3 + 4 byte-fallback tokens, no learned ones
        req = request(
            e.encode("日本語で", add_bos=True), temperature=1.0, max_tokens=50, constraint=Forced(forced)
        )
        deltas = run(collect(e, req))
    finally:
        run(e.shutdown())
    assert ids_of(deltas) == forced
    assert not any("\ufffd" in d.text for d in deltas)
    assert [d.text for d in deltas if d.text] == ["日", "本", "語", "😀"]
    assert "".join(d.text for d in deltas) == e.decode(forced) == "日本語😀"
    assert deltas[-1].finish_reason == "stop" and deltas[-1].completion_tokens == 13  # the grammar finished


def test_stop_string_cuts_the_output(model, tok, engines) -> None:
    e = engines(model, tok)
    forced = tok.encode("hello world 日本語😀 again", add_special_tokens=False).ids
    for stop, want in [
        (["o w"], "hell"),
        (["zz", "語😀"], "hello world 日本"),
        (["😀"], "hello world 日本語"),
    ]:
        deltas = run(collect(e, request([1], max_tokens=60, stop=stop, constraint=Forced(forced))))
        text = "".join(d.text for d in deltas)
        assert text == want and deltas[-1].finish_reason == "stop"
        assert e.decode(ids_of(deltas)).startswith(want + stop[-1])  # the tokens up to the stop string
        assert not any("\ufffd" in d.text for d in deltas)


def test_max_tokens_is_length_and_stop_token_is_stop(model, tok, engines) -> None:
    e = engines(model, tok)
    prompt = tok.encode("abc").ids
    want, _ = greedy_reference(model, prompt, 8)
    deltas = run(collect(e, request(prompt, max_tokens=5, temperature=0)))
    assert ids_of(deltas) == want[:5] and deltas[-1].finish_reason == "length"
    assert deltas[-1].time_to_first_token_s > 0 and all(d.time_to_first_token_s is None for d in deltas[:-1])
    assert sum(d.finish_reason is not None for d in deltas) == 1
    eos = want[4]
    stopped = run(collect(e, request(prompt, max_tokens=8, temperature=0, stop_token_ids=[eos])))
    first = want.index(eos)
    assert ids_of(stopped) == want[:first] and stopped[-1].finish_reason == "stop"
    assert stopped[-1].completion_tokens == first + 1  # the stop token was generated: counted, not shown


def test_context_full_is_length(model, tok, engines) -> None:
    e = engines(model, tok)
    prompt = [1] + [260] * (e.max_context - 3)  # room for 2 tokens
    deltas = run(collect(e, request(prompt, max_tokens=50, temperature=0)))
    assert len(ids_of(deltas)) == 2 and deltas[-1].finish_reason == "length"
    full = run(collect(e, request([1] * e.max_context, max_tokens=5)))
    assert len(full) == 1 and full[0].completion_tokens == 0 and full[0].finish_reason == "length"


def test_echo_prompt_logprobs_match_the_full_forward(model, tok, engines) -> None:
    e = engines(model, tok)
    prompt = tok.encode("日本語の文書です。 hello").ids
    with torch.no_grad():
        ref = torch.log_softmax(model(torch.tensor([prompt]))[0], -1)  # (T, V)
    # lm-evaluation-harness loglikelihood: echo=True, logprobs=1, max_tokens=0
    (only,) = run(collect(e, request(prompt, max_tokens=0, prompt_logprobs=True, logprobs=1)))
    assert only.finish_reason == "length" and only.completion_tokens == 0 and only.token_ids == []
    assert only.prompt_tokens == len(prompt) and len(only.prompt_logprobs) == len(prompt)
    assert only.prompt_logprobs[0] is None
    for t in range(1, len(prompt)):
        lp = only.prompt_logprobs[t]
        assert lp.token_id == prompt[t]
        assert lp.logprob == pytest.approx(float(ref[t - 1, prompt[t]]), abs=1e-4)
        assert lp.top[0][0] == int(ref[t - 1, :N_VOCAB].argmax())  # lm-eval's is_greedy reads this
    # with generation too: prompt logprobs come once, on the first delta
    deltas = run(collect(e, request(prompt, max_tokens=3, prompt_logprobs=True)))
    assert len(deltas[0].prompt_logprobs) == len(prompt) and all(
        d.prompt_logprobs is None for d in deltas[1:]
    )


def test_padding_ids_past_the_tokenizer_are_never_sampled(model, tok, engines) -> None:
    padded = with_head_bias(model)
    with torch.no_grad():
        padded.lm_head.bias[N_VOCAB:] = 100.0  # the padding rows would win every step
    e = engines(padded, tok)
    for params in [dict(temperature=0), dict(temperature=1.0, seed=3), dict(temperature=2.0, top_p=0.5)]:
        deltas = run(collect(e, request(tok.encode("abc").ids, max_tokens=30, **params)))
        assert len(ids_of(deltas)) == 30 and max(ids_of(deltas)) < N_VOCAB


def with_head_bias(model: Llama) -> Llama:
    other = copy.deepcopy(model)
    other.lm_head = nn.Linear(model.cfg.dim, model.cfg.vocab_size, bias=True)
    with torch.no_grad():
        other.lm_head.weight.copy_(model.lm_head.weight)
        other.lm_head.bias.zero_()
    return other


class Broken(Forced):
    def allowed(self) -> torch.Tensor:
        raise RuntimeError("grammar bug")


def test_a_failing_request_fails_alone_and_the_engine_keeps_serving(model, tok, engines) -> None:
    e = engines(model, tok, max_batch=4)
    good = request(tok.encode("東京").ids, "good", max_tokens=20, temperature=0)
    alone = ids_of(run(collect(e, good)))

    async def main():
        bad = collect(e, request(tok.encode("abc").ids, "bad", max_tokens=20, constraint=Broken([5])))
        return await asyncio.gather(collect(e, good), bad, return_exceptions=True)

    ok, err = run(main())
    assert ids_of(ok) == alone
    assert isinstance(err, EngineError) and "grammar bug" in str(err) and "bad" in str(err)
    assert ids_of(run(collect(e, good))) == alone
    assert e.stats()["requests_failed"] == 1 and e.stats()["kv_slots_used"] == 0


def test_a_request_whose_logits_overflow_fails_alone(model, tok, engines) -> None:
    poisoned = copy.deepcopy(model)
    with torch.no_grad():
        poisoned.embed_tokens.weight[300] = float("inf")  # any prompt holding id 300 computes NaN
    e = engines(poisoned, tok, max_batch=4)
    good = request(tok.encode("東京").ids, "good", max_tokens=20, temperature=0)
    alone = ids_of(run(collect(e, good)))

    async def main():
        bad = collect(e, request([1, 300, 301], "nan", max_tokens=20, temperature=1.0))
        return await asyncio.gather(collect(e, good), bad, return_exceptions=True)

    ok, err = run(main())
    assert ids_of(ok) == alone
    assert isinstance(err, EngineError) and "non-finite logits" in str(err)


def test_bfloat16_weights_serve(tiny_model_dir: Path) -> None:
    e = NativeEngine.from_dir(tiny_model_dir, max_batch=2, dtype=torch.bfloat16)
    try:
        assert e.model.embed_tokens.weight.dtype == torch.bfloat16
        deltas = run(collect(e, request(e.encode("日本", add_bos=True), max_tokens=5, logprobs=1)))
    finally:
        run(e.shutdown())
    assert len(ids_of(deltas)) == 5 and all(d.logprobs[0].logprob <= 0 for d in deltas)


def test_invalid_requests_are_refused_before_they_queue(model, tok, engines) -> None:
    e = engines(model, tok)
    too_long = [1] * (e.max_context + 1)
    for prompt, match in [([], "empty prompt"), (too_long, "longer than the context"), ([1, 512], "0..511")]:
        with pytest.raises(InvalidRequest, match=match):
            run(collect(e, request(prompt)))
    assert e.stats()["waiting"] == 0


def test_shutdown_finishes_in_flight_and_refuses_new(model, tok) -> None:
    e = NativeEngine(model, tok, model_id="tiny", max_batch=2)

    async def main():
        async def consume(rid: str) -> list[Delta]:
            return await collect(e, request(tok.encode("abc").ids, rid, max_tokens=30))

        tasks = [asyncio.create_task(consume(f"r{i}")) for i in range(3)]  # one of them waits for a slot
        await asyncio.sleep(0.01)
        await e.shutdown()
        with pytest.raises(EngineClosed, match="shutting down"):
            await collect(e, request([1]))
        return await asyncio.gather(*tasks)

    for deltas in run(main()):
        assert deltas[-1].finish_reason == "length" and len(ids_of(deltas)) == 30
    assert not e._thread.is_alive()
