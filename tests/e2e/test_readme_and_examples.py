"""Every kiban command in the README, every config in examples/, and the demo script, run for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith((".venv/bin/kiban ", "curl ")):
                commands.append(line)
    return commands


def _wait_for_port(port: int, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the README's server exited {server.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {timeout_s} s")


def test_readme_commands_run_in_order(tmp_path: Path, manpages_ja: list[Path]) -> None:
    """Each line runs in a shell as written (`.venv/bin/kiban` is this interpreter's kiban); a line
    ending in `&` is a server: started, waited for, and stopped with SIGTERM after the last line."""
    commands = readme_commands()
    assert len(commands) >= 4
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers: list[subprocess.Popen] = []
    try:
        for command in commands:
            line = command.replace(".venv/bin/kiban", f"{shlex.quote(sys.executable)} -m kiban.cli")
            line = line.replace("8000", str(port))
            if line.endswith("&"):
                servers.append(subprocess.Popen(["bash", "-c", f"exec {line[:-1]}"], cwd=tmp_path))
                _wait_for_port(port, servers[-1])
                continue
            proc = subprocess.run(
                ["bash", "-o", "pipefail", "-c", line],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    assert (tmp_path / "out" / "ja" / "manifest.json").is_file()
    again = json.loads((tmp_path / "out" / "again" / "manifest.json").read_text())
    assert again["inputs"][0]["path"].endswith("part-00000.parquet")
    merged = json.loads((tmp_path / "out" / "sft-merged" / "manifest.json").read_text())
    assert merged["kind"] == "checkpoint"
    assert (tmp_path / "out" / "tiny-q8_0.gguf").stat().st_size > 0


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("curate*.yaml")))
def test_every_curate_example_config_runs(tmp_path: Path, ja_tree: Path, example: str) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiban.cli",
            "curate",
            str(ja_tree),
            "--out",
            str(out),
            "--config",
            str(ROOT / "examples" / example),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stats"]["funnel"]["in"]["docs"] > 0


def test_demo_script(tmp_path: Path, manpages_ja: list[Path]) -> None:
    kiban = ROOT / ".venv" / "bin" / "kiban"
    assert kiban.exists(), "the demo runs .venv/bin/kiban: create it with `make setup`"
    env = {**os.environ, "KIBAN_DEMO_OUT": str(tmp_path / "demo"), "KIBAN_DEMO_TRAIN_STEPS": "2"}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh"), "manpages-ja"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lineage verified" in proc.stdout
    card = (tmp_path / "demo" / "corpus" / "datacard.md").read_text()
    assert "LicenseRef-debian-manpages-ja" in card
    assert "unigram baseline" in proc.stdout and "このコマンドは▶" in proc.stdout
    model = json.loads((tmp_path / "demo" / "model" / "manifest.json").read_text())
    assert model["kind"] == "checkpoint" and "LicenseRef-debian-manpages-ja" in model["licenses"]
    assert "Q: Debian でパッケージをインストールするには？" in proc.stdout and "\nA: " in proc.stdout
    assert "audit log intact" in proc.stdout
    audit = (tmp_path / "demo" / "serve" / "audit.jsonl").read_text().splitlines()
    assert any(json.loads(line).get("route") == "/v1/chat/completions" for line in audit)
    report = json.loads((tmp_path / "demo" / "eval" / "report.json").read_text())
    assert report["results"]["text:heldout.jsonl"]["bits_per_char,none"] > 0
    assert 0 <= report["results"]["jcommonsenseqa"]["acc,none"] <= 1
    assert "eval/report.html" in proc.stdout
    assert (tmp_path / "demo" / "model-q4_k_m.gguf").stat().st_size > 0
    assert "decode measured" in proc.stdout
    robot = json.loads((tmp_path / "demo" / "robot-summary.json").read_text())
    assert robot["success"] and robot["violations"] == 0
    assert (tmp_path / "demo" / "robot-episode" / "meta" / "info.json").is_file()
