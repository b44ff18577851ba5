"""The socket guard that keeps the serve tests air-gapped (tests/no_network.py) refuses real
outbound calls before they reach the kernel and lets loopback and Unix sockets through."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.no_network import expect_violation, guard, violations

TEST_NET = "192.0.2.1"  # RFC 5737 TEST-NET-1: documentation only, never routed


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def test_create_connection_to_a_remote_address_is_refused(listener: socket.socket) -> None:
    with expect_violation() as caught, pytest.raises(PermissionError, match="kiban tests: outbound"):
        socket.create_connection((TEST_NET, 80), timeout=5)
    assert TEST_NET in caught[0]


def test_a_refused_connect_never_reached_the_kernel(listener: socket.socket) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setblocking(False)
        with expect_violation() as caught, pytest.raises(PermissionError):
            s.connect((TEST_NET, 80))
        assert caught == [f"socket.connect: {(TEST_NET, 80)!r}"]
        # Had connect(2) run, the socket would be connecting to TEST-NET (EALREADY now) or failed;
        # a fresh connect to loopback succeeding shows it never left the unconnected state.
        s.setblocking(True)
        s.connect(listener.getsockname())
        assert s.getpeername() == listener.getsockname()


def test_name_lookups_are_refused() -> None:
    with expect_violation() as caught, pytest.raises(PermissionError):
        socket.getaddrinfo("example.com", 443)
    assert caught == ["socket.getaddrinfo: 'example.com'"]
    with expect_violation(), pytest.raises(PermissionError):
        socket.gethostbyname("huggingface.co")


def test_a_datagram_to_a_remote_address_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, expect_violation() as caught:
        with pytest.raises(PermissionError):
            s.sendto(b"telemetry", (TEST_NET, 9))
    assert TEST_NET in caught[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_connections_are_allowed(listener: socket.socket, host: str) -> None:
    port = listener.getsockname()[1]
    with socket.create_connection((host, port), timeout=5) as client:
        peer, _ = listener.accept()
        with peer:
            client.sendall(b"ping")
            assert peer.recv(4) == b"ping"
    assert violations == []


def test_unix_sockets_are_allowed(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
    assert violations == []


def test_the_guard_is_inert_when_off() -> None:
    with guard(active=False):
        # A numeric lookup: answered locally, so safe to let through while the guard is off.
        assert socket.getaddrinfo(TEST_NET, 80, type=socket.SOCK_STREAM)
    assert violations == []
