"""Unit tests that send for real (Apprise to a receiver of ours) reach 127.0.0.1 only, also
should the connect guard under test break: `loopback_only()` fails the test that tried more,
and refuses the connection before it leaves."""

from __future__ import annotations

import contextlib
import ipaddress
import sys
from collections.abc import Iterator

from controller.adapters.connect_guard import Scope, guarded
from tests.fakes.receiver import WebhookReceiver

TOKEN = "tok3n-in-a-notify-url"

# Connections beyond loopback attempted while loopback_only() was on.
_BEYOND_LOOPBACK: list[object] = []
_SAFETY_ON: list[bool] = []
_SAFETY_INSTALLED: list[bool] = []


def _safety_net(event: str, args: tuple[object, ...]) -> None:
    if event != "socket.connect" or not _SAFETY_ON or not isinstance(args[1], tuple):
        return
    host = str(args[1][0]).split("%", 1)[0]
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(host)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_loopback:
            return
    _BEYOND_LOOPBACK.append(args[1])
    raise OSError("test safety net: no traffic beyond loopback")


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """The audit hook runs after the guard's (installed first), so it only sees what the guard
    let through. Audit hooks cannot be removed: it stays installed, switched off outside."""
    if not _SAFETY_INSTALLED:
        with guarded(Scope()):  # installs the guard's hook, so it runs first
            pass
        sys.addaudithook(_safety_net)
        _SAFETY_INSTALLED.append(True)
    _SAFETY_ON[:] = [True]
    _BEYOND_LOOPBACK.clear()
    try:
        yield
    finally:
        _SAFETY_ON.clear()
    assert not _BEYOND_LOOPBACK, "a test tried to connect beyond loopback"


def json_url(receiver: WebhookReceiver, token: str = TOKEN) -> str:
    """An Apprise json:// URL posting to `receiver`, with a token that must never be shown."""
    return receiver.url.replace("http://", "json://", 1) + f"?token={token}"
