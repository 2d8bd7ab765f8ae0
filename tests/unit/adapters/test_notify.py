"""Notifications to people through Apprise, for real: json:// pointed at a receiver of ours."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest

from controller.adapters import notify
from controller.adapters.connect_guard import Scope, guarded
from controller.adapters.notify import AppriseNotifier, NotifyFailed, notify_urls
from controller.core.diff import MatchChange
from controller.core.errors import InvalidSpec
from controller.core.message import compose
from controller.core.report import encode_report
from tests.fakes.receiver import Reply, WebhookReceiver
from tests.support.net import connected

MATCH = {
    "matchId": "1", "matchNumber": "101", "date": "2026-12-06", "time": "19:45",
    "venue": {"id": "v1", "name": "Valhalla IP"},
    "homeTeam": {"id": "t1", "name": "IFK Göteborg"}, "awayTeam": {"id": "t2", "name": "BK Häcken"},
    "competition": {"id": "c1", "name": "Allsvenskan"},
    "cancelled": False, "postponed": False, "interrupted": False, "referees": [],
}  # fmt: skip
REPORT = {
    "id": "d-1",
    "changes": [
        {"type": "changed", "matchId": "1", "matchNumber": "101", "categories": ["time_change"],
         "fields": {"time": {"old": "18:30", "new": "19:45"}}, "match": MATCH},
        {"type": "new", "matchId": "1", "matchNumber": "101", "categories": ["new_assignment"],
         "fields": {}, "match": MATCH},
    ],
}  # fmt: skip
WHEN = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
TOKEN = "tok3n-in-a-notify-url"


# Connections beyond loopback this module's tests attempted (see the fixture below).
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


@pytest.fixture(autouse=True)
def _no_traffic_beyond_loopback() -> Iterator[None]:
    """Tests here send to 127.0.0.1 only, also should the guard under test break: this hook runs
    after the guard's (installed first), so it only sees what the guard let through."""
    if not _SAFETY_INSTALLED:
        with guarded(Scope()):  # installs the guard's hook, so it runs first
            pass
        sys.addaudithook(_safety_net)
        _SAFETY_INSTALLED.append(True)
    _SAFETY_ON[:] = [True]
    _BEYOND_LOOPBACK.clear()
    yield
    _SAFETY_ON.clear()
    assert not _BEYOND_LOOPBACK, "a test tried to connect beyond loopback"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


def _notifier(
    *urls: str,
    allowed_hosts: frozenset[str] = frozenset(),
    key: str = "uid-1",
    in_flight: set[str] | None = None,
    gate: asyncio.Semaphore | None = None,
    deadline_seconds: float = 15,
) -> AppriseNotifier:
    return AppriseNotifier(
        urls,
        where="notify Secret ns/n",
        key=key,
        in_flight=set() if in_flight is None else in_flight,
        gate=asyncio.Semaphore(2) if gate is None else gate,
        timeout_seconds=5,
        deadline_seconds=deadline_seconds,
        allowed_hosts=allowed_hosts,
    )


def _json_url(receiver: WebhookReceiver) -> str:
    return receiver.url.replace("http://", "json://", 1) + f"?token={TOKEN}"


async def test_the_text_is_composed_off_the_event_loop(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Structural, not timed: decoding a big report and composing its text is CPU.
    threads: list[int] = []

    def recorded(changes: Sequence[MatchChange]) -> tuple[str, str]:
        threads.append(threading.get_ident())
        return compose(changes)

    monkeypatch.setattr(notify, "compose", recorded)
    receiver.enqueue(200)
    await _notifier(_json_url(receiver)).notify(encode_report(REPORT), "d-1", WHEN)
    assert len(receiver.requests) == 1
    assert threads
    assert threading.get_ident() not in threads


async def test_the_change_set_arrives_as_one_short_text(receiver: WebhookReceiver) -> None:
    receiver.enqueue(200)
    await _notifier(_json_url(receiver)).notify(encode_report(REPORT), "d-1", WHEN)
    (got,) = receiver.requests
    assert got.payload["title"] == "Matchlistan: 2 ändringar"
    assert got.payload["message"].splitlines() == [
        "IFK Göteborg – BK Häcken flyttad 18:30 → 19:45 (sön 6 dec, Valhalla IP)",  # noqa: RUF001
        "IFK Göteborg – BK Häcken ny tillsättning kl. 19:45 (sön 6 dec, Valhalla IP)",  # noqa: RUF001
    ]


async def test_a_refusing_service_fails_without_naming_its_url(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.enqueue(500)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(NotifyFailed) as caught:
        await _notifier(_json_url(receiver)).notify(encode_report(REPORT), "d-1", WHEN)
    assert caught.value.reason == "NotifyFailing"
    assert TOKEN not in str(caught.value)
    assert TOKEN not in caplog.text  # Apprise's own log lines name the URL: kept quiet


async def test_unknown_urls_send_nothing() -> None:
    with pytest.raises(InvalidSpec, match="line 1 is not an Apprise URL") as caught:
        await _notifier("json://").notify(encode_report(REPORT), "d-1", WHEN)
    assert caught.value.reason == "InvalidNotifySecret"


@pytest.mark.parametrize(
    "path",
    [
        "ntfy://127.0.0.1:{port}/topic",
        "gotify://127.0.0.1:{port}/abcdefghijklmno",
        "mmost://127.0.0.1:{port}/abcdefghijklmnop",
        "json://[::ffff:7f00:1]:{port}/x",  # IPv4-mapped
        "json://localhost:{port}/x",  # a name: its address is checked
    ],
)
async def test_every_connection_is_checked_before_it_is_made(
    path: str, canary: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The canary stands for the API server: an address that is refused whatever the scheme.
    monkeypatch.setattr(notify, "api_server_addresses", lambda: frozenset({"127.0.0.1"}))
    url = path.format(port=canary.getsockname()[1])
    with pytest.raises(InvalidSpec, match="refused before connecting") as caught:
        await _notifier(url).notify(encode_report(REPORT), "d-1", WHEN)
    assert caught.value.reason == "NotifyNotAllowed"
    assert not connected(canary)
    assert str(canary.getsockname()[1]) not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "json://169.254.169.254/latest",
        "ntfy://169.254.169.254/topic",
        "json://[64:ff9b::a9fe:a9fe]/latest",  # NAT64
        "jsons://[::a9fe:a9fe]/latest",  # IPv4-compatible
        "json://[::ffff:a9fe:a9fe]/latest",  # IPv4-mapped
    ],
)
async def test_metadata_addresses_are_refused(url: str) -> None:
    # Refused before the connect call (as the canary test above shows), so nothing leaves.
    with pytest.raises(InvalidSpec, match="refused before connecting") as caught:
        await _notifier(url).notify(encode_report(REPORT), "d-1", WHEN)
    assert caught.value.reason == "NotifyNotAllowed"
    assert "169.254" not in str(caught.value)
    assert "a9fe" not in str(caught.value)


async def test_redirects_are_not_followed(receiver: WebhookReceiver, canary: socket.socket) -> None:
    elsewhere = f"http://127.0.0.1:{canary.getsockname()[1]}/latest/meta-data"
    receiver.enqueue(Reply(302, headers={"Location": elsewhere}))
    with pytest.raises(NotifyFailed):
        await _notifier(_json_url(receiver)).notify(encode_report(REPORT), "d-1", WHEN)
    assert len(receiver.requests) == 1
    assert not connected(canary)


async def test_hosts_outside_the_allow_list_are_not_reached(receiver: WebhookReceiver) -> None:
    with pytest.raises(InvalidSpec, match="MLCD_NOTIFY_ALLOWED_HOSTS") as caught:
        await _notifier(_json_url(receiver), allowed_hosts=frozenset({"ntfy.sh"})).notify(
            encode_report(REPORT), "d-1", WHEN
        )
    assert caught.value.reason == "NotifyNotAllowed"
    assert not receiver.requests
    receiver.enqueue(200)
    await _notifier(_json_url(receiver), allowed_hosts=frozenset({"127.0.0.1"})).notify(
        encode_report(REPORT), "d-1", WHEN
    )
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("apprise://127.0.0.1/token", "scheme the operator does not allow"),
        ("https://discord.com/api/webhooks/1/token", "scheme the operator does not allow"),
        ("mqtt://127.0.0.1/topic", "scheme the operator does not allow"),
        ("no scheme", "scheme the operator does not allow"),
        ("json://h/x?redirect=yes", "redirect="),
        ("json://h/x?Redirect=no", "redirect="),
        ("jsons://h/x?verify=no", "TLS verification off"),
        ("ntfys://topic?verify=False", "TLS verification off"),
    ],
)
def test_refused_urls(url: str, problem: str) -> None:
    with pytest.raises(InvalidSpec, match=problem) as caught:
        notify_urls({"urls": f"json://ok/x\n{url}"}, "Secret n")
    assert caught.value.reason == "InvalidNotifySecret"
    assert "line 2" in str(caught.value)
    assert url not in str(caught.value)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ({"urls": "json://a/x\n\n# a comment\n  ntfy://topic  \n"}, ("json://a/x", "ntfy://topic")),
        ({"urls": "jsons://a/x?verify=yes"}, ("jsons://a/x?verify=yes",)),
        ({"urls": "\n# only comments\n"}, None),
        ({}, None),
        ({"urls": "\n".join(f"json://h/{i}" for i in range(21))}, None),
    ],
)
def test_notify_urls(secret: dict[str, str], expected: tuple[str, ...] | None) -> None:
    if expected is None:
        with pytest.raises(InvalidSpec) as caught:
            notify_urls(secret, "Secret n")
        assert caught.value.reason == "InvalidNotifySecret"
    else:
        assert notify_urls(secret, "Secret n") == expected


class _Drip:
    """A loopback server that answers a byte a second, forever (20 s at most): no read times
    out. `accepted` counts connections; `closed` is set when the client shut its end."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"json://127.0.0.1:{self.listener.getsockname()[1]}/x"
        self.accepted = 0
        self.connected = threading.Event()
        self.closed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1)
            self.connected.set()
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            for _ in range(20):
                if self._stop.is_set():
                    return
                try:
                    if conn.recv(65536) == b"":  # the request read; b"": the client shut down
                        self.closed.set()
                        return
                except TimeoutError:
                    pass
                except OSError:
                    self.closed.set()
                    return
                conn.sendall(b"a")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@pytest.fixture
def drip() -> Iterator[_Drip]:
    server = _Drip()
    yield server
    server.stop()


async def test_a_dripping_service_holds_up_only_its_own_watcher(
    drip: _Drip, receiver: WebhookReceiver
) -> None:
    # Before: the dripping send, abandoned at its timeout, kept its thread and socket, and its
    # watcher's next send took another thread onto the same drip.
    gate, in_flight = asyncio.Semaphore(2), set[str]()
    stuck = _notifier(drip.url, key="a", in_flight=in_flight, gate=gate, deadline_seconds=3)
    healthy = _notifier(_json_url(receiver), key="b", in_flight=in_flight, gate=gate)
    first = asyncio.create_task(stuck.notify(encode_report(REPORT), "d-1", WHEN))
    assert await asyncio.to_thread(drip.connected.wait, 10)
    # While its send runs, watcher a gets no second one; watcher b is delivered meanwhile.
    with pytest.raises(NotifyFailed, match="still being sent"):
        await stuck.notify(encode_report(REPORT), "d-2", WHEN)
    receiver.enqueue(200)
    await healthy.notify(encode_report(REPORT), "d-1", WHEN)
    assert len(receiver.requests) == 1
    assert not drip.closed.is_set()
    # At its deadline the dripping send's socket is shut down, and its thread has ended.
    with pytest.raises(NotifyFailed, match="did not accept"):
        await first
    assert await asyncio.to_thread(drip.closed.wait, 5)
    assert drip.accepted == 1
    assert not in_flight


def test_every_allowed_scheme_is_one_apprise_knows() -> None:
    import apprise  # noqa: PLC0415 - as notify.py: imported where used

    known: set[str] = set()
    for plugin in apprise.Apprise().details()["schemas"]:
        for schemes in (plugin["protocols"], plugin["secure_protocols"]):
            known.update((schemes,) if isinstance(schemes, str) else schemes or ())
    assert not notify.ALLOWED_SCHEMES - known
