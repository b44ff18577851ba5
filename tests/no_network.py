"""An in-process guard that refuses outbound network use: kiban is air-gapped by construction.

`install_socket_guard()` adds a `sys.addaudithook` hook (PEP 578) on the socket events below.
Audit hooks cannot be removed, so the hook stays installed for the rest of the process and is
inert until `guard()` turns enforcement on (tests/unit/serve/conftest.py does, for every test).
While on, a non-loopback destination is recorded in `violations` and refused with a
PermissionError raised from the hook, that is before the socket call reaches the kernel: no DNS
query, no SYN, no datagram leaves. Libraries often swallow OSErrors (retries, fallbacks), which
is why the conftest also fails the test when `violations` grew.

    socket.getaddrinfo   (host, port, family, type, proto)   a name lookup (DNS) or an IP literal
    socket.gethostbyname (hostname,)                          also gethostbyname_ex
    socket.gethostbyaddr (ip_address,)                        a reverse lookup (DNS)
    socket.connect       (socket, address)                    TCP connect, UDP "connect"; connect_ex too
    socket.sendto        (socket, address)                    a datagram to an address
    socket.sendmsg       (socket, address)                    the same, through sendmsg

Allowed: the names in `allowed_hosts` (loopback by default), loopback addresses (127.0.0.0/8,
::1, ::ffff:127.0.0.1), the unspecified addresses 0.0.0.0 and :: (a server binding to them; a
connect to them reaches this host), a None host (getaddrinfo for a passive socket) and Unix
domain sockets (str or bytes addresses) and netlink. Out of reach: child processes (the hook lives in this
interpreter) and C libraries that open sockets without going through Python's socket module.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
from collections.abc import Iterator
from typing import Any

violations: list[str] = []
"""Every refused destination, as `event: address`, in order (only while the guard is on)."""

_state: dict[str, Any] = {"installed": False, "active": False, "allowed": frozenset()}
_EVENTS = frozenset(
    {
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
    }
)


def _host_allowed(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", errors="replace")
    if not isinstance(host, str):
        return False
    name = host.lower().rstrip(".")
    if name in _state["allowed"]:
        return True
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])  # fe80::1%eth0: drop the scope
    except ValueError:
        return False  # any other name would need a DNS query
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _destination(event: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
    """(allowed, what to name) for one audited call."""
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1]
        if isinstance(address, str | bytes):  # AF_UNIX path (or abstract name): never leaves the host
            return True, address
        if address is None:  # sendmsg on a connected socket: its connect was checked
            return True, address
        family = getattr(args[0], "family", None)
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address:
            return _host_allowed(address[0]), address
        if family == getattr(socket, "AF_NETLINK", None):  # talks to this host's kernel only
            return True, address
        return False, address  # anything else (AF_PACKET, AF_BLUETOOTH, ...) could leave the host
    host = args[0]
    return _host_allowed(host), host


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS or not _state["active"]:
        return
    allowed, addr = _destination(event, args)
    if not allowed:
        violations.append(f"{event}: {addr!r}")
        raise PermissionError(f"kiban tests: outbound connection to {addr!r} refused")


def install_socket_guard(allowed_hosts: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")) -> None:
    """Install the audit hook once (later calls only replace `allowed_hosts`); it starts inert."""
    _state["allowed"] = frozenset(h.lower().rstrip(".") for h in allowed_hosts)
    if not _state["installed"]:
        sys.addaudithook(_hook)
        _state["installed"] = True


@contextlib.contextmanager
def guard(active: bool = True) -> Iterator[None]:
    """Turn enforcement on (or off, with `active=False`) inside the block; restore it after."""
    if not _state["installed"]:
        raise RuntimeError("install_socket_guard() first")
    before = _state["active"]
    _state["active"] = active
    try:
        yield
    finally:
        _state["active"] = before


@contextlib.contextmanager
def expect_violation() -> Iterator[list[str]]:
    """For tests of the guard itself: the block must be refused at least once; the violations
    it caused are handed over (the yielded list) and removed from `violations`."""
    start = len(violations)
    caught: list[str] = []
    try:
        yield caught
    finally:
        caught.extend(violations[start:])
        del violations[start:]
    assert caught, "expected the socket guard to refuse a connection; it refused nothing"
