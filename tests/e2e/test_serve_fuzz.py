"""`kiban serve` fuzzed from its own OpenAPI document with schemathesis, against a real server process.

schemathesis generates requests for every operation of GET /openapi.json (valid ones and, in its
negative mode, ones that break the schema) and sends them with an admin key; every response must
be no 5xx, have a status the document declares, and match the declared schema; afterwards the
audit log must still verify. The tiny model of
tests/conftest.py makes generation cheap; examples are capped and derandomized so the run is the
same every time and stays well under two minutes.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.core.failures import FailureGroup

from tests.conftest import run_kiban
from tests.e2e.serve_process import ServeProcess, create_key

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
EXAMPLES = 100
"""Per operation and generation mode."""


@pytest.fixture(scope="module")
def fuzz_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("serve-fuzz")
    key = create_key(state, "admin")
    # max_tokens capped at 64, so that a fuzzed request costs a few ms whatever it asks for
    proc = ServeProcess(["serve", str(tiny_model_dir), "--set", "limits.max_tokens=64"], state)
    proc.wait_ready()
    proc.key = key  # type: ignore[attr-defined]
    proc.model = tiny_model_dir.name  # type: ignore[attr-defined]
    yield proc
    assert proc.stop() in (0, -signal.SIGTERM), proc.output()
    verified = run_kiban("audit", "verify", "--state", str(state))  # the fuzzing left the chain intact
    assert "intact" in verified.stdout


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ServeProcess):
    auth = {"Authorization": f"Bearer {fuzz_server.key}"}  # type: ignore[attr-defined]
    document = (
        httpx.get(f"{fuzz_server.base}/openapi.json", headers=auth, timeout=30).raise_for_status().json()
    )
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=fuzz_server.base, headers=auth)
    return schema


def served_model(case: schemathesis.Case, model: str, user_turn: bool) -> schemathesis.Case:
    """Name the served model wherever a string names one, so requests reach the engine instead of
    stopping at 404 model_not_found (a non-string `model` of a negative case is left broken); with
    `user_turn`, make a list of messages one real user turn (the schema allows any objects, which the
    chat template refuses with 400 before the engine sees them)."""
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = model
    if user_turn and isinstance(case.body, dict) and isinstance(case.body.get("messages"), list):
        first = case.body["messages"][0] if case.body["messages"] else {}
        content = first.get("content") if isinstance(first, dict) else None
        case.body["messages"] = [
            {"role": "user", "content": content if isinstance(content, str) else "こんにちは"}
        ]
    if case.path_parameters and "model_id" in case.path_parameters:
        case.path_parameters["model_id"] = model
    return case


# schemathesis.pytest.from_fixture would make one subtest per operation, but it reads
# `request.node._nodeid`, which pytest 9 no longer has; so each operation gets its own Hypothesis
# test here, built from `APIOperation.as_strategy`, and the failures are gathered by operation.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_openapi_operations(api_schema, fuzz_server: ServeProcess, mode: GenerationMode) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9, [op.label for op in operations]
    statuses: dict[str, Counter[int]] = {op.label: Counter() for op in operations}
    failures = {}
    for operation in operations:
        failure = fuzz_operation(operation, mode, fuzz_server.model, statuses[operation.label])  # type: ignore[attr-defined]
        if failure is not None:
            failures[operation.label] = failure
    print(f"{mode.value}: statuses by operation: {statuses}")
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def fuzz_operation(operation, mode: GenerationMode, model: str, statuses: Counter[int]) -> str | None:
    """Run the checks on EXAMPLES generated requests of `operation`; the failure found, or None."""
    cases = operation.as_strategy(generation_mode=mode)

    @given(case=cases.flatmap(lambda c: st.booleans().map(lambda turn: served_model(c, model, turn))))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=CHECKS, timeout=30)
        statuses[response.status_code] += 1

    try:
        check()
    except Unsatisfiable:  # nothing to break: no parameters, or only a free-form string path parameter
        assert mode == GenerationMode.NEGATIVE, operation.label
    except (Exception, FailureGroup) as e:  # noqa: BLE001 - reported with the other operations'
        return str(e)
    return None


TINY = [("temperature", 1e-40), ("temperature", 5e-324), ("top_p", 5e-324), ("top_p", 1e-300)]


@pytest.mark.parametrize("route", ["/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tiny_temperature_and_top_p(fuzz_server: ServeProcess, route: str, stream: bool) -> None:
    """The schema allows any temperature ≥ 0 and top_p > 0; a tiny one must not be a server error."""
    auth = {"Authorization": f"Bearer {fuzz_server.key}"}  # type: ignore[attr-defined]
    body: dict = {"model": fuzz_server.model, "max_tokens": 4, "stream": stream}  # type: ignore[attr-defined]
    body.update(
        {"prompt": "abc"}
        if route == "/v1/completions"
        else {"messages": [{"role": "user", "content": "abc"}]}
    )
    errors = []
    for name, value in TINY:
        r = httpx.post(f"{fuzz_server.base}{route}", json={**body, name: value}, headers=auth, timeout=30)
        if r.status_code >= 500 or '"server_error"' in r.text:  # a stream says it in an event
            errors.append(f"{name}={value}: {r.status_code} {r.text[-200:]}")
    assert not errors, "\n".join(errors)
