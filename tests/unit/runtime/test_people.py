"""The people's pass end to end: People.tell with its state in a (fake) ConfigMap and real
Apprise sends to json:// receivers of ours on 127.0.0.1, run after run as the runner calls it."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.adapters.peoplestore import ConfigMapPeople, KubeBacking
from controller.adapters.snapshots import config_map_name
from controller.core.detection import ChangesPending, Detection
from controller.core.diff import window_for
from controller.core.errors import InvalidSpec
from controller.core.model import NotifySpec, QuietHours, WatcherRef
from controller.core.people import url_key
from controller.core.status import PeopleStatus, WatcherStatus
from controller.runtime.people import People, Tell, Told
from tests.fakes.fogis.records import make_match
from tests.fakes.receiver import Received, WebhookReceiver
from tests.unit.fake_kube import FakeKube
from tests.unit.loopback import TOKEN, json_url, loopback_only

REF = WatcherRef("referees", "anna", "uid-1")
SECRET = "anna-notify"
NOTIFIED = config_map_name(REF.name, "notified")
KEY = b"operator-key"
ZONE = ZoneInfo("Europe/Stockholm")
DAY = date(2026, 12, 5)  # a Saturday
WINDOW = window_for(DAY, 7, 60)
NOON = datetime.combine(DAY, time(12), tzinfo=ZONE).astimezone(UTC)
SOON = DAY + timedelta(days=1)  # kickoff 19:00 tomorrow: within urgentWithinHours (48)
LATER = DAY + timedelta(days=10)


@pytest.fixture(autouse=True)
def _no_traffic_beyond_loopback() -> Iterator[None]:
    with loopback_only():
        yield


def fogis(*changed: dict[str, Any], ids: Sequence[int] = (1, 2, 3)) -> list[dict[str, Any]]:
    """FOGIS's list: matches `ids` (1 tomorrow, the rest in ten days), then `changed` ones."""
    records = {i: make_match(i, on=SOON if i == 1 else LATER) for i in ids}
    for record in changed:
        records[record["matchid"]] = record
    return list(records.values())


def moved(i: int, clock: str = "20:00") -> dict[str, Any]:
    return make_match(i, on=SOON if i == 1 else LATER, avsparkstid=clock)


def cancelled(i: int, yes: bool = True) -> dict[str, Any]:
    return make_match(i, on=SOON if i == 1 else LATER, installd=yes)


def team(i: int) -> str:
    return f"IF Hemma {7000 + i}"


def text(received: Received) -> str:
    return f"{received.payload['title']}\n{received.payload['message']}"


@dataclass
class Watcher:
    """One watcher's people's passes, its status.notify carried from run to run."""

    kube: FakeKube
    notify: NotifySpec = field(default_factory=lambda: NotifySpec(SECRET))
    status: PeopleStatus = field(default_factory=PeopleStatus)
    people: People = field(init=False)

    def __post_init__(self) -> None:
        self.people = People(
            backing=KubeBacking(self.kube),  # type: ignore[arg-type]
            key=KEY,
            in_flight=set(),
            gate=asyncio.Semaphore(2),
            timeout_seconds=5,
            deadline_seconds=15,
        )

    def urls(self, *urls: str) -> None:
        self.kube.secrets[REF.namespace, SECRET] = {"urls": "\n".join(urls)}

    async def run(
        self, fetched: list[Any] | None, *, now: datetime = NOON, failed: str | None = None
    ) -> Told:
        """A run that fetched `fetched` (None: the fetch failed) and failed for `failed`. As the
        runner: only a failed fetch's reason is one people may be told."""
        reason = failed if fetched is None else None
        streak = self.status.after_run(reason, succeeded=failed is None)
        return await self._tell(streak, reason, fetched=fetched, now=now, digest=False)

    async def digest(self, now: datetime, *, reason: str | None = None) -> Told:
        """Quiet hours ended (`reason`: why the last run failed, if it did)."""
        return await self._tell(self.status, reason, fetched=None, now=now, digest=True)

    async def _tell(
        self,
        streak: PeopleStatus,
        reason: str | None,
        *,
        fetched: list[Any] | None,
        now: datetime,
        digest: bool,
    ) -> Told:
        job = Tell(
            ref=REF,
            notify=self.notify,
            calendar=None,
            language="sv",
            window=WINDOW,
            now=now,
            zone=ZONE,
            previous=WatcherStatus(people=self.status),
            streak=streak,
            reason=reason,
            digest=digest,
        )
        told = await self.people.tell(job, fetched=fetched)
        self.status = told.people
        assert TOKEN not in repr(told), "a capability URL reached status or an Event"
        for data in self.kube.config_maps[REF.namespace, NOTIFIED].data.values():
            assert TOKEN.encode() not in gzip.decompress(data)
        return told


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def a() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def b() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def refused_url() -> str:
    """A json:// URL on a loopback port nobody listens on: connection refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"json://127.0.0.1:{port}/dead?token={TOKEN}"


async def test_a_baseline_tells_nobody(kube: FakeKube, a: WebhookReceiver) -> None:
    watcher = Watcher(kube)
    watcher.urls(json_url(a))
    told = await watcher.run(fogis())
    assert isinstance(told.notice, Detection)
    assert told.notice.baseline
    assert not a.requests
    state = await ConfigMapPeople(kube, REF).load()  # type: ignore[arg-type]
    assert state is not None
    assert set(state.cursors) == {url_key(json_url(a), KEY)}
    assert state.cursors[url_key(json_url(a), KEY)] == state.latest


async def test_a_revert_reaches_the_url_whose_answer_failed(
    kube: FakeKube, a: WebhookReceiver, b: WebhookReceiver
) -> None:
    """Issue 22's lost revert: the cancellation reached b and may have reached a (it answered
    500); when FOGIS takes it back, both hear so."""
    watcher = Watcher(kube)
    watcher.urls(json_url(a), json_url(b))
    await watcher.run(fogis())
    a.enqueue(500)
    told = await watcher.run(fogis(cancelled(2)))
    assert isinstance(told.notice, ChangesPending)
    assert told.results == {"delivered", "failed"}
    for receiver in (a, b):
        (got,) = receiver.requests
        assert "inställd" in text(got)
        assert "inte längre" not in text(got)

    told = await watcher.run(fogis())  # FOGIS reverts
    assert isinstance(told.notice, Detection)
    for receiver in (a, b):
        assert len(receiver.requests) == 2
        assert "inte längre inställd" in text(receiver.requests[1])
        assert team(2) in text(receiver.requests[1])
    await watcher.run(fogis())
    assert len(a.requests) == len(b.requests) == 2  # told once, not again


async def test_a_dead_url_makes_no_spam_for_a_working_one(
    kube: FakeKube, a: WebhookReceiver
) -> None:
    """Issue 22's spam: each run re-sent the whole pending set to every URL."""
    watcher = Watcher(kube)
    watcher.urls(refused_url(), json_url(a))
    await watcher.run(fogis(ids=range(1, 6)))
    for run in range(1, 5):
        changes = [moved(i) for i in range(2, run + 2)]  # piling up: 2, then 2 and 3, ...
        told = await watcher.run(fogis(*changes, ids=range(1, 6)))
        assert isinstance(told.notice, ChangesPending)
        assert len(told.notice.changes) == run  # the dead URL's, all still pending
        assert len(a.requests) == run
        latest = text(a.requests[-1])
        assert latest.count("flyttad") == 1
        assert team(run + 1) in latest
        assert latest.startswith("Matchlistan: 1 ändring")


async def test_a_url_added_later_hears_no_history_and_a_removed_one_is_forgotten(
    kube: FakeKube, a: WebhookReceiver, b: WebhookReceiver
) -> None:
    watcher = Watcher(kube)
    watcher.urls(json_url(a))
    await watcher.run(fogis())
    await watcher.run(fogis(moved(2)))
    assert len(a.requests) == 1

    watcher.urls(json_url(a), json_url(b))
    await watcher.run(fogis(moved(2)))
    assert not b.requests  # neither the list nor match 2's move, from before it was added
    await watcher.run(fogis(moved(2), moved(3)))
    for receiver in (a, b):
        assert team(3) in text(receiver.requests[-1])
        assert team(2) not in text(receiver.requests[-1])

    watcher.urls(json_url(b))
    await watcher.run(fogis(moved(2), moved(3), cancelled(1)))
    assert len(a.requests) == 2
    assert len(b.requests) == 2
    state = await ConfigMapPeople(kube, REF).load()  # type: ignore[arg-type]
    assert state is not None
    assert set(state.cursors) == {url_key(json_url(b), KEY)}

    watcher.urls(json_url(a), json_url(b))  # back: a starts afresh, from the latest list
    await watcher.run(fogis(moved(2), moved(3), cancelled(1)))
    assert len(a.requests) == 2


async def test_a_filtered_category_never_arrives_and_a_chosen_one_brings_its_reversal(
    kube: FakeKube, a: WebhookReceiver
) -> None:
    watcher = Watcher(kube, notify=NotifySpec(SECRET, categories=frozenset({"cancelled"})))
    watcher.urls(json_url(a))
    await watcher.run(fogis())
    told = await watcher.run(fogis(moved(2)))
    assert told.results == {"filtered"}
    assert not a.requests
    # Counted as told: neither the next run nor a wider choice later brings it up.
    assert (await watcher.run(fogis(moved(2)))).results == frozenset()
    watcher.notify = NotifySpec(SECRET)
    await watcher.run(fogis(moved(2)))
    assert not a.requests

    watcher.notify = NotifySpec(SECRET, categories=frozenset({"cancelled"}))
    told = await watcher.run(fogis(moved(2), cancelled(3)))
    assert told.results == {"delivered"}
    told = await watcher.run(fogis(moved(2, "21:00"), cancelled(3, yes=False)))
    assert told.results == {"delivered", "filtered"}
    first, second = (text(got) for got in a.requests)
    assert "inställd" in first
    assert "inte längre inställd" in second
    assert "21:00" not in first + second


NIGHT = datetime.combine(DAY, time(23), tzinfo=ZONE).astimezone(UTC)
AFTER_MIDNIGHT = datetime.combine(SOON, time(1), tzinfo=ZONE).astimezone(UTC)
MORNING = datetime.combine(SOON, time(7), tzinfo=ZONE).astimezone(UTC)
QUIET = NotifySpec(SECRET, quiet_hours=QuietHours(time(22), time(7)))


async def test_quiet_hours_hold_all_but_urgent_changes_for_one_digest(
    kube: FakeKube, a: WebhookReceiver
) -> None:
    watcher = Watcher(kube, notify=QUIET)
    watcher.urls(json_url(a))
    await watcher.run(fogis(ids=(1, 2, 3)))

    # Match 1 kicks off tomorrow: told at once, marked urgent; match 2 waits.
    told = await watcher.run(fogis(moved(1), moved(2)), now=NIGHT)
    assert told.results == {"delivered", "held"}
    (urgent,) = a.requests
    assert text(urgent).startswith("Brådskande")
    assert team(1) in text(urgent)
    assert team(2) not in text(urgent)
    assert told.people.held_changes == 1
    assert told.people.held_until == MORNING

    # Moved back overnight: no change at all; match 3's move is held too.
    told = await watcher.run(fogis(moved(1), moved(3)), now=AFTER_MIDNIGHT)
    assert len(a.requests) == 1
    assert (told.people.held_changes, told.people.held_until) == (1, MORNING)

    told = await watcher.digest(MORNING + timedelta(seconds=30))
    assert isinstance(told.notice, Detection)
    assert len(a.requests) == 2
    digest = text(a.requests[1])
    assert digest.startswith("Matchlistan i sammandrag: 1 ändring")
    assert team(3) in digest
    assert team(2) not in digest
    assert team(1) not in digest
    assert (told.people.held_changes, told.people.held_until) == (0, None)
    await watcher.run(fogis(moved(1), moved(3)), now=MORNING + timedelta(hours=1))
    assert len(a.requests) == 2


async def test_a_failure_streak_is_told_once_and_its_end_once(
    kube: FakeKube, a: WebhookReceiver
) -> None:
    watcher = Watcher(kube)
    watcher.urls(json_url(a))
    await watcher.run(fogis())
    for run in range(1, 5):
        await watcher.run(None, failed="LoginFailed")
        assert len(a.requests) == (0 if run < 3 else 1), f"after failed run {run}"
    assert "FOGIS avvisade inloggningen" in text(a.requests[0])
    assert watcher.status.told_reason == "LoginFailed"
    # Failures people are not told about neither count nor end it.
    await watcher.run(fogis(), failed="WebhookFailing")
    assert len(a.requests) == 1
    await watcher.run(fogis())
    assert len(a.requests) == 2
    assert text(a.requests[1]).startswith("Bevakningen fungerar igen")
    assert watcher.status == PeopleStatus()
    await watcher.run(fogis())
    assert len(a.requests) == 2


async def test_a_failure_message_waits_for_quiet_hours_end(
    kube: FakeKube, a: WebhookReceiver
) -> None:
    watcher = Watcher(kube, notify=QUIET)
    watcher.urls(json_url(a))
    await watcher.run(fogis())
    for _ in range(3):
        told = await watcher.run(None, now=NIGHT, failed="SourceUnavailable")
    assert not a.requests
    assert told.people.held_until == MORNING
    assert told.people.told_reason is None

    told = await watcher.digest(MORNING + timedelta(seconds=30), reason="SourceUnavailable")
    (got,) = a.requests
    assert "FOGIS går inte att nå" in text(got)
    assert told.people.told_reason == "SourceUnavailable"
    assert told.people.held_until is None


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        (["{good}", "json://?token=" + TOKEN], 2),
        (["json://", "{good}"], 1),
        # As the person editing the Secret counts: blank and comment lines too.
        (["# Annas telefon", "{good}", "", "# gamla", "json://?token=" + TOKEN], 5),
    ],
)
async def test_an_unknown_url_is_named_by_its_line_never_itself(
    kube: FakeKube, a: WebhookReceiver, lines: list[str], line: int
) -> None:
    watcher = Watcher(kube)
    watcher.urls(*(entry.format(good=json_url(a)) for entry in lines))
    await watcher.run(fogis())
    told = await watcher.run(fogis(moved(2)))
    assert isinstance(told.notice, InvalidSpec)
    assert told.notice.reason == "InvalidNotifySecret"
    assert f"line {line} is not an Apprise URL" in told.notice.message
    assert TOKEN not in told.notice.message
    assert len(a.requests) == 1  # the good URL was told all the same


async def test_told_changes_are_kept_once_the_people_state_is_saved(
    kube: FakeKube, a: WebhookReceiver
) -> None:
    """A restart (a new People, the same ConfigMap) sends nothing twice."""
    watcher = Watcher(kube)
    watcher.urls(json_url(a))
    await watcher.run(fogis())
    await watcher.run(fogis(moved(2)))
    restarted = replace(watcher)
    await restarted.run(fogis(moved(2)))
    assert len(a.requests) == 1


async def test_a_failed_fetch_in_the_night_keeps_what_was_held_for_the_digest(
    kube: FakeKube, a: WebhookReceiver
) -> None:
    watcher = Watcher(kube, notify=QUIET)
    watcher.urls(json_url(a))
    await watcher.run(fogis())
    await watcher.run(fogis(moved(2)), now=NIGHT)
    told = await watcher.run(None, now=AFTER_MIDNIGHT, failed="SourceUnavailable")
    assert (told.people.held_changes, told.people.held_until) == (1, MORNING)
    await watcher.digest(MORNING + timedelta(seconds=30))
    (got,) = a.requests
    assert team(2) in text(got)


async def test_a_failure_told_late_is_told_once_and_only_for_a_failed_fetch(
    kube: FakeKube, a: WebhookReceiver
) -> None:
    """The third failed login's message was not accepted; the next runs fetch again but the
    webhook fails (a failure people are not told about): no message saying FOGIS is down,
    run after run."""
    watcher = Watcher(kube)
    watcher.urls(json_url(a))
    await watcher.run(fogis())
    a.enqueue(500)
    for _ in range(3):
        await watcher.run(None, failed="LoginFailed")
    assert len(a.requests) == 1  # refused: still owed
    for _ in range(2):
        await watcher.run(fogis(), failed="WebhookFailing")
    assert len(a.requests) == 1
    await watcher.run(None, failed="LoginFailed")
    assert len(a.requests) == 2
    assert "FOGIS avvisade inloggningen" in text(a.requests[1])
    await watcher.run(None, failed="LoginFailed")
    assert len(a.requests) == 2


async def test_the_same_url_twice_is_told_once(kube: FakeKube, a: WebhookReceiver) -> None:
    watcher = Watcher(kube)
    watcher.urls(json_url(a), json_url(a))
    await watcher.run(fogis())
    await watcher.run(fogis(cancelled(2)))
    assert len(a.requests) == 1
