"""Every serve test runs air-gapped: the socket guard (tests/no_network.py) refuses any outbound
connection or name lookup, and a test that caused one fails even if the code swallowed the error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.no_network import guard, install_socket_guard, violations

install_socket_guard()


@pytest.fixture(autouse=True)
def no_network() -> Iterator[None]:
    start = len(violations)
    with guard():
        yield
    refused = violations[start:]
    del violations[start:]  # reported once, here, not again after every later test
    assert not refused, f"kiban serve tried to reach the network: {refused}"
