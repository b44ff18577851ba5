"""A real `kiban serve` in a subprocess on a free loopback port, for the end-to-end serve tests.

The server process runs with the tests' socket guard installed (tests/no_network.py): any
connection to a non-loopback address inside the server is refused and written to
`<state>/socket-violations.txt`, which `stop()` asserts is empty.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import run_kiban

TESTS = Path(__file__).resolve().parents[1]

_BOOT = """
import sys
sys.path.insert(0, {tests!r})
import no_network

class _Recorded(list):  # every violation is on disk at once: uvicorn ends with the signal, skipping atexit
    def append(self, item):
        super().append(item)
        with open({report!r}, "a") as f:
            f.write(item + "\\n")

no_network.violations = _Recorded()
no_network.install_socket_guard()
no_network._state["active"] = True  # for the whole life of the server process
from kiban.cli import main
sys.argv = ["kiban", *{args!r}]
main()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    def __init__(
        self,
        args: list[str],
        state: Path,
        *,
        port: int | None = None,
        scheme: str = "http",
        env: dict[str, str] | None = None,
    ) -> None:
        self.state = state
        self.port = port or free_port()
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.report = state / "socket-violations.txt"
        state.mkdir(parents=True, exist_ok=True)
        full = [*args, "--port", str(self.port), "--state", str(state)]
        code = _BOOT.format(tests=str(TESTS), report=str(self.report), args=full)
        self.log = (state / "server.log").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )

    def wait_ready(self, timeout_s: float = 120, verify: bool | ssl.SSLContext = True) -> ServeProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"kiban serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                httpx.get(f"{self.base}/health", timeout=1, verify=verify)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"kiban serve not ready after {timeout_s} s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return (self.state / "server.log").read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        """Signal the server and wait; its exit status (uvicorn re-raises the signal: -15 is a clean stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        violations = self.report.read_text() if self.report.exists() else ""
        assert not violations.strip(), f"the server tried to connect outside loopback:\n{violations}"
        return self.proc.returncode


def create_key(state: Path, scopes: str, *extra: str) -> str:
    return run_kiban(
        "keys", "create", "--name", f"test-{scopes}", "--scopes", scopes, *extra, "--state", str(state)
    ).stdout.strip()
