"""Every connection a guarded piece of code opens is checked where it is made.

Apprise's plugins reach their services through requests, smtplib and others, and the host slot
of many of its URLs holds a token, so no URL check can say where a send will connect. Instead an
audit hook (installed once, process-wide: hooks cannot be removed) sees each `socket.connect` and
`socket.sendto` and each name looked up (`socket.getaddrinfo`) in any library, and, inside
`guarded()` only (a context variable: the thread's own work and what it submits with its
context), refuses before the connection is made:

- an address `destinations.forbidden_reason` refuses (link-local, cloud metadata, the API
  server; IPv4 embedded in IPv6 unwrapped), checked on the address actually connected to, so a
  DNS answer that changes after a check (rebinding) is caught too;
- a connection by name or to a non-IP socket family (nothing to check: not made);
- with an allow-list, a name looked up that is not in it;
- once the scope is cut off (its deadline passed), any new connection.

The sockets a scope lets connect are recorded, so whoever set its deadline can `cut()` it from
another thread: a thread cannot be cancelled, but its blocked reads fail once their sockets are
shut down.

The refused call raises `ConnectRefused` (a ConnectionRefusedError, which libraries treat as an
unreachable service); the scope records why (the kind of address, never the address), for the
caller to report.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from controller.adapters.destinations import forbidden_reason

# The events checked; every other audit event (there are many) returns at the first test.
_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.getaddrinfo"})


class ConnectRefused(ConnectionRefusedError):
    """A connection the guard refused before it was made."""


@dataclass
class Scope:
    """What a guarded block may reach, what it was refused, and the sockets it opened."""

    allowed_hosts: frozenset[str] = frozenset()
    api_server: frozenset[str] = frozenset()
    refused: list[str] = field(default_factory=list)
    _sockets: list[socket.socket] = field(default_factory=list)
    _cut: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def opened(self, sock: socket.socket) -> str | None:
        """Record a socket about to connect; why not, once the block is cut off."""
        with self._lock:
            if self._cut:
                return "a new connection after its deadline"
            self._sockets.append(sock)
        return None

    def cut(self) -> None:
        """From any thread: shut down every socket the block opened (a read blocked on one,
        however slowly its peer drips, fails at once) and refuse it new ones. Only shut down:
        closing is the owner's, which may still be using the descriptor."""
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):  # not connected yet, or closed already
                sock.shutdown(socket.SHUT_RDWR)


_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("connect_scope", default=None)
_installed = False
_install_lock = threading.Lock()


def _host_refusal(host: object, scope: Scope) -> str | None:
    if not scope.allowed_hosts or host is None:
        return None
    name = host.decode("idna") if isinstance(host, bytes) else str(host)
    name = name.lower().strip("[]").rstrip(".")
    if name not in scope.allowed_hosts:
        return "a host name not in MLCD_NOTIFY_ALLOWED_HOSTS"
    return None


def _address_refusal(sock: object, address: object, scope: Scope) -> str | None:
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return "a socket that is not IPv4 or IPv6"
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return "an address that is not an IP address"
    try:
        ipaddress.ip_address(address[0].split("%", 1)[0])
    except ValueError:
        return "a host by name (not looked up first)"
    if forbidden_reason(address[0], scope.api_server) is not None:
        # The kind only: where a send connects says something about its URL, a capability.
        return "a link-local, cloud metadata or API server address"
    return None


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event not in _EVENTS:
        return
    scope = _SCOPE.get()
    if scope is None:
        return
    if event == "socket.getaddrinfo":
        reason = _host_refusal(args[0], scope)
    else:
        reason = _address_refusal(args[0], args[1], scope)
        if reason is None and isinstance(args[0], socket.socket):
            reason = scope.opened(args[0])
    if reason is not None:
        scope.refused.append(reason)
        raise ConnectRefused(f"connection refused by the operator: {reason}")


def _install() -> None:
    global _installed  # noqa: PLW0603 - one hook per process, installed on first use
    with _install_lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


@contextlib.contextmanager
def guarded(scope: Scope) -> Iterator[Scope]:
    """Check every connection made in this context (this thread, and work it hands on with
    its context) against `scope` until the block ends."""
    _install()
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)
