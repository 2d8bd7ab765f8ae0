"""The people's pass (spec.notify): what each Apprise URL is told after a run, or when quiet
hours end, from the latest confirmed list and that URL's cursor (controller/core/people.py).

A failing chat service holds back neither the webhook nor another URL: each URL's cursor
advances only when that URL accepted its message, and a message whose answer was lost is
recorded before it is sent (in doubt), so a later revert is told to whoever may have heard it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from controller.adapters.notify import (
    ACCEPTED,
    FAILED,
    UNKNOWN_URL,
    AppriseNotifier,
    Message,
    NotifyFailed,
    notify_urls,
    url_lines,
)
from controller.adapters.peoplestore import PeopleStore
from controller.core.calendar import CalendarState, advance
from controller.core.delivery import DeliveryResult
from controller.core.detection import ChangesPending, Detection
from controller.core.diff import (
    MatchChange,
    Snapshot,
    Window,
    compare,
    normalise_all,
    sudden_drop,
    summarise,
)
from controller.core.errors import DetectorError, InvalidSpec, SourceUnavailable
from controller.core.message import compose, failure, recovered
from controller.core.model import CalendarSpec, NotifySpec, WatcherRef
from controller.core.outcome import baseline_reset
from controller.core.people import PeopleState, Plan, allowed, plan, quiet_until, url_key
from controller.core.reasons import Reason
from controller.core.status import TOLD_FAILURES, PeopleStatus, WatcherStatus
from controller.runtime import permits

if TYPE_CHECKING:
    from controller.adapters.kube import SecretData


@dataclass(frozen=True)
class Told:
    """What the people's pass did: the notice status.notify and the run's Ready are judged by
    (as for the webhook: a Detection, ChangesPending, or the error), the hold and streak after
    it, and the metric results it counts (delivered, failed, held, filtered; none: nothing)."""

    notice: Detection | DetectorError | None  # None: no list was told (the fetch failed)
    people: PeopleStatus
    results: frozenset[str] = frozenset()
    calendar: CalendarState | None = None  # the calendar feed's state after the pass


class UnconfirmedPeopleDrop(SourceUnavailable):
    """The list lost most of its matches at once and no other pass of this run confirmed it."""

    def __init__(self, message: str, digest: str) -> None:
        super().__init__(message)
        self.digest = digest


def _normalised(raw: list[Any], revision: int) -> Snapshot:
    snapshot = Snapshot(normalise_all(raw), revision=revision)
    if raw and not snapshot.matches:
        raise SourceUnavailable(
            f"FOGIS returned {len(raw)} records but none with a match id; the answer was not used"
        )
    return snapshot


def _drop(old: Snapshot, new: Snapshot, window: Window) -> str | None:
    """The message of an unconfirmed sudden drop from `old` to `new`, or None."""
    changes = compare(old, new, window)
    if not sudden_drop(old, changes, window):
        return None
    removed = sum(1 for change in changes if change.type == "removed")
    return (
        f"FOGIS suddenly answered without {removed} of the matches in the window; not told "
        "until the next run's fetch confirms it"
    )


@dataclass(frozen=True)
class Tell:
    """One pass's inputs."""

    ref: WatcherRef
    notify: NotifySpec | None  # None: only the latest list (and the calendar) is kept
    calendar: CalendarSpec | None
    language: str
    window: Window
    now: datetime
    zone: ZoneInfo
    previous: WatcherStatus
    streak: PeopleStatus  # status.notify's streak after this run (before anyone was told)
    reason: str | None  # why the run failed, for a streak message (None: it did not)
    digest: bool = False  # quiet hours ended: tell what was held, from the stored list


class PeopleBacking(Protocol):
    """Where the people's pass reads the notify Secret and keeps its state (runner.py's
    Backing: the cluster for the operator, the environment and files for the service)."""

    async def read_secret(self, namespace: str, name: str, *, purpose: str) -> SecretData: ...

    def people(self, ref: WatcherRef) -> PeopleStore: ...


# People's passes under way at once (each with its state loaded), whatever the watcher count:
# a pass waits for one of the few send threads without a permit, so without this bound a storm
# of 10,000 digests would load all 10,000 states while the first sends go out.
PASSES = 64


class People:
    """The people's passes of every watcher (one per WatcherRunner)."""

    def __init__(self, *, backing: PeopleBacking, key: bytes, **send: Any) -> None:
        self._backing = backing
        self._key = key
        self._passes = asyncio.Semaphore(PASSES)
        self._send = send  # AppriseNotifier's arguments but `key`

    async def tell(
        self,
        job: Tell,
        *,
        fetched: list[Any] | None,
        confirmed: bool = True,
        held_back: str | None = None,
    ) -> Told:
        """See _tell_now; at most PASSES at once (waiting for a turn holds no permit)."""
        async with permits.turn(self._passes):
            return await self._tell_now(
                job, fetched=fetched, confirmed=confirmed, held_back=held_back
            )

    async def _tell_now(
        self,
        job: Tell,
        *,
        fetched: list[Any] | None,
        confirmed: bool,
        held_back: str | None,
    ) -> Told:
        """After a run, `fetched` its list (None when the fetch failed: then only a streak
        message, if owed); for quiet hours' digest, `job.digest`: the stored latest list. The
        latest confirmed list is kept (and the calendar's state advanced) also when people's
        Secret is unusable: the feed does not wait for a chat service."""
        urls, lines, problem = await self._urls(job)
        keys = [url_key(url, self._key) for url in urls]
        if fetched is None and not job.digest:
            return await self._streak_only(job, urls, None, problem)
        store = self._backing.people(job.ref)
        loaded = state = await store.load()
        calendar = store.calendar
        if fetched is not None:
            revision = (state.latest.revision if state else 0) + 1
            new = await asyncio.to_thread(_normalised, fetched, revision)
            if state is not None and not confirmed and new.digest != held_back:
                drop = await asyncio.to_thread(_drop, state.latest, new, job.window)
                if drop is not None:
                    raise UnconfirmedPeopleDrop(drop, new.digest)
            if job.calendar is not None:
                store.calendar = await asyncio.to_thread(
                    advance,
                    store.calendar,
                    new,
                    fetched,
                    job.window,
                    job.now,
                    include_contacts=job.calendar.include_contacts,
                )
            if state is None:
                # Everyone's baseline: nobody is told what was there all along.
                await store.save(PeopleState(latest=new, cursors=dict.fromkeys(keys, new)))
                notice = None
                if job.notify is not None and problem is None:
                    reset = baseline_reset(
                        job.previous.notify.match_count,
                        job.previous.notify.pending_changes,
                        store.where,
                        store.foreign_owner,
                    )
                    notice = Detection(True, len(new.matches), [], summarise([]), {}, None, reset)
                return await self._streak_only(job, urls, notice, problem, store.calendar)
            if new.digest != state.latest.digest:
                state = replace(state, latest=new)
        if state is None:  # a digest with nothing stored
            return await self._streak_only(job, urls, None, problem, store.calendar)
        if problem is not None or job.notify is None:
            if state != loaded or store.calendar is not calendar:
                await store.save(state)
            return await self._streak_only(job, urls, None, problem, store.calendar)
        return await self._tell(
            job, job.notify, urls, keys, state, store, loaded, calendar, lines=lines
        )

    async def _urls(
        self, job: Tell
    ) -> tuple[tuple[str, ...], tuple[int, ...], DetectorError | None]:
        """The Apprise URLs of the watcher's notify Secret and each one's line in it (errors
        name a URL by its line), or why there are none to use."""
        notify = job.notify
        if notify is None:
            return (), (), None
        where = f"notify Secret {job.ref.namespace}/{notify.secret_name}"
        try:
            secret = await self._backing.read_secret(
                job.ref.namespace, notify.secret_name, purpose="notify"
            )
            urls, lines = notify_urls(secret.values, where), url_lines(secret.values)
        except DetectorError as exc:
            return (), (), exc
        # The same URL twice is one service: told once (one cursor, one message).
        first: dict[str, int] = {}
        for url, line in zip(urls, lines, strict=True):
            first.setdefault(url, line)
        return tuple(first), tuple(first.values()), None

    async def _tell(  # noqa: PLR0917 - one pass's pieces, each named at the one call
        self,
        job: Tell,
        notify: NotifySpec,
        urls: Sequence[str],
        keys: Sequence[str],
        state: PeopleState,
        store: PeopleStore,
        loaded: PeopleState | None,
        calendar: CalendarState | None,
        *,
        lines: Sequence[int],  # each URL's line in the Secret
    ) -> Told:
        """Tell each URL its plan's changes; `loaded` and `calendar`: the state as stored."""
        cursors = state.for_urls(keys)
        latest = state.latest

        def plans_of() -> dict[str, Plan]:  # in a thread: comparing big lists is CPU
            return {
                key: plan(cursor, latest, job.window, notify=notify, now=job.now, zone=job.zone)
                for key, cursor in cursors.items()
            }

        plans = await asyncio.to_thread(plans_of)
        wanted = allowed(notify.categories)
        sending = [(url, key) for url, key in zip(urls, keys, strict=True) if plans[key].send]
        messages = [
            Message(
                url,
                *compose(
                    plans[key].send,
                    language=job.language,
                    allowed=wanted,
                    urgent=plans[key].urgent,
                    digest=job.digest,
                ),
            )
            for url, key in sending
        ]
        owed = self._streak_message(job)
        if owed is not None:
            messages += [Message(url, *owed[1]) for url in urls]
        ahead = {key: plans[key].written_ahead or cursor for key, cursor in cursors.items()}
        if ahead != cursors:
            # Written ahead: a service may take the message and the answer (or this process)
            # be lost; until its cursor advances, what was sent counts as in doubt.
            await store.save(PeopleState(latest=latest, cursors=ahead))
        fates, refused = await self._deliver(job, messages)
        fate_of = {key: fate for (_, key), fate in zip(sending, fates, strict=False)}
        told = {key: _cursor(plans[key], cursors[key], fate_of.get(key)) for key in keys}
        final = PeopleState(latest=latest, cursors=told)
        if final != loaded or store.calendar is not calendar:
            await store.save(final)
        streak = job.streak
        if owed is not None:
            streak = _streak_told(job, owed[0], ACCEPTED in fates[len(sending) :])
        return _outcome(
            job,
            notify,
            keys=keys,
            lines=lines,
            plans=plans,
            fate_of=fate_of,
            fates=fates,
            refused=refused,
            streak=streak,
            match_count=len(latest.matches),
            calendar=store.calendar,
        )

    def _streak_message(self, job: Tell) -> tuple[str, tuple[str, str]] | None:
        """("failure" | "recovered", (title, body)) when one is owed and may go out now."""
        notify = job.notify
        if notify is None:
            return None
        owed = job.streak.owed(notify.failure_after)
        if owed is None or quiet_until(job.now, job.zone, notify.quiet_hours) is not None:
            return None
        if owed == "failure":
            if job.reason not in TOLD_FAILURES:
                # This run's fetch worked (or failed for a reason that is not theirs): nothing
                # to tell now, and told with no reason the streak would stay owed, told again
                # every run.
                return None
            return owed, failure(job.reason, job.language)
        return owed, recovered(job.streak.told_reason or "", job.language)

    async def _deliver(self, job: Tell, messages: list[Message]) -> tuple[list[str], str | None]:
        if not messages:
            return [], None
        sender = AppriseNotifier(key=job.ref.uid, **self._send)
        return await sender.send(tuple(messages))

    async def _streak_only(
        self,
        job: Tell,
        urls: Sequence[str],
        notice: Detection | None,
        problem: DetectorError | None,
        calendar: CalendarState | None = None,
    ) -> Told:
        """No list to tell (the fetch failed, a baseline, or no usable Secret): a streak
        message if owed."""
        streak, results = job.streak, frozenset[str]()
        owed = self._streak_message(job) if problem is None else None
        if owed is not None:
            fates, _ = await self._deliver(job, [Message(url, *owed[1]) for url in urls])
            streak = _streak_told(job, owed[0], ACCEPTED in fates)
            results = frozenset({"delivered" if ACCEPTED in fates else "failed"})
        if problem is not None:
            results = frozenset({"failed"})
        # What is held stays held (this pass did not look at it), unless this is a baseline.
        before = job.previous.people
        held = 0 if notice is not None and notice.baseline else before.held_changes
        until = _held_until(job, streak, held)
        if held and before.held_until is not None and not job.digest:
            until = before.held_until
        people = replace(streak, held_changes=held, held_until=until)
        return Told(problem or notice, people, results, calendar)


def _cursor(p: Plan, cursor: Snapshot, fate: str | None) -> Snapshot:
    """A URL's cursor after its send: told when it took the changes (or had none to take), in
    doubt when the answer was lost, as it was when nothing was sent."""
    if not p.send or fate == ACCEPTED:
        return p.told
    if fate == FAILED and p.written_ahead is not None:
        return p.written_ahead
    return cursor


def _held_until(job: Tell, streak: PeopleStatus, held: int) -> datetime | None:
    """Quiet hours' end when something waits for it (changes, or a streak message)."""
    notify = job.notify
    if notify is None or (not held and streak.owed(notify.failure_after) is None):
        return None
    return quiet_until(job.now, job.zone, notify.quiet_hours)


def _streak_told(job: Tell, owed: str, accepted: bool) -> PeopleStatus:
    """The streak once its message was sent: told when any URL took it (else still owed)."""
    if not accepted:
        return job.streak
    if owed == "failure":
        return replace(job.streak, told_reason=job.reason, told_since=job.now)
    return replace(job.streak, told_reason=None, told_since=None)


def _outcome(
    job: Tell,
    notify: NotifySpec,
    *,
    keys: Sequence[str],
    lines: Sequence[int],  # each key's URL's line in the Secret
    plans: dict[str, Plan],
    fate_of: dict[str, str],
    fates: list[str],
    refused: str | None,
    streak: PeopleStatus,
    match_count: int,
    calendar: CalendarState | None,
) -> Told:
    held = max((len(p.held) for p in plans.values()), default=0)
    people = replace(streak, held_changes=held, held_until=_held_until(job, streak, held))
    results = {
        result
        for result, happened in (
            ("delivered", ACCEPTED in fates),
            ("failed", any(fate != ACCEPTED for fate in fates)),
            ("held", held > 0),
            ("filtered", any(p.filtered for p in plans.values())),
        )
        if happened
    }
    sent: dict[str, MatchChange] = {}
    pending: dict[str, MatchChange] = {}
    for key in keys:
        target = sent if fate_of.get(key) == ACCEPTED else pending
        for change in plans[key].send:
            target.setdefault(change.match_id, change)
    where = f"notify Secret {job.ref.namespace}/{notify.secret_name}"
    unknown = [n for n, key in zip(lines, keys, strict=True) if fate_of.get(key) == UNKNOWN_URL]
    error: DetectorError | None = None
    if unknown:
        error = InvalidSpec(
            f"{where} key urls: line {unknown[0]} is not an Apprise URL it knows",
            reason=Reason.INVALID_NOTIFY_SECRET,
        )
    elif refused is not None:
        # The reason names a kind of address, never the URL or the address itself.
        error = InvalidSpec(
            f"{where}: a notification service tried to reach {refused}; refused before connecting",
            reason=Reason.NOTIFY_NOT_ALLOWED,
        )
    elif pending:
        failed = NotifyFailed(
            f"{where}: a notification service did not accept the message, its answer was "
            "lost, or the previous send is still running",
            attempts=(),
            last_status_code=None,
        )
        error = ChangesPending(failed, list(pending.values()), match_count)
    if error is not None:
        return Told(error, people, frozenset(results), calendar)
    changes = list(sent.values())
    delivery = DeliveryResult(200, ()) if sent else None
    notice = Detection(False, match_count, changes, summarise(changes), {}, delivery)
    return Told(notice, people, frozenset(results), calendar)
