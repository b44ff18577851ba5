"""OpenAIBackend against a real `kiban serve` on loopback: the served checkpoint scores as the same
checkpoint loaded directly, and the backend talks to nothing but the endpoint it was given."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.serve_process import ServeProcess, create_key
from tests.no_network import guard, install_socket_guard, violations

from kiban.errors import ConfigError
from kiban.evaluate.api import GenerateRequest, LoglikelihoodRequest, RollingRequest
from kiban.evaluate.backends import BackendError, load_backend, parse_openai_spec
from kiban.evaluate.backends.local import LocalBackend, load_local
from kiban.evaluate.backends.openai import OpenAIBackend

TEXT = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。" * 6  # > one window

LOGLIKELIHOOD = [
    LoglikelihoodRequest("日本の首都は", "東京です"),
    LoglikelihoodRequest("日本の首都は ", "大阪"),
    LoglikelihoodRequest("", "the cat"),
    LoglikelihoodRequest("Q: 1+1=? A:", " 2"),
    LoglikelihoodRequest("Q: 1+1=? A:", " 3"),
    LoglikelihoodRequest(TEXT, "ねこ"),  # longer than the context: cut from the left
    LoglikelihoodRequest("猫", ""),  # nothing to score
]
GENERATE = [
    GenerateRequest("日本の首都は", (), 12),
    GenerateRequest("the cat", ("t",), 20),
    GenerateRequest(TEXT, ("。", "\n"), 16),
    GenerateRequest("こんにちは", ("a", "b", "c", "d", "e"), 10),  # more stop strings than the API takes
    GenerateRequest("a", (), 0),
]

# Every TCP connect this process makes while `_connects["on"]`: audit hooks cannot be removed, so
# this one is installed once and switched (PEP 578).
_connects: dict[str, Any] = {"on": False, "seen": []}


def _record_connect(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _connects["on"]:
        _connects["seen"].append(args[1])


sys.addaudithook(_record_connect)
install_socket_guard()


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    state = tmp_path_factory.mktemp("eval-serve")
    key = create_key(state, "completions,tokenize,models")
    proc = ServeProcess(["serve", str(tiny_model_dir)], state).wait_ready()
    proc.key = key  # type: ignore[attr-defined]
    yield proc
    assert proc.stop() in (0, -signal.SIGTERM), proc.output()


@pytest.fixture
def served(server: ServeProcess, only_the_endpoint: None) -> Iterator[OpenAIBackend]:
    """A new backend per test, made inside the guard: its connections are all seen."""
    backend = OpenAIBackend(f"{server.base}/v1", "model", server.key, batch_size=3)  # type: ignore[attr-defined]
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def local(tiny_model_dir: Path) -> LocalBackend:
    # the served backend's windows are the context minus 2 (room for the echo's generated token)
    return load_local(tiny_model_dir, batch_size=4, max_length=256 - 2)


@pytest.fixture
def only_the_endpoint(server: ServeProcess) -> Iterator[None]:
    """Fail the test if anything connects anywhere but the server's host:port."""
    start = len(violations)
    _connects["seen"].clear()
    _connects["on"] = True
    try:
        with guard():
            yield
    finally:
        _connects["on"] = False
    refused = violations[start:]
    del violations[start:]
    assert not refused, f"the backend tried to reach the network: {refused}"
    endpoints = {tuple(a[:2]) for a in _connects["seen"]}
    assert endpoints <= {("127.0.0.1", server.port)}, endpoints


def test_loglikelihood_equals_the_checkpoint_loaded_directly(
    served: OpenAIBackend, local: LocalBackend, server: ServeProcess
) -> None:
    assert {tuple(a[:2]) for a in _connects["seen"]} == {("127.0.0.1", server.port)}  # the guard saw it
    assert served.max_length == local.max_length == 254
    for a, b in zip(served.loglikelihood(LOGLIKELIHOOD), local.loglikelihood(LOGLIKELIHOOD), strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert (a.is_greedy, a.n_tokens, a.truncated) == (b.is_greedy, b.n_tokens, b.truncated)
    assert served.loglikelihood(LOGLIKELIHOOD)[5].truncated


def test_rolling_equals_the_checkpoint_loaded_directly(served: OpenAIBackend, local: LocalBackend) -> None:
    requests = [RollingRequest(TEXT * 2), RollingRequest("the cat"), RollingRequest("")]
    ours, theirs = served.loglikelihood_rolling(requests), local.loglikelihood_rolling(requests)
    assert ours[0].n_tokens > 2 * served.max_length  # three windows
    for a, b in zip(ours, theirs, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.n_tokens == b.n_tokens


def test_greedy_generation_equals_the_checkpoint_loaded_directly(
    served: OpenAIBackend, local: LocalBackend
) -> None:
    for a, b in zip(served.generate_until(GENERATE), local.generate_until(GENERATE), strict=True):
        # The server decodes new tokens after the prompt's (as vLLM, and lm-eval's local-completions
        # returns that text); HFLM decodes them alone, and this tokenizer's decoder then drops one
        # leading space. Same tokens; llm-jp-eval's metrics strip the prediction either way.
        assert a.text == b.text or (a.text.startswith(" ") and a.text[1:] == b.text), (a.text, b.text)
        assert a.truncated == b.truncated
    assert all(s not in served.generate_until(GENERATE)[3].text for s in "abcde")


def test_load_backend_takes_the_key_from_the_environment(
    server: ServeProcess, monkeypatch: pytest.MonkeyPatch, only_the_endpoint: None
) -> None:
    monkeypatch.setenv("KIBAN_EVAL_API_KEY", server.key)  # type: ignore[attr-defined]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-this-one")
    backend = load_backend(f"openai:{server.base}/v1#model", batch_size=2)
    assert isinstance(backend, OpenAIBackend)
    assert backend.loglikelihood([LoglikelihoodRequest("猫", "は")])[0].n_tokens == 1
    info = backend.describe()
    assert info["kind"] == "openai" and info["url"] == f"{server.base}/v1"
    assert server.key not in json.dumps(info)  # type: ignore[attr-defined]


def test_a_local_tokenizer_gives_the_same_tokens(
    server: ServeProcess, served: OpenAIBackend, tiny_model_dir: Path
) -> None:
    offline = OpenAIBackend(
        f"{server.base}/v1",
        "model",
        server.key,  # type: ignore[attr-defined]
        batch_size=2,
        tokenizer_dir=tiny_model_dir,
        max_length=254,
    )
    for a, b in zip(offline.loglikelihood(LOGLIKELIHOOD), served.loglikelihood(LOGLIKELIHOOD), strict=True):
        assert (a.logprob, a.n_tokens) == (pytest.approx(b.logprob, abs=1e-6), b.n_tokens)
    assert len(offline.describe()["tokenizer_sha256"]) == 64


def test_server_errors_surface_with_status_and_message(server: ServeProcess) -> None:
    with pytest.raises(BackendError, match="404 The model 'nope' does not exist"):
        OpenAIBackend(f"{server.base}/v1", "nope", server.key, batch_size=1)  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="401"):
        OpenAIBackend(f"{server.base}/v1", "model", "wrong-key", batch_size=1)
    with pytest.raises(BackendError, match="ConnectError"):
        OpenAIBackend("http://127.0.0.1:9/v1", "model", None, batch_size=1, timeout_s=5)


# --- without a server ---------------------------------------------------------------------------


def _fake_server(replies: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return replies.pop(0)

    return httpx.MockTransport(handle)


def test_rate_limits_are_retried_after_retry_after() -> None:
    tokenize = httpx.Response(200, json={"tokens": [1], "count": 1, "max_model_len": 64})
    limited = httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {"message": "slow down"}})
    seen: list[httpx.Request] = []
    backend = OpenAIBackend(
        "http://upstream:8000/v1",
        "m",
        "k",
        batch_size=1,
        transport=_fake_server([limited, tokenize], seen),
    )
    assert backend.max_length == 62 and backend.bos_id == 1
    assert [r.url.path for r in seen] == ["/tokenize"] * 2
    assert seen[0].headers["authorization"] == "Bearer k"
    assert json.loads(seen[0].content) == {"model": "m", "prompt": "", "add_special_tokens": True}


def test_an_error_body_becomes_the_message() -> None:
    failure = httpx.Response(500, json={"error": {"message": "engine failed on this request"}})
    with pytest.raises(BackendError, match="500 engine failed on this request"):
        OpenAIBackend(
            "http://upstream:8000/v1", "m", None, batch_size=1, transport=_fake_server([failure], [])
        )
    with pytest.raises(BackendError, match="502 <html>bad gateway"):
        OpenAIBackend(
            "http://upstream:8000/v1",
            "m",
            None,
            batch_size=1,
            max_retries=0,
            transport=_fake_server([httpx.Response(502, text="<html>bad gateway")], []),
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("openai:http://127.0.0.1:8000/v1", "name the served model after '#'"),
        ("openai:127.0.0.1:8000/v1#m", "must be http"),
        ("openai:#m", "must be http"),
    ],
)
def test_openai_specs_are_checked(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_openai_spec(spec)
