"""The connect-time check: refused before the connection is made, and only inside its scope."""

from __future__ import annotations

import socket

import pytest

from controller.adapters.connect_guard import ConnectRefused, Scope, guarded
from tests.support.net import connected


def test_a_refused_address_is_never_connected_to(canary: socket.socket) -> None:
    refusing = guarded(Scope(api_server=frozenset({"127.0.0.1"})))
    with refusing as scope, socket.socket() as sock, pytest.raises(ConnectRefused):
        sock.connect(canary.getsockname())
    assert scope.refused == ["a link-local, cloud metadata or API server address"]
    assert not connected(canary)


def test_a_connection_by_name_is_not_made(canary: socket.socket) -> None:
    # connect() would resolve the name itself, after the check: refused instead.
    with guarded(Scope()) as scope, socket.socket() as sock, pytest.raises(ConnectRefused):
        sock.connect(("localhost", canary.getsockname()[1]))
    assert scope.refused == ["a host by name (not looked up first)"]
    assert not connected(canary)


def test_names_outside_the_allow_list_are_not_looked_up() -> None:
    with guarded(Scope(allowed_hosts=frozenset({"ntfy.sh", "127.0.0.1"}))) as scope:
        with pytest.raises(ConnectRefused):
            socket.getaddrinfo("localhost", 80)
        assert socket.getaddrinfo("127.0.0.1", 80, flags=socket.AI_NUMERICHOST)
    assert scope.refused == ["a host name not in MLCD_NOTIFY_ALLOWED_HOSTS"]


def test_outside_a_guard_nothing_is_checked(canary: socket.socket) -> None:
    with guarded(Scope(api_server=frozenset({"127.0.0.1"}))):
        pass
    with socket.create_connection(canary.getsockname(), timeout=5):
        pass
    assert connected(canary)


def test_a_cut_scope_shuts_its_sockets_and_opens_no_more(canary: socket.socket) -> None:
    with guarded(Scope()) as scope, socket.create_connection(canary.getsockname()) as sock:
        peer = canary.accept()[0]
        scope.cut()
        # Our end is shut down: a read returns at once, the peer sees the end of the stream.
        assert sock.recv(1) == b""
        assert peer.recv(1) == b""
        peer.close()
        with pytest.raises(ConnectRefused):
            socket.create_connection(canary.getsockname())
    assert scope.refused == ["a new connection after its deadline"]
    assert not connected(canary)
