"""`kiban serve` end to end: a real server process on loopback, driven by the official `openai` SDK.

The model is the tiny random-weight Llama of tests/conftest.py (real tokenizer with byte fallback,
real weights on disk): its text is noise, but every mechanism is the real one.
"""

from __future__ import annotations

import json
import math
import signal
import threading
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import build_tiny_model, run_kiban
from tests.e2e.serve_process import ServeProcess, create_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 1,024-token context: the tool preamble alone is ~600 byte-fallback tokens."""
    return build_tiny_model(tmp_path_factory.mktemp("serve-model") / "tiny-ja", max_seq_len=1024)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("serve-state")
    keys = {
        "all": create_key(state, "chat,completions,models,tokenize"),
        "admin": create_key(state, "admin"),
        "models_only": create_key(state, "models"),
        "other_model": create_key(state, "chat,completions,models", "--models", "someone-else"),
        "slow": create_key(state, "chat,models", "--rpm", "2"),
    }
    proc = ServeProcess(["serve", str(model_dir), "--set", "limits.max_request_bytes=65536"], state)
    proc.wait_ready()
    proc.keys = keys  # type: ignore[attr-defined]
    proc.model = model_dir.name  # type: ignore[attr-defined]
    yield proc
    assert proc.stop() in (0, -signal.SIGTERM), proc.output()
    verified = run_kiban("audit", "verify", "--state", str(state))
    assert "intact" in verified.stdout


def client(server: ServeProcess, key: str = "all") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.keys[key], max_retries=0)  # type: ignore[attr-defined]


def audit_lines(server: ServeProcess) -> list[dict]:
    return [json.loads(line) for line in (server.state / "audit.jsonl").read_text().splitlines()]


# --- the API as the SDK uses it -----------------------------------------------------------------


def test_models(server: ServeProcess) -> None:
    models = client(server).models.list()
    assert [m.id for m in models.data] == [server.model]  # type: ignore[attr-defined]


def test_chat_and_usage_and_audit(server: ServeProcess) -> None:
    out = client(server).chat.completions.create(
        model=server.model,  # type: ignore[attr-defined]
        messages=[{"role": "system", "content": "日本語で答えて"}, {"role": "user", "content": "こんにちは"}],
        max_tokens=12,
        temperature=0,
    )
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens > 5 and 1 <= out.usage.completion_tokens <= 12
    record = [r for r in audit_lines(server) if r.get("route") == "/v1/chat/completions"][-1]
    assert record["status"] == 200 and record["completion_tokens"] == out.usage.completion_tokens
    assert len(record["prompt_sha256"]) == 64 and "content" not in record  # hashes only by default


def test_streaming_equals_non_streaming(server: ServeProcess) -> None:
    c = client(server)
    kwargs = dict(
        model=server.model, messages=[{"role": "user", "content": "日本語の文書"}], max_tokens=20, seed=7
    )  # type: ignore[attr-defined]
    full = c.chat.completions.create(**kwargs).choices[0].message.content
    chunks, usage = [], None
    for event in c.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}):
        if event.usage is not None:
            usage = event.usage
        for choice in event.choices:
            if choice.delta.content:
                chunks.append(choice.delta.content)
    assert "".join(chunks) == full
    assert usage is not None and usage.completion_tokens >= 1


def test_streaming_never_splits_a_character(server: ServeProcess) -> None:
    """Kanji and emoji the tiny tokenizer only has as byte-fallback tokens (<0xE6>…), forced by a schema."""
    words = ["漢字で書く😀", "絵文字🎌と記号", "東京→大阪"]
    schema = {
        "type": "object",
        "properties": {"w": {"enum": words}},
        "required": ["w"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}
    c = client(server)
    for seed in range(3):
        kwargs = dict(model=server.model, messages=[{"role": "user", "content": "一つ選んで"}], max_tokens=80)  # type: ignore[attr-defined]
        stream = c.chat.completions.create(**kwargs, response_format=fmt, seed=seed, stream=True)
        chunks = [ch.choices[0].delta.content for ch in stream if ch.choices and ch.choices[0].delta.content]
        assert all("\ufffd" not in chunk for chunk in chunks), chunks
        assert json.loads("".join(chunks))["w"] in words
        assert len(chunks) > 5  # really streamed, piece by piece


def test_seed_gives_the_same_output(server: ServeProcess) -> None:
    c = client(server)
    model = server.model  # type: ignore[attr-defined]

    def ask(seed: int) -> str:
        out = c.completions.create(model=model, prompt="あいう", max_tokens=16, seed=seed, temperature=2)
        return out.choices[0].text

    assert ask(1) == ask(1)
    assert len({ask(s) for s in range(4)}) > 1


def test_echo_logprobs_as_lm_evaluation_harness_asks(server: ServeProcess, model_dir: Path) -> None:
    """local-completions' loglikelihood request: token ids, echo, logprobs=1, max_tokens=1, temperature 0."""
    import torch

    from kiban.model.hf import load_hf

    c = client(server)
    auth = {"Authorization": f"Bearer {server.keys['all']}"}  # type: ignore[attr-defined]
    body = {"model": server.model, "prompt": "日本語の文書です"}  # type: ignore[attr-defined]
    ids = httpx.post(f"{server.base}/tokenize", json=body, headers=auth).json()["tokens"]
    out = c.completions.create(
        model=server.model, prompt=ids, echo=True, logprobs=1, max_tokens=1, temperature=0
    )  # type: ignore[attr-defined]
    lp = out.choices[0].logprobs
    assert len(lp.token_logprobs) == len(ids) + 1 and lp.token_logprobs[0] is None
    model = load_hf(model_dir).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0].float().log_softmax(-1)
    expected = [float(logits[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    assert all(
        math.isclose(a, b, abs_tol=1e-4)
        for a, b in zip(lp.token_logprobs[1 : len(ids)], expected, strict=True)
    )
    greedy = int(logits[-1].argmax())
    top = lp.top_logprobs[len(ids)]
    assert max(top.values()) == pytest.approx(float(logits[-1, greedy]), abs=1e-4)


def test_json_schema_output_always_validates(server: ServeProcess) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 6}, "count": {"type": "integer"}},
        "required": ["name", "count"],
        "additionalProperties": False,
    }
    c = client(server)
    for seed in range(3):
        out = c.chat.completions.create(
            model=server.model,  # type: ignore[attr-defined]
            messages=[{"role": "user", "content": "部品の名前と数をJSONで"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "part", "schema": schema, "strict": True},
            },
            max_tokens=120,
            seed=seed,
        )
        assert out.choices[0].finish_reason == "stop", out.choices[0]
        jsonschema.validate(json.loads(out.choices[0].message.content), schema)


def test_tool_calls(server: ServeProcess) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "move_to",
                "description": "ロボットを移動する",
                "parameters": {
                    "type": "object",
                    "properties": {"bin": {"type": "string", "enum": ["A", "B"]}},
                    "required": ["bin"],
                },
            },
        }
    ]
    out = client(server).chat.completions.create(
        model=server.model,  # type: ignore[attr-defined]
        messages=[{"role": "user", "content": "Bに置いて"}],
        tools=tools,
        tool_choice="required",
        max_tokens=150,
        seed=0,
    )
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "move_to" and json.loads(call.function.arguments)["bin"] in ("A", "B")


def test_tokenize_needs_the_tokenize_scope(server: ServeProcess) -> None:
    body = {"model": server.model, "prompt": "日本語"}  # type: ignore[attr-defined]
    ok = httpx.post(
        f"{server.base}/tokenize", json=body, headers={"Authorization": f"Bearer {server.keys['all']}"}
    )  # type: ignore[attr-defined]
    assert ok.status_code == 200 and ok.json()["count"] == len(ok.json()["tokens"]) >= 2
    no = httpx.post(
        f"{server.base}/tokenize",
        json=body,
        headers={"Authorization": f"Bearer {server.keys['models_only']}"},
    )  # type: ignore[attr-defined]
    assert no.status_code == 403 and no.json()["error"]["code"] == "scope_denied"


# --- refusals, in OpenAI's shape ------------------------------------------------------------------


def test_errors_have_openai_shape(server: ServeProcess) -> None:
    m = server.model  # type: ignore[attr-defined]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.base}/v1", api_key="kb-nope", max_retries=0).models.list()
    with pytest.raises(openai.PermissionDeniedError):
        client(server, "models_only").chat.completions.create(
            model=m, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.PermissionDeniedError):
        client(server, "other_model").chat.completions.create(
            model=m, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.NotFoundError):
        client(server).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as e:
        client(server).completions.create(model=m, prompt="あ" * 1100, max_tokens=10)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client(server).chat.completions.create(
            model=m, messages=[{"role": "user", "content": "x"}], temperature=7
        )
    assert e.value.body["param"] == "temperature"  # type: ignore[index]
    auth = {"Authorization": f"Bearer {server.keys['all']}"}  # type: ignore[attr-defined]
    r = httpx.post(
        f"{server.base}/v1/completions",
        content=b"{not json",
        headers={**auth, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(f"{server.base}/v1/completions", json={"model": m, "prompt": "x" * 70_000}, headers=auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    chunks = (b"x" * 8192 for _ in range(10))  # chunked: no Content-Length to refuse it by
    r = httpx.post(
        f"{server.base}/v1/completions", content=chunks, headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = httpx.get(f"{server.base}/v1/nothing-here", headers=auth)
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.post(
        f"{server.base}/v1/completions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 401  # no key: refused before anything is said about the body
    r = httpx.get(f"{server.base}/v1/models")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_rate_limit_answers_429_with_retry_after(server: ServeProcess) -> None:
    auth = {"Authorization": f"Bearer {server.keys['slow']}"}  # type: ignore[attr-defined]
    statuses = [httpx.get(f"{server.base}/v1/models", headers=auth) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[-1].headers["retry-after"]) >= 1
    assert statuses[-1].json()["error"]["type"] == "rate_limit_error"


def test_unknown_fields_are_logged_and_audited(server: ServeProcess) -> None:
    client(server).completions.create(
        model=server.model,
        prompt="a",
        max_tokens=1,
        extra_body={"mystery_knob": 3},  # type: ignore[attr-defined]
    )
    assert "mystery_knob" in server.output()
    record = [r for r in audit_lines(server) if r.get("route") == "/v1/completions"][-1]
    assert record["unknown_fields"] == ["mystery_knob"]


def test_metrics_need_admin_and_count_refusals(server: ServeProcess) -> None:
    r = httpx.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {server.keys['all']}"})  # type: ignore[attr-defined]
    assert r.status_code == 403
    r = httpx.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {server.keys['admin']}"})  # type: ignore[attr-defined]
    assert r.status_code == 200
    for name in (
        "kiban_requests_total",
        "kiban_refusals_total",
        "kiban_time_to_first_token_seconds",
        "kiban_queue_depth",
    ):
        assert name in r.text


def test_client_disconnect_is_audited_and_the_server_goes_on(server: ServeProcess) -> None:
    auth = {"Authorization": f"Bearer {server.keys['all']}"}  # type: ignore[attr-defined]
    body = {"model": server.model, "prompt": "あ", "max_tokens": 200, "stream": True, "temperature": 1}  # type: ignore[attr-defined]
    with httpx.stream("POST", f"{server.base}/v1/completions", json=body, headers=auth) as r:
        for _ in r.iter_lines():
            break  # one event, then hang up
    out = client(server).completions.create(model=server.model, prompt="い", max_tokens=3)  # type: ignore[attr-defined]
    assert out.choices[0].finish_reason in ("stop", "length")
    threading.Event().wait(0.5)
    assert any(r.get("status") == 499 for r in audit_lines(server))
