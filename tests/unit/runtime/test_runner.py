"""The runner's per-watcher state belongs to one object (uid), not to a name; its people's pass
wired to the run's outcome and status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kubernetes import client

from controller.adapters.kube import Kube
from controller.adapters.metrics import Metrics
from controller.adapters.peoplestore import KubeBacking
from controller.adapters.statefiles import merge_patch
from controller.core.config import Settings
from controller.core.model import WatcherRef, parse_spec
from controller.core.outcome import Outcome
from controller.core.status import WatcherStatus, digest_claim, status_after_run
from controller.core.trigger import Digest, Manual, Trigger
from controller.runtime.runner import WatcherRunner
from tests.fakes.fogis.records import make_match
from tests.fakes.fogis.server import FakeFogis
from tests.fakes.receiver import WebhookReceiver
from tests.unit.fake_kube import FakeKube
from tests.unit.loopback import json_url, loopback_only

BASE = "https://fogis.test/mdk"


async def test_a_deleted_watcher_is_forgotten_without_the_one_recreated_under_its_name() -> None:
    """Deleted during a run, the old object is released when its run ends: the new object of
    the same name has logged in and held back a drop by then (its login backoff is in its own
    status, tests/unit/core/test_loginguard.py)."""
    api = client.ApiClient()
    kube = Kube(api, api, 1)  # never called: no run here
    runner = WatcherRunner(backing=KubeBacking(kube), settings=Settings(), metrics=Metrics())
    old, new = WatcherRef("ns", "anna", "uid-old"), WatcherRef("ns", "anna", "uid-new")
    for ref in (old, new):
        runner._sessions.get(ref.uid, BASE)
        runner._held_back[ref.uid] = f"digest of {ref.uid}"
    session = runner._sessions.get(new.uid, BASE)

    await runner.forget(old)

    assert runner._sessions.get(new.uid, BASE) is session
    assert runner._held_back == {new.uid: "digest of uid-new"}
    await runner.aclose()
    kube.close()


# --- the people's pass, wired: a real WatcherRunner against fake FOGIS and Kubernetes ---------

ZONE = ZoneInfo("Europe/Stockholm")
USER, PASSWORD = "anna.andersson", "s3cret-Pa55word"
REF = WatcherRef("referees", "anna", "uid-1")
TODAY = datetime.now(ZONE).date()
NIGHT = datetime.combine(TODAY, time(23), tzinfo=ZONE).astimezone(UTC)
MORNING = datetime.combine(TODAY + timedelta(days=1), time(7), tzinfo=ZONE).astimezone(UTC)


class Watcher:
    """One MatchWatcher's runs, its status kept as the scheduler writes it."""

    def __init__(self, runner: WatcherRunner, fogis: FakeFogis, **spec: Any) -> None:
        self.runner = runner
        self.spec = {
            "schedule": "0 * * * *",
            "timeZone": "Europe/Stockholm",
            "source": {
                "fogis": {"baseUrl": fogis.base_url, "credentialsSecretRef": {"name": "creds"}}
            },
            "notify": {"secretRef": {"name": "notify"}},
            **spec,
        }
        self.status: dict[str, Any] = {}
        self.runs = 0

    async def run(self, started: datetime | None = None) -> Outcome:
        self.runs += 1  # manual triggers: a rejected login is tried again at once
        return await self._run(Manual(f"t{self.runs}"), started or datetime.now(UTC))

    async def digest(self, started: datetime) -> Outcome:
        previous = WatcherStatus.parse(self.status)
        assert previous.people.held_until is not None
        due = previous.people.held_until
        self.status = merge_patch(self.status, digest_claim(previous, now=started, generation=1))
        return await self._run(Digest(due), started)

    async def _run(self, trigger: Trigger, started: datetime) -> Outcome:
        previous = WatcherStatus.parse(self.status)
        outcome = await self.runner.run(
            REF, parse_spec(self.spec), trigger, previous=previous, zone=ZONE, started=started
        )
        patch = status_after_run(previous, outcome.record, next_time=None, generation=1)
        self.status = merge_patch(self.status, patch)
        return outcome


@pytest.fixture
def fogis() -> Iterator[FakeFogis]:
    matches = [make_match(i, on=TODAY + timedelta(days=10 + i)) for i in range(1, 11)]
    with FakeFogis(users={USER: PASSWORD}, matches=matches) as fake:
        yield fake


@pytest.fixture
def phone() -> Iterator[WebhookReceiver]:
    with loopback_only(), WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
async def runner(phone: WebhookReceiver) -> AsyncIterator[tuple[WatcherRunner, FakeKube]]:
    kube = FakeKube()
    kube.secrets[REF.namespace, "creds"] = {"username": USER, "password": PASSWORD}
    kube.secrets[REF.namespace, "notify"] = {"urls": json_url(phone)}
    runner = WatcherRunner(
        backing=KubeBacking(kube),  # type: ignore[arg-type]
        settings=Settings(),
        metrics=Metrics(),
    )
    yield runner, kube
    await runner.aclose()


def messages(phone: WebhookReceiver) -> list[str]:
    return [f"{r.payload['title']}\n{r.payload['message']}" for r in phone.requests]


async def test_three_rejected_logins_are_told_once_and_the_fixed_password_once_more(
    runner: tuple[WatcherRunner, FakeKube], fogis: FakeFogis, phone: WebhookReceiver
) -> None:
    watcher = Watcher(runner[0], fogis)
    await watcher.run()
    runner[1].secrets[REF.namespace, "creds"] = {"username": USER, "password": "wrong"}
    for run in range(1, 5):
        outcome = await watcher.run()
        assert outcome.record.readiness.reason == "LoginFailed"
        assert len(phone.requests) == (0 if run < 3 else 1), f"after rejected login {run}"
    assert "FOGIS avvisade inloggningen" in messages(phone)[0]
    assert watcher.status["notify"]["failureNotified"]["reason"] == "LoginFailed"
    assert watcher.status["notify"]["failures"] == 4

    runner[1].secrets[REF.namespace, "creds"] = {"username": USER, "password": PASSWORD}
    await watcher.run()
    await watcher.run()
    assert len(phone.requests) == 2
    assert messages(phone)[1].startswith("Bevakningen fungerar igen")
    assert "failureNotified" not in watcher.status["notify"]
    assert watcher.status["notify"]["failures"] == 0


async def test_no_changes_are_invented_when_the_webhook_pass_fails_before_comparing(
    runner: tuple[WatcherRunner, FakeKube], fogis: FakeFogis, phone: WebhookReceiver
) -> None:
    """Issue 22's invented changes: the webhook's Secret is missing, so only the people's pass
    can hold back an empty FOGIS answer until a second fetch confirms it."""
    watcher = Watcher(runner[0], fogis, webhook={"secretRef": {"name": "missing"}})
    await watcher.run()
    fogis.set_matches([])
    outcome = await watcher.run()
    assert outcome.record.readiness.reason == "SourceUnavailable"
    assert not phone.requests
    fogis.set_matches([make_match(i, on=TODAY + timedelta(days=10 + i)) for i in range(1, 11)])
    await watcher.run()  # it was a glitch: nothing to tell
    assert not phone.requests
    fogis.set_matches([])
    await watcher.run()
    fogis.set_matches([])
    await watcher.run()  # confirmed: now it is told
    (told,) = messages(phone)
    assert told.startswith("Matchlistan: 10 ändringar")


async def test_quiet_hours_end_with_one_digest_and_no_fogis_fetch(
    runner: tuple[WatcherRunner, FakeKube], fogis: FakeFogis, phone: WebhookReceiver
) -> None:
    watcher = Watcher(
        runner[0],
        fogis,
        notify={"secretRef": {"name": "notify"}, "quietHours": {"start": "22:00", "end": "07:00"}},
    )
    await watcher.run(NIGHT - timedelta(hours=2))
    fogis.set_matches(
        [make_match(i, on=TODAY + timedelta(days=10 + i), avsparkstid="20:00") for i in (1, 2)]
        + [make_match(i, on=TODAY + timedelta(days=10 + i)) for i in range(3, 11)]
    )
    await watcher.run(NIGHT)
    assert not phone.requests
    assert watcher.status["notify"]["heldChanges"] == 2
    assert WatcherStatus.parse(watcher.status).people.held_until == MORNING
    fetches = fogis.fetches

    outcome = await watcher.digest(MORNING + timedelta(seconds=20))
    assert fogis.fetches == fetches  # from the stored list
    (digest,) = messages(phone)
    assert digest.startswith("Matchlistan i sammandrag: 2 ändringar")
    assert outcome.note.reason == "DigestSent"
    assert watcher.status["notify"]["heldChanges"] == 0
    assert "heldUntil" not in watcher.status["notify"]
    assert watcher.status["executionCount"] == 2  # a digest is no run
