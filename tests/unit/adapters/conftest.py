"""Fixtures the adapters' tests share."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def canary() -> Iterator[socket.socket]:
    """A loopback listener nothing may connect to (`tests.support.net.connected` tells)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        yield listener
