"""Notifications to people through Apprise, for real: json:// pointed at a receiver of ours."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest

from controller.adapters import notify
from controller.adapters.notify import AppriseNotifier, NotifyFailed, notify_urls
from controller.core.diff import MatchChange
from controller.core.errors import InvalidSpec
from controller.core.message import compose
from controller.core.report import encode_report
from tests.fakes.receiver import WebhookReceiver

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


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


def _notifier(*urls: str) -> AppriseNotifier:
    return AppriseNotifier(
        urls, where="notify Secret ns/n", gate=asyncio.Semaphore(2), timeout_seconds=5
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
    assert got.payload["title"] == "Match list: 2 changes"
    assert got.payload["message"].splitlines() == [
        "IFK Göteborg – BK Häcken moved 18:30 → 19:45 (Sun 6 Dec, Valhalla IP)",  # noqa: RUF001
        "IFK Göteborg – BK Häcken new assignment at 19:45 (Sun 6 Dec, Valhalla IP)",  # noqa: RUF001
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


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("nosuchscheme://x", "line 1 is not an Apprise URL"),
        ("json://169.254.169.254/latest", "not allowed"),
        ("json://[64:ff9b::a9fe:a9fe]/latest", "not allowed"),  # NAT64
        ("jsons://[::a9fe:a9fe]/latest", "not allowed"),  # IPv4-compatible
        ("json://[::ffff:a9fe:a9fe]/latest", "not allowed"),  # IPv4-mapped
    ],
)
async def test_unusable_urls_send_nothing(url: str, problem: str) -> None:
    with pytest.raises(InvalidSpec, match=problem) as caught:
        await _notifier(url).notify(encode_report(REPORT), "d-1", WHEN)
    assert caught.value.reason == "InvalidNotifySecret"
    assert url not in str(caught.value)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ({"urls": "json://a/x\n\n# a comment\n  ntfy://topic  \n"}, ("json://a/x", "ntfy://topic")),
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
