"""The upstream backend against a real HTTP server on loopback that misbehaves on request.

The fake upstream picks its behaviour from the request's `model`: an answer, a 5xx, an OpenAI
error, a body that is not JSON, a stream that ends properly, one cut before `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from kiban.serve.context import RequestContext
from kiban.serve.protocol import ApiError, ChatCompletionRequest, CompletionRequest
from kiban.serve.upstream import DONE, UpstreamBackend

ANSWER = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 0,
    "model": "ok",
    "choices": [{"index": 0, "text": "こんにちは", "finish_reason": "length", "logprobs": None}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}
SEEN: list[dict] = []  # request bodies and headers the fake upstream received


def _chunk(text: str | None, *, usage: dict | None = None, finish: str | None = None) -> bytes:
    choices = [] if text is None else [{"index": 0, "text": text, "finish_reason": finish}]
    event = {"id": "c", "object": "text_completion", "choices": choices, "usage": usage}
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


async def fake_upstream(scope: dict, receive, send) -> None:  # noqa: ANN001
    if scope["type"] != "http":
        return
    raw, more = b"", True
    while more:
        message = await receive()
        raw += message.get("body", b"")
        more = message.get("more_body", False)
    body = json.loads(raw) if raw else {}
    SEEN.append({"path": scope["path"], "body": body, "headers": dict(scope["headers"])})
    model = body.get("model")

    async def answer(status: int, payload: bytes, ctype: bytes = b"application/json") -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
        await send({"type": "http.response.body", "body": payload})

    if scope["path"] == "/v1/models":
        await answer(200, json.dumps({"object": "list", "data": [{"id": "ok", "object": "model"}]}).encode())
    elif model == "boom":
        await answer(500, b"Internal Server Error", b"text/plain")
    elif model == "refuses":
        err = {
            "error": {
                "message": "max_tokens too large",
                "type": "invalid_request_error",
                "param": "max_tokens",
            }
        }
        await answer(400, json.dumps(err).encode())
    elif model == "not-json":
        await answer(200, b"<html>proxy login</html>", b"text/html")
    elif model == "stalls":
        await asyncio.sleep(3)
        await answer(200, json.dumps(ANSWER, ensure_ascii=False).encode())
    elif body.get("stream"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        pieces = [_chunk("こん"), _chunk("にちは", finish="length"), _chunk(None, usage=ANSWER["usage"])]
        if model != "cut":
            pieces.append(b"data: [DONE]\n\n")
        for piece in pieces:
            if model == "slow":  # the whole stream takes longer than the client's timeout, no gap does
                await asyncio.sleep(0.3)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await answer(200, json.dumps(ANSWER, ensure_ascii=False).encode())


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fake_upstream, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the fake upstream did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)


def ctx() -> RequestContext:
    return RequestContext("req-1", "/v1/completions", None)


def run(url: str, work, timeout_s: float = 10) -> object:  # noqa: ANN001
    """Run `work(backend)` in a fresh loop with a fresh backend (a session belongs to one loop)."""

    async def main() -> object:
        backend = UpstreamBackend(url, api_key="upstream-secret", timeout_s=timeout_s)
        try:
            return await work(backend)
        finally:
            await backend.shutdown()

    return asyncio.run(main())


def test_an_answer_is_passed_through_and_accounted(upstream_url: str) -> None:
    c = ctx()
    req = CompletionRequest(model="ok", prompt="挨拶", max_tokens=2, user_tag="x")  # an unknown field
    result = run(upstream_url, lambda b: b.completions(req, c))
    assert result == ANSWER
    assert (c.prompt_tokens, c.completion_tokens, c.output_text) == (3, 2, "こんにちは")
    assert c.finish_reasons == ["length"] and c.ttft_s is not None
    sent = SEEN[-1]
    assert sent["body"]["user_tag"] == "x"  # forwarded: the upstream may know it
    assert sent["headers"][b"authorization"] == b"Bearer upstream-secret"


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [("boom", 502, "upstream_error"), ("refuses", 400, None), ("not-json", 502, None)],
)
def test_upstream_errors_keep_openai_shape(
    upstream_url: str, model: str, status: int, code: str | None
) -> None:
    req = CompletionRequest(model=model, prompt="x", max_tokens=2)
    with pytest.raises(ApiError) as e:
        run(upstream_url, lambda b: b.completions(req, ctx()))
    assert e.value.status == status
    if code:
        assert e.value.body()["error"]["code"] == code
    if model == "refuses":
        assert e.value.body()["error"]["param"] == "max_tokens"


def test_an_unreachable_upstream_is_a_502(upstream_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens once closed
    req = CompletionRequest(model="ok", prompt="x", max_tokens=2)
    with pytest.raises(ApiError) as e:
        run(dead, lambda b: b.completions(req, ctx()))
    assert e.value.status == 502 and e.value.body()["error"]["code"] == "upstream_unreachable"


async def _drain(backend: UpstreamBackend, req: ChatCompletionRequest | CompletionRequest, c: RequestContext):
    events = await backend.completions(req, c)
    return [e async for e in events]


def test_a_stream_is_relayed_with_usage_always_requested(upstream_url: str) -> None:
    c = ctx()
    req = CompletionRequest(model="ok", prompt="x", max_tokens=2, stream=True)
    events = run(upstream_url, lambda b: _drain(b, req, c))
    assert events[-1] == DONE
    assert "".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"]) == "こんにちは"
    assert all(e["choices"] for e in events[:-1])  # the usage-only chunk is not passed on unasked
    assert SEEN[-1]["body"]["stream_options"] == {"include_usage": True}
    assert (c.prompt_tokens, c.completion_tokens, c.output_text) == (3, 2, "こんにちは")


def test_a_stream_cut_before_done_is_an_error(upstream_url: str) -> None:
    c = ctx()
    req = CompletionRequest(model="cut", prompt="x", max_tokens=2, stream=True)
    with pytest.raises(ApiError) as e:
        run(upstream_url, lambda b: _drain(b, req, c))
    assert e.value.status == 502 and e.value.body()["error"]["code"] == "upstream_truncated"
    assert c.output_text == "こんにちは"  # what did arrive is still audited


def test_the_timeout_bounds_each_wait_not_the_whole_stream(upstream_url: str) -> None:
    """timeout_s 0.8: a stream of 4 chunks 0.3 s apart (1.2 s in all) goes through; an upstream that
    says nothing for 3 s is a 504."""
    c = ctx()
    slow = CompletionRequest(model="slow", prompt="x", max_tokens=2, stream=True)
    events = run(upstream_url, lambda b: _drain(b, slow, c), timeout_s=0.8)
    assert events[-1] == DONE and c.output_text == "こんにちは"
    stalls = CompletionRequest(model="stalls", prompt="x", max_tokens=2)
    with pytest.raises(ApiError) as e:
        run(upstream_url, lambda b: b.completions(stalls, ctx()), timeout_s=0.8)
    assert e.value.status == 504 and e.value.body()["error"]["code"] == "upstream_timeout"
