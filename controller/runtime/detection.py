"""One detection pass: fetch → compare → deliver → advance the snapshot. No Kubernetes here.

`detect` is the pass itself, written against three small seams (a match source, a snapshot store
and a notifier) so the operator (controller/runtime/runner.py) and run-once share it.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx

from controller.adapters.fogis import FogisClient, FogisSession
from controller.adapters.snapshots import SnapshotStore
from controller.adapters.webhook import WebhookSender, WebhookTarget
from controller.core.delivery import DeliveryFailed, DeliveryResult, WebhookGone
from controller.core.detection import ChangesPending, Detection
from controller.core.diff import (
    MatchChange,
    Snapshot,
    Summary,
    Window,
    change_order,
    compare,
    normalise_all,
    sudden_drop,
    summarise,
    undo,
    window_for,
)
from controller.core.errors import DetectorError, SourceUnavailable
from controller.core.model import Credentials, WatcherRef
from controller.core.report import build_report, delivery_id, encode_report
from controller.runtime.politeness import Politeness


class MatchSource(Protocol):
    async def fetch(self, today: date, window: Window) -> list[Any]: ...


class Notifier(Protocol):
    async def notify(self, body: bytes, delivery_id: str, occurred: datetime) -> DeliveryResult: ...


class UnconfirmedDrop(SourceUnavailable):
    """The list lost all or most of its matches at once: held back until a fetch confirms it."""

    def __init__(self, message: str, digest: str) -> None:
        super().__init__(message)
        self.digest = digest


@dataclass(frozen=True)
class _Compared:
    """What the CPU part of a pass made of the fetched list and the stored snapshot."""

    new: Snapshot
    changes: list[MatchChange]
    summary: Summary
    report: dict[str, Any]
    body: bytes  # the report's exact bytes, as delivered and signed
    written_ahead: Snapshot | None  # `old` with this delivery recorded as attempted


def _compare(
    raw: list[Any],
    old: Snapshot | None,
    window: Window,
    *,
    watcher: WatcherRef,
    trigger: str,
    now: datetime,
    held_back: str | None,
    confirmed: bool,
    writes_ahead: bool,
) -> _Compared:
    """The CPU part of a pass, run in a thread: normalising, digesting, comparing, building and
    encoding thousands of changed matches would stall every other watcher on the event loop."""
    new = Snapshot(normalise_all(raw), revision=(old.revision if old else 0) + 1)
    if raw and not new.matches:
        # Records without a match id: FOGIS changed shape. Comparing would report every match
        # as removed and then re-added; failing keeps the snapshot until the client is fixed.
        raise SourceUnavailable(
            f"FOGIS returned {len(raw)} records but none with a match id; the answer was not used"
        )
    changes = [] if old is None else compare(old, new, window)
    if (
        not confirmed
        and old is not None
        and new.digest != held_back
        and sudden_drop(old, changes, window)
    ):
        # `held_back`: the digest of the list the previous run held back; the same list again
        # confirms it. Nothing is compared, delivered or stored until then.
        removed = sum(1 for change in changes if change.type == "removed")
        raise UnconfirmedDrop(
            f"FOGIS suddenly answered without {removed} of the matches in the window; not "
            "reported until the next run's fetch confirms it",
            new.digest,
        )
    written_ahead = None
    if old is not None:
        changes = sorted([*changes, *undo(old, new, window, changes)], key=change_order)
        if changes and writes_ahead:
            sent = {c.match_id: new.matches.get(c.match_id) for c in changes}
            written_ahead = old.attempt(new.digest, sent)
    report = build_report(
        watcher=watcher,
        delivery_id=delivery_id(
            watcher.uid,
            old.revision if old else 0,
            old.digest if old else "",
            new.digest,
            old.retargets_toward(new.digest) if old else 0,
        ),
        detected_at=now,
        trigger=trigger,
        changes=changes,
    )
    body = encode_report(report)
    return _Compared(new, changes, summarise(changes), report, body, written_ahead)


async def detect(
    *,
    watcher: WatcherRef,
    zone: ZoneInfo,
    days: tuple[int, int],
    trigger: str,
    now: datetime,
    source: MatchSource,
    store: SnapshotStore,
    notifier: Notifier | None,
    held_back: str | None = None,
    confirmed: bool = False,
) -> Detection:
    """Fetch, compare with the last accepted snapshot, deliver, then advance the snapshot.

    `confirmed`: the list was already accepted by another pass of this run (the notify pass
    after the webhook's), so a sudden drop is not held back again.

    The snapshot advances only after the notifier accepted the change (at-least-once): a failed
    delivery leaves it where it was, so the next pass diffs against it again and the same
    transition carries the same delivery id. A failed fetch raises before anything is compared.
    """
    today = now.astimezone(zone).date()
    window = window_for(today, days[0], days[1])
    raw = await source.fetch(today, window)
    old = await store.load()
    found = await asyncio.to_thread(
        _compare,
        raw,
        old,
        window,
        watcher=watcher,
        trigger=trigger,
        now=now,
        held_back=held_back,
        confirmed=confirmed,
        writes_ahead=notifier is not None,
    )
    new, changes, report = found.new, found.changes, found.report
    # Also when nothing reportable changed but the digest did (a match slid out of the window),
    # or an in-doubt delivery is now settled.
    advances = old is None or old.digest != new.digest or old.in_doubt is not None
    if advances:
        await store.check(new)
    delivery: DeliveryResult | None = None
    if changes and notifier is not None:
        if found.written_ahead is not None:
            # Written ahead: a receiver may apply this and the process die before the answer
            # (or the snapshot write). Until the snapshot advances, what was sent counts as in
            # doubt, so the next run also moves those matches to whatever FOGIS says then.
            await store.save(found.written_ahead)
        try:
            delivery = await notifier.notify(found.body, report["id"], now)
        except DeliveryFailed as failure:
            if old is not None and not failure.in_doubt:
                # Refused with an answer: nothing was applied, so nothing is in doubt.
                await store.save(old)
            raise ChangesPending(failure, changes, len(new.matches), report["id"]) from None
        except DetectorError:
            # Refused before anything was sent (a host not allowed, an unusable Secret).
            if old is not None:
                await store.save(old)
            raise
    if advances:
        await store.save(new)
    return Detection(
        baseline=old is None,
        match_count=len(new.matches),
        changes=changes,
        summary=found.summary,
        report=report,
        delivery=delivery,
    )


class FogisSource:
    """A watcher's FOGIS session plus the Secret its credentials come from (read every run, so
    a rotated password is picked up without a restart), taking its turns at FOGIS's host."""

    def __init__(
        self,
        client: FogisClient,
        session: FogisSession,
        credentials: Callable[[], Awaitable[Credentials]],
        budget_seconds: float,
        politeness: Politeness,
    ) -> None:
        self._client = client
        self._session = session
        self._credentials = credentials
        self._budget = budget_seconds
        self._politeness = politeness
        self._host = httpx.URL(session.base_url).host or ""
        self.fetched: list[Any] | None = None  # the list, once the credentials were accepted
        self._used_prepaid = False

    async def fetch(self, today: date, window: Window) -> list[Any]:
        credentials = await self._credentials()
        # A run that will log in waits for its login turn before it takes an exchange turn, so
        # the turns are held by exchanges under way, never by runs queueing for the login rate
        # (a storm of new sessions would hold them all, and a trigger would queue behind it).
        prepaid = self._session.needs_login(credentials)
        if prepaid:
            await self._politeness.login(self._host)
        try:
            # One deadline for the whole exchange: per-step timeouts alone let a server that
            # trickles bytes hold a pooled connection for ever. Waiting for a turn (to start,
            # or to log in) is not part of it: in a storm the queue is long, not FOGIS slow.
            async with (
                self._politeness.exchange(self._host),
                asyncio.timeout(self._budget) as deadline,
            ):
                matches = await self._client.fetch_matches(
                    self._session,
                    credentials,
                    window,
                    today,
                    login_turn=lambda: self._login_turn(deadline, prepaid),
                )
        except TimeoutError:
            raise SourceUnavailable(
                f"FOGIS did not complete the login and match list within {self._budget:g}s"
            ) from None
        self.fetched = matches
        return matches

    async def _login_turn(self, deadline: asyncio.Timeout, prepaid: bool) -> None:
        """Waits for a login turn with the budget's clock stopped; the first login of a run
        that took its turn up front (see fetch) goes at once."""
        if prepaid and not self._used_prepaid:
            self._used_prepaid = True
            return
        loop = asyncio.get_running_loop()
        when = deadline.when()
        left = None if when is None else when - loop.time()
        deadline.reschedule(None)
        await self._politeness.login(self._host)
        deadline.reschedule(None if left is None else loop.time() + left)


class Fetched:
    """A MatchSource answering with a list fetched before: the notify pass reuses the webhook
    pass's fetch (one login and list per run)."""

    def __init__(self, matches: list[Any]) -> None:
        self._matches = matches

    async def fetch(self, today: date, window: Window) -> list[Any]:
        return self._matches


class WebhookNotifier:
    def __init__(
        self,
        sender: WebhookSender,
        target: WebhookTarget,
        gate: AbstractAsyncContextManager[object],
        *,
        watcher: WatcherRef | None = None,  # named in the sender's log lines
    ) -> None:
        self._sender = sender
        self._target = target
        self._gate = gate
        self._watcher = watcher

    async def notify(self, body: bytes, delivery_id: str, occurred: datetime) -> DeliveryResult:
        return await self._sender.deliver(
            self._target, body, delivery_id, self._gate, occurred=occurred, watcher=self._watcher
        )


class GoneNotifier:
    """Stands in for the webhook of a watcher whose receiver answered 410 Gone: nothing is sent
    until spec.webhook or its Secret changes, and the changes stay pending meanwhile."""

    async def notify(self, body: bytes, delivery_id: str, occurred: datetime) -> DeliveryResult:
        raise WebhookGone(
            "the webhook answered 410 Gone earlier: nothing is sent until spec.webhook or its "
            "Secret changes",
            attempts=(),
            last_status_code=http.HTTPStatus.GONE,
        )
