"""`kiban export` and `kiban serve MODEL.gguf` from the command line: the file, the clean HF
directory, and llama.cpp behind the real gateway (keys, streaming, audit) driven by the openai SDK."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import openai
import pytest

from tests.conftest import run_kiban
from tests.e2e.serve_process import ServeProcess, create_key

pytest.importorskip("llama_cpp", reason="needs kiban's edge extra: pip install 'kiban[edge]'")


def test_export_gguf_and_hf(trained_tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-q8_0.gguf"
    proc = run_kiban("export", str(trained_tiny_model_dir), "--quant", "q8_0", "--out", str(out))
    assert "tiny-q8_0.gguf.manifest.json" in proc.stdout and out.is_file()
    bad = run_kiban("export", str(trained_tiny_model_dir), "--quant", "q3", "--out", str(out), check=False)
    assert bad.returncode == 2 and "--quant" in bad.stderr
    bad = run_kiban("export", str(tmp_path / "nope"), "--out", str(tmp_path / "x.gguf"), check=False)
    assert bad.returncode == 2 and "nope" in bad.stderr

    hf = tmp_path / "hf"
    run_kiban(
        "export", str(trained_tiny_model_dir), "--format", "hf", "--dtype", "bfloat16", "--out", str(hf)
    )
    assert json.loads((hf / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert not (hf / "training_state").exists() and (hf / "README.md").is_file()
    assert "lineage ok" in run_kiban("lineage", str(hf), "--no-verify-sources").stdout
    again = run_kiban("export", str(trained_tiny_model_dir), "--format", "hf", "--out", str(hf), check=False)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_serve_a_gguf_file_behind_the_gateway(trained_tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "edge-q8_0.gguf"
    run_kiban("export", str(trained_tiny_model_dir), "--quant", "q8_0", "--out", str(model))
    state = tmp_path / "state"
    key = create_key(state, "chat,completions,models,tokenize")
    server = ServeProcess(["serve", str(model)], state).wait_ready()
    try:
        client = openai.OpenAI(base_url=f"{server.base}/v1", api_key=key, max_retries=0)
        assert [m.id for m in client.models.list()] == ["edge-q8_0"]
        ask = {
            "model": "edge-q8_0",
            "messages": [{"role": "user", "content": "日本の首都はどこですか？"}],
            "max_tokens": 40,
            "temperature": 0.9,
            "seed": 3,
        }
        chunks = []
        for event in client.chat.completions.create(
            **ask, stream=True, stream_options={"include_usage": True}
        ):
            if event.choices and event.choices[0].delta.content:
                chunks.append(event.choices[0].delta.content)
            if event.usage:
                usage = event.usage
        # a random model emits stray byte tokens (real U+FFFD); what must hold is that streaming
        # changes nothing: the chunks add up to the answer the same seed gives in one piece
        whole = client.chat.completions.create(**ask)
        assert len(chunks) > 3 and "".join(chunks) == whole.choices[0].message.content
        assert usage.completion_tokens == whole.usage.completion_tokens > 0
        one = client.completions.create(model="edge-q8_0", prompt="東京は", max_tokens=12, temperature=0)
        two = client.completions.create(model="edge-q8_0", prompt="東京は", max_tokens=12, temperature=0)
        assert one.choices[0].text == two.choices[0].text and one.usage.completion_tokens == 12
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{server.base}/v1", api_key="kb-nope-nope", max_retries=0).models.list()
    finally:
        assert server.stop() in (0, -signal.SIGTERM), server.output()
    assert "intact" in run_kiban("audit", "verify", "--state", str(state)).stdout
    records = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    assert any(r.get("route") == "/v1/chat/completions" and r.get("status") == 200 for r in records)
    assert any(r.get("status") == 401 for r in records)

    # one flipped bit in the weights: the server refuses to start, naming the file
    tampered = tmp_path / "t" / model.name
    tampered.parent.mkdir()
    shutil.copy(model, tampered)
    shutil.copy(
        model.with_name(model.name + ".manifest.json"), tampered.with_name(model.name + ".manifest.json")
    )
    data = bytearray(tampered.read_bytes())
    data[-64] ^= 1
    tampered.write_bytes(bytes(data))
    proc = run_kiban("serve", str(tampered), "--state", str(tmp_path / "s2"), check=False)
    assert proc.returncode == 2 and f"{tampered}: sha256" in proc.stderr
