"""`kiban serve` as an operator runs it: binding rules, TLS, model integrity, the upstream gateway,
content logging with PII redaction, and a graceful drain on SIGTERM."""

from __future__ import annotations

import datetime
import json
import shutil
import signal
import ssl
import threading
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import run_kiban
from tests.e2e.serve_process import ServeProcess, create_key

pytestmark = pytest.mark.slow


def test_non_loopback_without_tls_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    proc = run_kiban("serve", str(tiny_model_dir), "--host", "0.0.0.0", "--state", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "--host 0.0.0.0 is not a loopback address" in proc.stderr and "--insecure" in proc.stderr
    proc = run_kiban("serve", str(tiny_model_dir), "--tls-cert", str(tmp_path / "c.pem"), check=False)
    assert proc.returncode == 2 and "--tls-key" in proc.stderr


def test_a_tampered_model_is_refused_naming_the_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    key = tmp_path / "signer.pem"
    signed = run_kiban("sign", str(model), "--key", str(key), "--new-key")
    assert "signed" in signed.stdout and (model / "manifest.sig").is_file()
    files = json.loads((model / "manifest.json").read_text())["files"]
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= set(files)
    cfg = json.loads((model / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-3  # a quiet edit: the model still loads, and behaves differently
    (model / "config.json").write_text(json.dumps(cfg))
    proc = run_kiban(
        "serve",
        str(model),
        "--trusted-key",
        str(tmp_path / "signer.pub.pem"),
        "--state",
        str(tmp_path / "s"),
        check=False,
    )
    assert proc.returncode == 2 and "config.json" in proc.stderr and "sha256" in proc.stderr


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_tls(tiny_model_dir: Path, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    state = tmp_path / "state"
    api_key = create_key(state, "models")
    args = ["serve", str(tiny_model_dir), "--tls-cert", str(cert), "--tls-key", str(key)]
    trust = ssl.create_default_context(cafile=str(cert))
    server = ServeProcess(args, state, scheme="https").wait_ready(verify=trust)
    try:
        r = httpx.get(
            f"{server.base}/v1/models", headers={"Authorization": f"Bearer {api_key}"}, verify=trust
        )
        assert r.status_code == 200 and r.json()["data"][0]["id"] == tiny_model_dir.name
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=5)  # no plain HTTP on a TLS port
    finally:
        server.stop()


def test_upstream_gateway_and_content_redaction(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A kiban gateway (content logging on) in front of another server: same answers, both audited."""
    inner_state, outer_state = tmp_path / "inner", tmp_path / "outer"
    inner_key = create_key(inner_state, "chat,completions,models")
    outer_key = create_key(outer_state, "chat,completions,models")
    inner = ServeProcess(["serve", str(tiny_model_dir)], inner_state).wait_ready()
    outer = None
    try:
        outer = ServeProcess(
            ["serve", "--upstream", f"{inner.base}/v1", "--set", "audit.log_content=true"],
            outer_state,
            env={"KIBAN_UPSTREAM_API_KEY": inner_key},
        ).wait_ready()
        direct = openai.OpenAI(base_url=f"{inner.base}/v1", api_key=inner_key, max_retries=0)
        gated = openai.OpenAI(base_url=f"{outer.base}/v1", api_key=outer_key, max_retries=0)
        assert [m.id for m in gated.models.list().data] == [tiny_model_dir.name]
        ask = dict(
            model=tiny_model_dir.name,
            messages=[
                {"role": "user", "content": "山田太郎です。電話は090-1234-5678、メールはtaro@example.co.jp"}
            ],
            max_tokens=8,
            temperature=0,
        )
        want = direct.chat.completions.create(**ask).choices[0].message.content
        assert gated.chat.completions.create(**ask).choices[0].message.content == want
        streamed = "".join(
            ch.choices[0].delta.content or ""
            for ch in gated.chat.completions.create(**ask, stream=True)
            if ch.choices
        )
        assert streamed == want
        with pytest.raises(openai.AuthenticationError):  # the gateway's keys, not the upstream's
            openai.OpenAI(base_url=f"{outer.base}/v1", api_key=inner_key, max_retries=0).models.list()
        with pytest.raises(openai.NotFoundError):
            gated.chat.completions.create(**{**ask, "model": "not-there"})
    finally:
        if outer is not None:
            outer.stop()
        inner.stop()
    records = [json.loads(line) for line in (outer_state / "audit.jsonl").read_text().splitlines()]
    chats = [r for r in records if r.get("route") == "/v1/chat/completions" and r.get("status") == 200]
    assert len(chats) == 2 and all(r["completion_tokens"] >= 1 for r in chats)
    prompt = chats[0]["content"]["prompt"]
    assert "090-1234-5678" not in prompt and "taro@example.co.jp" not in prompt  # redacted before disk
    assert "電話" in prompt
    assert "intact" in run_kiban("audit", "verify", "--state", str(outer_state)).stdout


def test_sigterm_drains_in_flight_streams(tiny_model_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = create_key(state, "completions,models")
    server = ServeProcess(["serve", str(tiny_model_dir)], state).wait_ready()
    body = {"model": tiny_model_dir.name, "prompt": "あ", "max_tokens": 200, "stream": True, "seed": 1}
    events: list[str] = []
    first = threading.Event()

    def stream() -> None:
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.stream("POST", f"{server.base}/v1/completions", json=body, headers=auth, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    first.set()

    t = threading.Thread(target=stream)
    t.start()
    assert first.wait(60)
    server.proc.send_signal(signal.SIGTERM)  # mid-stream
    t.join(60)
    assert events[-1] == "[DONE]"  # the stream was allowed to finish
    finish = [json.loads(e)["choices"][0]["finish_reason"] for e in events[:-1] if json.loads(e)["choices"]]
    assert finish[-1] in ("length", "stop")
    assert server.stop() in (0, -signal.SIGTERM)
    records = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    assert any(r.get("route") == "/v1/completions" and r.get("status") == 200 for r in records)


def test_an_answered_request_survives_a_kill(tiny_model_dir: Path, tmp_path: Path) -> None:
    """SIGKILL right after the response: its audit record is already on disk, and the chain verifies."""
    state = tmp_path / "state"
    key = create_key(state, "completions,models")
    server = ServeProcess(["serve", str(tiny_model_dir)], state).wait_ready()
    auth = {"Authorization": f"Bearer {key}"}
    body = {"model": tiny_model_dir.name, "prompt": "あい", "max_tokens": 4}
    ids = [
        httpx.post(f"{server.base}/v1/completions", json=body, headers=auth).headers["x-request-id"]
        for _ in range(3)
    ]
    server.stop(signal.SIGKILL)
    records = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    assert set(ids) <= {r.get("request_id") for r in records}
    assert "intact" in run_kiban("audit", "verify", "--state", str(state)).stdout
