"""The detection pass against test doubles at its seams (source, store, notifier): baseline,
at-least-once delivery, and failures that must leave the snapshot alone."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.adapters.snapshots import SnapshotTooLarge
from controller.core.delivery import Attempt, DeliveryFailed, DeliveryResult
from controller.core.detection import ChangesPending
from controller.core.diff import Snapshot, Window
from controller.core.errors import SourceUnavailable
from controller.core.model import WatcherRef
from controller.runtime import detection as detection_module
from controller.runtime.detection import UnconfirmedDrop, detect
from controller.runtime.runner import attempt_code
from tests.fakes.fogis.records import make_match

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
WATCHER = WatcherRef("referees", "anna", "uid-1")
STOCKHOLM = ZoneInfo("Europe/Stockholm")


class Source:
    def __init__(self, matches: list[dict[str, Any]]) -> None:
        self.matches = matches
        self.error: Exception | None = None
        self.windows: list[Window] = []

    async def fetch(self, today: date, window: Window) -> list[Any]:
        self.windows.append(window)
        if self.error is not None:
            raise self.error
        return self.matches


class Store:
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.saves = 0
        self.too_large = False

    async def load(self) -> Snapshot | None:
        return self.snapshot

    async def check(self, snapshot: Snapshot) -> None:
        if self.too_large:
            raise SnapshotTooLarge("too large")

    async def save(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.saves += 1


class Notifier:
    def __init__(self) -> None:
        self.bodies: list[tuple[bytes, str]] = []
        self.fail = False
        self.in_doubt = False  # fail by timing out after the request was sent

    async def notify(self, body: bytes, delivery_id: str, occurred: datetime) -> DeliveryResult:
        self.bodies.append((body, delivery_id))
        if self.in_doubt:
            attempt = Attempt(None, "timed out after 5s", 5.0, in_doubt=True)
            raise DeliveryFailed("webhook timed out", attempts=(attempt,), last_status_code=None)
        if self.fail:
            attempt = Attempt(503, None, 0.01)
            raise DeliveryFailed("webhook answered 503", attempts=(attempt,), last_status_code=503)
        return DeliveryResult(204, (Attempt(204, None, 0.01),))


async def run(
    source: Source, store: Store, notifier: Notifier | None, held_back: str | None = None
) -> Any:
    return await detect(
        watcher=WATCHER,
        zone=STOCKHOLM,
        days=(7, 30),
        trigger="manual",
        now=NOW,
        source=source,
        store=store,
        notifier=notifier,
        held_back=held_back,
    )


def matches(*overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
    base = [make_match(1000 + i, on=date(2026, 12, 1 + i)) for i in range(3)]
    return [{**m, **o} for m, o in zip(base, [*overrides, {}, {}, {}], strict=False)]


async def test_baseline_stores_and_sends_nothing() -> None:
    source, store, notifier = Source(matches()), Store(), Notifier()
    detection = await run(source, store, notifier)
    assert detection.baseline
    assert detection.match_count == 3
    assert detection.changes == []
    assert detection.report["changes"] == []
    assert store.saves == 1
    assert notifier.bodies == []
    # The window is computed in the watcher's zone: 28 Nov minus 7 days, plus 30 days.
    assert source.windows == [Window(date(2026, 11, 21), date(2026, 12, 28))]


async def test_no_change_no_request_no_write() -> None:
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    detection = await run(source, store, notifier)
    assert not detection.baseline
    assert detection.summary.total == 0
    assert notifier.bodies == []
    assert store.saves == 1


async def test_change_is_delivered_then_snapshot_advances() -> None:
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    source.matches = matches({"avsparkstid": "21:30"})
    detection = await run(source, store, notifier)
    assert [c.categories for c in detection.changes] == [("time_change",)]
    assert len(notifier.bodies) == 1
    assert notifier.bodies[0][1] == detection.report["id"]
    assert detection.delivery.status_code == 204
    # The baseline, the delivery written ahead (see the crash test below), the advance.
    assert store.saves == 3


async def test_failed_delivery_keeps_snapshot_and_the_same_id() -> None:
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    baseline = store.snapshot
    source.matches = matches({"installd": True})
    notifier.fail = True
    for _ in range(2):
        with pytest.raises(ChangesPending) as caught:
            await run(source, store, notifier)
        assert [c.categories for c in caught.value.changes] == [("cancelled",)]
        assert store.snapshot is baseline
    ids = {delivery_id for _, delivery_id in notifier.bodies}
    assert len(ids) == 1  # a retried delivery of the same change carries the same id
    notifier.fail = False
    detection = await run(source, store, notifier)
    assert detection.report["id"] in ids
    assert store.snapshot is not baseline


async def test_a_list_seen_before_is_a_new_transition_with_a_new_id() -> None:
    """A->B->A->B: three transitions, three ids (the second A->B is not a repeat of the first)."""
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    for flag in (True, False, True):  # cancelled, uncancelled, cancelled again
        source.matches = matches({"installd": flag})
        await run(source, store, notifier)
    ids = [delivery_id for _, delivery_id in notifier.bodies]
    assert len(ids) == 3
    assert len(set(ids)) == 3
    assert store.snapshot is not None
    assert store.snapshot.revision == 4  # the baseline, then three accepted transitions


async def test_a_retried_transition_keeps_its_id_across_a_restart() -> None:
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    source.matches = matches({"installd": True})
    notifier.fail = True
    with pytest.raises(ChangesPending):
        await run(source, store, notifier)
    assert store.snapshot is not None
    store.snapshot = Snapshot.from_json(store.snapshot.to_json())  # what a new process reads
    notifier.fail = False
    await run(source, store, notifier)
    first, second = (delivery_id for _, delivery_id in notifier.bodies)
    assert first == second


async def test_a_snapshot_too_large_to_store_is_never_delivered() -> None:
    """Delivering first and failing to record after would redeliver the change for ever."""
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    baseline = store.snapshot
    source.matches = matches({"installd": True})
    store.too_large = True
    with pytest.raises(SnapshotTooLarge):
        await run(source, store, notifier)
    assert notifier.bodies == []
    assert store.snapshot is baseline


async def test_failed_fetch_is_never_compared() -> None:
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    source.error = SourceUnavailable("FOGIS answered HTTP 500")
    with pytest.raises(SourceUnavailable):
        await run(source, store, notifier)
    assert store.saves == 1
    assert notifier.bodies == []


async def test_without_notifier_snapshot_advances_at_once() -> None:
    source, store = Source(matches()), Store()
    await run(source, store, None)
    source.matches = matches()[1:]
    detection = await run(source, store, None)
    assert [c.type for c in detection.changes] == ["removed"]
    assert detection.delivery is None
    assert store.saves == 2


@pytest.mark.parametrize(
    ("status", "label"),
    [
        (None, "error"),
        (200, "200"),
        (204, "204"),
        (429, "429"),
        (503, "503"),
        (418, "418"),
        (599, "other"),
        (777, "other"),
        (999, "other"),
        (100_000, "other"),
    ],
)
def test_attempt_code_labels_are_bounded(status: int | None, label: str) -> None:
    """A receiver inventing status codes must not mint a metric series per code."""
    assert attempt_code(status) == label


async def test_a_sudden_empty_list_is_reported_only_when_the_next_fetch_confirms_it() -> None:
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    baseline = store.snapshot
    source.matches = []
    with pytest.raises(UnconfirmedDrop) as caught:
        await run(source, store, notifier)
    assert "without 3 of the matches" in caught.value.message
    assert notifier.bodies == []
    assert store.snapshot is baseline
    # The next run sees the same empty list: confirmed, reported and stored.
    detection = await run(source, store, notifier, held_back=caught.value.digest)
    assert detection.summary.removed == 3
    assert len(notifier.bodies) == 1
    assert store.snapshot is not baseline


async def test_a_glitch_that_does_not_repeat_is_never_reported() -> None:
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    source.matches = []
    with pytest.raises(UnconfirmedDrop) as caught:
        await run(source, store, notifier)
    source.matches = matches()  # FOGIS is back to normal
    detection = await run(source, store, notifier, held_back=caught.value.digest)
    assert detection.summary.total == 0
    assert notifier.bodies == []


def _payload(body: bytes) -> Any:
    return json.loads(body)


async def _cancellation_failed(how: str) -> tuple[Source, Store, Notifier, Snapshot]:
    """A baseline, then a cancellation whose delivery fails `how` ("refused" or "in_doubt");
    returns the doubles (failing no more) and the baseline snapshot."""
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    assert store.snapshot is not None
    baseline = store.snapshot
    source.matches = matches({"installd": True})
    notifier.fail, notifier.in_doubt = how == "refused", how == "in_doubt"
    with pytest.raises(ChangesPending):
        await run(source, store, notifier)
    notifier.fail = notifier.in_doubt = False
    return source, store, notifier, baseline


async def test_an_in_doubt_delivery_is_undone_when_the_list_reverts() -> None:
    """Cancelled, delivered in doubt (timed out after sending), then uncancelled at FOGIS: the
    receiver may have applied the cancellation, so it is told the match is on again."""
    source, store, notifier, baseline = await _cancellation_failed("in_doubt")
    assert store.snapshot is not None
    assert store.snapshot.digest == baseline.digest  # not advanced ...
    assert store.snapshot.in_doubt is not None  # ... but what was sent is remembered
    source.matches = matches()  # FOGIS reverts
    detection = await run(source, store, notifier)
    (cancel, uncancel) = (_payload(body) for body, _ in notifier.bodies)
    assert [c["categories"] for c in cancel["changes"]] == [["cancelled"]]
    assert [c["categories"] for c in uncancel["changes"]] == [["uncancelled"]]
    assert uncancel["id"] != cancel["id"]
    assert detection.summary.total == 1
    assert store.snapshot.in_doubt is None
    assert store.snapshot.revision == baseline.revision + 1


async def test_a_refused_delivery_is_not_undone() -> None:
    """A 503 says the receiver did not take it: when the list reverts, there is nothing to say."""
    source, store, notifier, _ = await _cancellation_failed("refused")
    source.matches = matches()
    detection = await run(source, store, notifier)
    assert detection.summary.total == 0
    assert len(notifier.bodies) == 1  # only the refused one


async def test_a_process_killed_mid_delivery_still_undoes_it_when_the_list_reverts() -> None:
    """Found by the soak (seed 424242): the receiver took the cancellation, the process died
    before the answer reached it (SIGKILL, OOM), FOGIS went back. The delivery was written ahead,
    so the next run tells the receiver the match is on again instead of saying nothing."""
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    source.matches = matches({"installd": True})

    class Killed(BaseException):
        """What the process sees of SIGKILL: nothing after this point runs."""

    async def dies(body: bytes, delivery_id: str, occurred: datetime) -> DeliveryResult:
        notifier.bodies.append((body, delivery_id))  # the receiver applied it ...
        raise Killed  # ... and the process died before the answer

    real, notifier.notify = notifier.notify, dies  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await run(source, store, notifier)
    notifier.notify = real  # type: ignore[method-assign]
    source.matches = matches()  # FOGIS reverts before the next run
    detection = await run(source, store, notifier)
    assert [c.categories for c in detection.changes] == [("uncancelled",)]
    (cancel, uncancel) = (_payload(body) for body, _ in notifier.bodies)
    assert uncancel["id"] != cancel["id"]


async def test_a_transition_back_and_forth_in_doubt_never_reuses_an_id() -> None:
    """Found by the soak (seed 31, in_doubt_flipflop): A->B in doubt, back to A in doubt, then B
    again. The third delivery is a new transition: under the first one's id a receiver that
    drops repeated ids (as it should) would stay at A while FOGIS says B."""
    source, store, notifier, _ = await _cancellation_failed("in_doubt")  # A -> B, in doubt
    notifier.in_doubt = True
    source.matches = matches()  # back to A, in doubt again
    with pytest.raises(ChangesPending):
        await run(source, store, notifier)
    notifier.in_doubt = False
    source.matches = matches({"installd": True})  # B again, accepted
    await run(source, store, notifier)
    ids = [delivery_id for _, delivery_id in notifier.bodies]
    assert len(ids) == len(set(ids)) == 3
    assert [c["categories"] for c in _payload(notifier.bodies[-1][0])["changes"]] == [["cancelled"]]


async def test_every_value_sent_in_doubt_is_remembered_not_only_the_last() -> None:
    """Found by the soak (seed 424242, w082): a time change went out in doubt (19:00 -> 21:30),
    then its revert in doubt (21:30 -> 19:00), then the same list again. The receiver may hold
    either time, so the redelivery still carries the revert, under the same id as before, with
    the same changes; remembering only the last value sent dropped the revert from it."""
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    notifier.in_doubt = True
    source.matches = matches({"avsparkstid": "21:30"})  # B, in doubt
    with pytest.raises(ChangesPending):
        await run(source, store, notifier)
    source.matches = matches()  # back to A, in doubt too
    with pytest.raises(ChangesPending):
        await run(source, store, notifier)
    notifier.in_doubt = False
    detection = await run(source, store, notifier)  # A again: the same transition
    revert, again = (_payload(body) for body, _ in notifier.bodies[1:])
    assert again["id"] == revert["id"]
    assert again["changes"] == revert["changes"]
    assert [c.categories for c in detection.changes] == [("time_change",)]


async def test_an_in_doubt_delivery_is_redelivered_with_its_id() -> None:
    source, store, notifier, _ = await _cancellation_failed("in_doubt")
    detection = await run(source, store, notifier)  # the same list: the same transition
    first, second = (delivery_id for _, delivery_id in notifier.bodies)
    assert first == second
    assert [c.categories for c in detection.changes] == [("cancelled",)]
    assert store.snapshot is not None
    assert store.snapshot.in_doubt is None


async def test_an_in_doubt_new_match_is_removed_again_when_it_goes_away() -> None:
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    source.matches = [*matches(), make_match(4242, on=date(2026, 12, 20))]
    notifier.in_doubt = True
    with pytest.raises(ChangesPending):
        await run(source, store, notifier)
    notifier.in_doubt = False
    source.matches = matches()
    await run(source, store, notifier)
    undo = _payload(notifier.bodies[-1][0])
    assert [(c["type"], c["matchId"]) for c in undo["changes"]] == [("removed", "4242")]


async def test_the_cpu_part_of_a_pass_runs_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Structural, not timed: every pure step of a pass (normalising, comparing, undoing,
    # building and encoding the report, the write-ahead) records the thread it ran on, and
    # none may be the event loop's: a big list would stall every other watcher there.
    threads: dict[str, set[int]] = {}

    def spy(name: str, real: Any) -> Any:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            threads.setdefault(name, set()).add(threading.get_ident())
            return real(*args, **kwargs)

        return recorded

    steps = ("normalise_all", "compare", "sudden_drop", "undo", "build_report", "encode_report")
    for name in steps:
        monkeypatch.setattr(detection_module, name, spy(name, getattr(detection_module, name)))
    monkeypatch.setattr(Snapshot, "attempt", spy("attempt", Snapshot.attempt))
    source, store, notifier = Source(matches()), Store(), Notifier()
    await run(source, store, notifier)
    source.matches = matches(*({"avsparkstid": "13:30", "tid": None} for _ in range(3)))
    changed = await run(source, store, notifier)

    assert changed.summary.changed == 3
    assert set(threads) == {*steps, "attempt"}
    loop = threading.get_ident()
    assert {name for name, seen in threads.items() if loop in seen} == set()
