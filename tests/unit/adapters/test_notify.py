"""Notifications to people through Apprise, for real: json:// pointed at a receiver of ours."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from controller.adapters import notify
from controller.adapters.notify import (
    ACCEPTED,
    FAILED,
    NOT_SENT,
    UNKNOWN_URL,
    AppriseNotifier,
    Message,
    notify_urls,
    url_lines,
)
from controller.core.errors import InvalidSpec
from tests.fakes.receiver import Reply, WebhookReceiver
from tests.support.net import connected
from tests.unit.loopback import TOKEN, json_url, loopback_only

TITLE = "Matchlistan: 2 ändringar"
BODY = "IFK Göteborg – BK Häcken flyttad 18:30 → 19:45 (sön 6 dec, Valhalla IP)"  # noqa: RUF001


@pytest.fixture(autouse=True)
def _no_traffic_beyond_loopback() -> Iterator[None]:
    with loopback_only():
        yield


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


def _notifier(
    *,
    allowed_hosts: frozenset[str] = frozenset(),
    key: str = "uid-1",
    in_flight: set[str] | None = None,
    gate: asyncio.Semaphore | None = None,
    deadline_seconds: float = 15,
) -> AppriseNotifier:
    return AppriseNotifier(
        key=key,
        in_flight=set() if in_flight is None else in_flight,
        gate=asyncio.Semaphore(2) if gate is None else gate,
        timeout_seconds=5,
        deadline_seconds=deadline_seconds,
        allowed_hosts=allowed_hosts,
    )


async def _send(
    *urls: str, notifier: AppriseNotifier | None = None
) -> tuple[list[str], str | None]:
    sender = _notifier() if notifier is None else notifier
    return await sender.send(tuple(Message(url, TITLE, BODY) for url in urls))


async def test_a_message_arrives_with_its_title_and_text(receiver: WebhookReceiver) -> None:
    receiver.enqueue(200)
    assert await _send(json_url(receiver)) == ([ACCEPTED], None)
    (got,) = receiver.requests
    assert got.payload["title"] == TITLE
    assert got.payload["message"] == BODY


async def test_each_url_has_its_own_fate(receiver: WebhookReceiver) -> None:
    receiver.enqueue(500)
    receiver.enqueue(200)
    url = json_url(receiver)
    assert await _send(url, "json://", url) == ([FAILED, UNKNOWN_URL, ACCEPTED], None)
    assert len(receiver.requests) == 2


async def test_a_refusing_service_fails_without_naming_its_url(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.enqueue(500)
    caplog.set_level(logging.DEBUG)
    assert await _send(json_url(receiver)) == ([FAILED], None)
    assert TOKEN not in caplog.text  # Apprise's own log lines name the URL: kept quiet
    assert TOKEN not in repr(Message(json_url(receiver), TITLE, BODY))


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
    fates, refused = await _send(url)
    assert fates == [NOT_SENT]
    assert refused is not None
    assert not connected(canary)
    assert str(canary.getsockname()[1]) not in refused


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
    fates, refused = await _send(url)
    assert fates == [NOT_SENT]
    assert refused is not None
    assert "169.254" not in refused
    assert "a9fe" not in refused


async def test_redirects_are_not_followed(receiver: WebhookReceiver, canary: socket.socket) -> None:
    elsewhere = f"http://127.0.0.1:{canary.getsockname()[1]}/latest/meta-data"
    receiver.enqueue(Reply(302, headers={"Location": elsewhere}))
    assert await _send(json_url(receiver)) == ([FAILED], None)
    assert len(receiver.requests) == 1
    assert not connected(canary)


async def test_hosts_outside_the_allow_list_are_not_reached(receiver: WebhookReceiver) -> None:
    fates, refused = await _send(
        json_url(receiver), notifier=_notifier(allowed_hosts=frozenset({"ntfy.sh"}))
    )
    assert fates == [NOT_SENT]
    assert refused is not None
    assert "MLCD_NOTIFY_ALLOWED_HOSTS" in refused
    assert not receiver.requests
    receiver.enqueue(200)
    fates, _ = await _send(
        json_url(receiver), notifier=_notifier(allowed_hosts=frozenset({"127.0.0.1"}))
    )
    assert fates == [ACCEPTED]
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


def test_a_refused_url_is_named_by_its_line_in_the_secret() -> None:
    """Counted as the person editing the Secret counts: blank and comment lines too."""
    secret = {"urls": "# Annas telefon\njson://ok/x\n\n  \n# gamla\nmqtt://h/tok3n"}
    with pytest.raises(InvalidSpec, match="line 6 has a scheme") as caught:
        notify_urls(secret, "Secret n")
    assert "tok3n" not in str(caught.value)
    assert url_lines(secret) == (2, 6)


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
    stuck = _notifier(key="a", in_flight=in_flight, gate=gate, deadline_seconds=3)
    healthy = _notifier(key="b", in_flight=in_flight, gate=gate)
    first = asyncio.create_task(_send(drip.url, notifier=stuck))
    assert await asyncio.to_thread(drip.connected.wait, 10)
    # While its send runs, watcher a gets no second one; watcher b is delivered meanwhile.
    assert await _send(drip.url, notifier=stuck) == ([NOT_SENT], None)
    receiver.enqueue(200)
    assert await _send(json_url(receiver), notifier=healthy) == ([ACCEPTED], None)
    assert len(receiver.requests) == 1
    assert not drip.closed.is_set()
    # At its deadline the dripping send's socket is shut down, and its thread has ended.
    assert await first == ([FAILED], None)
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


async def test_fates_known_by_the_deadline_stand(drip: _Drip, receiver: WebhookReceiver) -> None:
    """A message accepted before another one dripped past the deadline was delivered: counted
    failed, its URL would be sent it again on every run while the drip lasts. What was never
    sent is no refused address either."""
    receiver.enqueue(200, 200)
    fates = await _send(
        json_url(receiver), drip.url, json_url(receiver), notifier=_notifier(deadline_seconds=3)
    )
    assert fates == ([ACCEPTED, FAILED, FAILED], None)
    assert len(receiver.requests) == 1
