"""One detection pass: fetch → diff → deliver → persist → status. No kopf in here.

`detect` is the pass itself, written against three small seams (a match source, a snapshot
store and a notifier) so the operator and run-once share it. `WatcherRunner` is the operator's
side: it builds those seams for a MatchWatcher from its Secrets, and turns the outcome into one
status patch, one Event and the metrics.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx

from controller import USER_AGENT
from controller.config import Settings
from controller.diff import (
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
from controller.errors import (
    DetectorError,
    InvalidSpec,
    LoginFailed,
    SecretNotFound,
    SourceUnavailable,
    bug_location,
)
from controller.fogis import FogisClient
from controller.kube import Kube
from controller.loginguard import LoginGuard
from controller.metrics import Metrics
from controller.model import Credentials, WatcherRef, WatcherSpec
from controller.report import build_report, delivery_id, encode_report
from controller.snapshots import ConfigMapSnapshots, SnapshotStore
from controller.status import (
    Readiness,
    RunRecord,
    WebhookState,
    status_after_run,
    timestamp,
)
from controller.webhook import (
    Attempt,
    DeliveryFailed,
    DeliveryResult,
    RetryPolicy,
    WebhookSender,
    WebhookTarget,
    resolve_target,
)

log = logging.getLogger(__name__)


class MatchSource(Protocol):
    async def fetch(self, today: date, window: Window) -> list[Any]: ...


class Notifier(Protocol):
    async def notify(self, body: bytes, delivery_id: str) -> DeliveryResult: ...


class EventSink(Protocol):
    """Posts one Kubernetes Event about the watcher; awaited, so none is lost at shutdown."""

    async def __call__(self, type_: str, reason: str, message: str) -> None: ...


class UnconfirmedDrop(SourceUnavailable):
    """The list lost all or most of its matches at once: held back until a fetch confirms it."""

    def __init__(self, message: str, digest: str) -> None:
        super().__init__(message)
        self.digest = digest


class ChangesPending(DeliveryFailed):
    """Delivery failed; the snapshot did not advance and these changes wait for the next run."""

    def __init__(self, failure: DeliveryFailed, changes: Sequence[MatchChange], match_count: int):
        super().__init__(
            str(failure), attempts=failure.attempts, last_status_code=failure.last_status_code
        )
        self.changes = list(changes)
        self.match_count = match_count


@dataclass(frozen=True)
class Detection:
    baseline: bool
    match_count: int
    changes: list[MatchChange]
    summary: Summary
    report: dict[str, Any]  # the document a webhook gets (changes empty on a baseline)
    delivery: DeliveryResult | None
    # Why a watcher that had a snapshot recorded a baseline again (its changes since the last
    # accepted list were not reported); None for a watcher's first baseline.
    reset: str | None = None


def _snapshot_of(raw: list[Any], revision: int) -> Snapshot:
    snapshot = Snapshot(normalise_all(raw), revision=revision)
    _ = snapshot.digest  # computed here, off the event loop (a cached property)
    return snapshot


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
) -> Detection:
    """Fetch, compare with the last accepted snapshot, deliver, then advance the snapshot.

    The snapshot advances only after the notifier accepted the change (at-least-once): a failed
    delivery leaves it where it was, so the next pass diffs against it again and the same
    transition carries the same delivery id. A failed fetch raises before anything is compared.
    """
    today = now.astimezone(zone).date()
    window = window_for(today, days[0], days[1])
    raw = await source.fetch(today, window)
    old = await store.load()
    # In a thread: normalising and digesting thousands of matches must not stall other watchers.
    new = await asyncio.to_thread(_snapshot_of, raw, (old.revision if old else 0) + 1)
    if raw and not new.matches:
        # Records without a match id: FOGIS changed shape. Comparing would report every match
        # as removed and then re-added; failing keeps the snapshot until the client is fixed.
        raise SourceUnavailable(
            f"FOGIS returned {len(raw)} records but none with a match id; the answer was not used"
        )
    changes = [] if old is None else compare(old, new, window)
    if old is not None and new.digest != held_back and sudden_drop(old, changes, window):
        # `held_back`: the digest of the list the previous run held back; the same list again
        # confirms it. Nothing is compared, delivered or stored until then.
        removed = sum(1 for change in changes if change.type == "removed")
        raise UnconfirmedDrop(
            f"FOGIS suddenly answered without {removed} of the matches in the window; not "
            "reported until the next run's fetch confirms it",
            new.digest,
        )
    if old is not None:
        changes = sorted([*changes, *undo(old, new, window, changes)], key=change_order)
    report = build_report(
        watcher=watcher,
        delivery_id=delivery_id(
            watcher.uid, old.revision if old else 0, old.digest if old else "", new.digest
        ),
        detected_at=now,
        trigger=trigger,
        changes=changes,
    )
    # Also when nothing reportable changed but the digest did (a match slid out of the window),
    # or an in-doubt delivery is now settled.
    advances = old is None or old.digest != new.digest or old.in_doubt is not None
    if advances:
        await store.check(new)
    delivery: DeliveryResult | None = None
    if changes and notifier is not None:
        try:
            delivery = await notifier.notify(encode_report(report), report["id"])
        except DeliveryFailed as failure:
            if failure.in_doubt and old is not None:
                # The receiver may have applied it: remember what was sent, so that it is also
                # undone should FOGIS go back (the snapshot itself does not advance).
                sent = {c.match_id: new.matches.get(c.match_id) for c in changes}
                await store.save(replace(old, in_doubt={**(old.in_doubt or {}), **sent}))
            raise ChangesPending(failure, changes, len(new.matches)) from None
    if advances:
        await store.save(new)
    return Detection(
        baseline=old is None,
        match_count=len(new.matches),
        changes=changes,
        summary=summarise(changes),
        report=report,
        delivery=delivery,
    )


class FogisSource:
    """A watcher's FOGIS session plus the Secret its credentials come from (read every run, so
    a rotated password is picked up without a restart)."""

    def __init__(
        self,
        client: FogisClient,
        credentials: Callable[[], Awaitable[Credentials]],
        budget_seconds: float,
        gate: asyncio.Semaphore,
    ) -> None:
        self._client = client
        self._credentials = credentials
        self._budget = budget_seconds
        self._gate = gate
        self.fetched = False  # the credentials were accepted (a list came back)

    async def fetch(self, today: date, window: Window) -> list[Any]:
        credentials = await self._credentials()
        try:
            # One deadline for the whole exchange (after the wait for a turn): per-step timeouts
            # alone let a server that trickles bytes hold a pooled connection for ever.
            async with self._gate, asyncio.timeout(self._budget):
                matches = await self._client.fetch_matches(credentials, window, today)
        except TimeoutError:
            raise SourceUnavailable(
                f"FOGIS did not complete the login and match list within {self._budget:g}s"
            ) from None
        self.fetched = True
        return matches


class WebhookNotifier:
    def __init__(
        self, sender: WebhookSender, target: WebhookTarget, gate: asyncio.Semaphore
    ) -> None:
        self._sender = sender
        self._target = target
        self._gate = gate

    async def notify(self, body: bytes, delivery_id: str) -> DeliveryResult:
        return await self._sender.deliver(self._target, body, delivery_id, self._gate)


def credentials_from(data: Mapping[str, str], where: str) -> Credentials:
    username, password = data.get("username", "").strip(), data.get("password", "")
    if not username or not password:
        missing = "username" if not username else "password"
        raise SecretNotFound(f"{where} has no {missing} key (or it is empty)")
    return Credentials(username, password)


def _baseline_reset(store: ConfigMapSnapshots, previous: Mapping[str, Any]) -> str | None:
    """Why a baseline is not this watcher's first, if it is not (see Detection.reset). A new
    watcher (no matchCount yet) may find a deleted namesake's ConfigMap: that is no reset."""
    if previous.get("matchCount") is None:
        return None
    pending = int((previous.get("webhook") or {}).get("pendingChanges") or 0)
    lost = f" ({pending} changes were pending)" if pending else ""
    if store.foreign_owner:
        return (
            f"ConfigMap {store.name} was not owned by this MatchWatcher (its owner reference "
            f"was removed, or the watcher was re-created or restored){lost}"
        )
    return f"ConfigMap {store.name} was missing (deleted?){lost}"


async def _announce(
    ref: WatcherRef,
    *,
    trigger: str,
    slot: datetime | None,
    detection: Detection | None,
    error: DetectorError | None,
    emit: EventSink,
) -> None:
    """One Event and one log line per run. The slot names a scheduled run, so Events and logs
    show that no slot ran twice."""
    what = f"{trigger} run" if slot is None else f"{trigger} run ({timestamp(slot)})"
    if error is not None:
        message = f"{what} failed: {error.message}"
        await emit("Warning", error.reason, message)
        log.warning("%s/%s: %s (%s)", ref.namespace, ref.name, message, error.reason)
    elif detection is not None:
        message = f"{what}: {_describe_success(detection)}"
        if detection.reset is not None:
            await emit("Warning", "BaselineReset", message)
            log.warning("%s/%s: %s", ref.namespace, ref.name, message)
        else:
            await emit("Normal", "Baseline" if detection.baseline else "RunSucceeded", message)
            log.info("%s/%s: %s", ref.namespace, ref.name, message)


# The registered HTTP status codes: a receiver answering 599, 777, ... must not mint a new
# metric series per code (up to 900 per watcher); those count as "other".
_REGISTERED_CODES = frozenset(int(status) for status in http.HTTPStatus)


def attempt_code(status: int | None) -> str:
    """The `code` label of an attempt: a registered status code, "other", or "error"."""
    if status is None:
        return "error"
    return str(status) if status in _REGISTERED_CODES else "other"


def _describe_success(detection: Detection) -> str:
    if detection.reset is not None:
        return (
            f"recorded a new baseline of {detection.match_count} matches: {detection.reset}; "
            "changes since the last accepted list were not reported"
        )
    if detection.baseline:
        return f"recorded a baseline of {detection.match_count} matches"
    s = detection.summary
    if not s.total:
        return f"no changes in {detection.match_count} matches"
    text = (
        f"{s.total} changes ({s.new} new, {s.removed} removed, {s.changed} changed) "
        f"in {detection.match_count} matches"
    )
    if detection.delivery is not None:
        d = detection.delivery
        attempts = f"{len(d.attempts)} attempt" + ("s" if len(d.attempts) > 1 else "")
        text += f"; delivered (HTTP {d.status_code}, {attempts})"
    return text


class WatcherRunner:
    """Runs detection for MatchWatchers: owns the shared HTTP pools and per-watcher sessions."""

    def __init__(
        self,
        *,
        kube: Kube,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._kube = kube
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        limits = httpx.Limits(max_connections=settings.http_max_connections)
        self._fogis_transport = httpx.AsyncHTTPTransport(limits=limits)
        self._webhook_client = httpx.AsyncClient(limits=limits, follow_redirects=False)
        self._sender = WebhookSender(
            self._webhook_client,
            policy=RetryPolicy(
                base_delay=settings.webhook_backoff_base_seconds,
                max_delay=settings.webhook_backoff_max_seconds,
                max_retry_after=settings.webhook_max_retry_after_seconds,
            ),
            user_agent=USER_AGENT,
            allowed_hosts=settings.allowed_webhook_hosts,
        )
        self._sessions: dict[tuple[str, str], tuple[str, FogisClient]] = {}
        # Per watcher: the digest of a sudden drop the last run held back (see UnconfirmedDrop).
        self._held_back: dict[tuple[str, str], str] = {}
        self._logins = LoginGuard()
        # At most as many exchanges in flight per pool as it has connections. With more, 1,000
        # watchers firing together make httpcore's pool re-scan its queue on every change (the
        # event loop starves, requests time out) and can strand connections in it for good.
        self._fogis_gate = asyncio.Semaphore(settings.http_max_connections)
        self._webhook_gate = asyncio.Semaphore(settings.http_max_connections)

    async def aclose(self) -> None:
        for _, client in self._sessions.values():
            await client.aclose()
        await self._fogis_transport.aclose()
        await self._webhook_client.aclose()

    async def forget(self, ref: WatcherRef) -> None:
        """Drop a deleted watcher's session and metric series."""
        self._logins.accepted((ref.namespace, ref.name))
        self._held_back.pop((ref.namespace, ref.name), None)
        session = self._sessions.pop((ref.namespace, ref.name), None)
        if session is not None:
            await session[1].aclose()
        self._metrics.forget(ref.namespace, ref.name)

    def _check_host(self, base_url: str) -> None:
        allowed = self._settings.allowed_fogis_hosts
        host = (httpx.URL(base_url).host or "").lower()
        if allowed and host not in allowed:
            raise InvalidSpec(
                f"FOGIS host {host!r} is not in the operator's MLCD_FOGIS_ALLOWED_HOSTS",
                reason="SourceNotAllowed",
            )

    async def _session(self, ref: WatcherRef, base_url: str) -> FogisClient:
        key = (ref.namespace, ref.name)
        current = self._sessions.get(key)
        if current is None or current[0] != base_url:
            if current is not None:
                await current[1].aclose()  # leaves the shared transport open
            client = FogisClient(
                base_url,
                transport=self._fogis_transport,
                timeout=self._settings.fogis_timeout_seconds,
                max_response_bytes=self._settings.fogis_max_response_bytes,
                allowed_hosts=self._settings.allowed_fogis_hosts,
            )
            self._sessions[key] = (base_url, client)
            return client
        return current[1]

    async def _notifier(self, ref: WatcherRef, spec: WatcherSpec) -> WebhookNotifier | None:
        if spec.webhook is None:
            return None
        data = None
        if spec.webhook.secret_name is not None:
            data = await self._kube.read_secret(
                ref.namespace, spec.webhook.secret_name, purpose="webhook"
            )
        # In a thread: the Secret's `headers` YAML is parsed there (bounded, but not free).
        target = await asyncio.to_thread(resolve_target, spec.webhook, data)
        return WebhookNotifier(self._sender, target, self._webhook_gate)

    async def run(
        self,
        ref: WatcherRef,
        spec: WatcherSpec,
        zone: ZoneInfo,
        *,
        trigger: str,
        slot: datetime | None,
        handled_trigger: str | None,
        previous_status: Mapping[str, Any],
        generation: int | None,
        next_time: Callable[[], datetime | None],
        emit: EventSink,
        started: datetime | None = None,
    ) -> dict[str, Any]:
        """One run of one watcher; returns the status after its single patch."""
        started = started or self._clock()
        if slot is not None:
            self._metrics.schedule_lag.observe(max(0.0, (started - slot).total_seconds()))

        key = (ref.namespace, ref.name)
        tried: list[Credentials] = []

        async def read_credentials() -> Credentials:
            name = spec.fogis.credentials_secret
            data = await self._kube.read_secret(ref.namespace, name, purpose="FOGIS credentials")
            credentials = credentials_from(data, f"Secret {ref.namespace}/{name}")
            blocked = self._logins.blocked_until(key, credentials, started)
            if blocked is not None and trigger == "schedule":
                raise LoginFailed(
                    "FOGIS rejected these credentials; scheduled runs retry them after "
                    f"{timestamp(blocked)} (a changed Secret or a manual trigger retries at once)"
                )
            tried.append(credentials)
            return credentials

        detection: Detection | None = None
        error: DetectorError | None = None
        source: FogisSource | None = None
        try:
            self._check_host(spec.fogis.base_url)
            source = FogisSource(
                await self._session(ref, spec.fogis.base_url),
                read_credentials,
                # Up to four requests (login page, login, list, one re-login) at the step timeout.
                budget_seconds=4 * self._settings.fogis_timeout_seconds,
                gate=self._fogis_gate,
            )
            notifier = await self._notifier(ref, spec)
            store = ConfigMapSnapshots(self._kube, ref)
            detection = await detect(
                watcher=ref,
                zone=zone,
                days=(spec.fogis.days_back, spec.fogis.days_ahead),
                trigger=trigger,
                now=started,
                source=source,
                store=store,
                notifier=notifier,
                held_back=self._held_back.pop(key, None),
            )
            if detection.baseline:
                detection = replace(detection, reset=_baseline_reset(store, previous_status))
        except UnconfirmedDrop as exc:
            self._held_back[key] = exc.digest
            error = exc
        except DetectorError as exc:
            error = exc
        except Exception as exc:  # a bug must fail this run only, never the operator
            log.error(
                "run of %s/%s failed: internal error %s at %s",
                ref.namespace,
                ref.name,
                type(exc).__name__,
                bug_location(exc),
            )
            error = DetectorError(f"internal error: {type(exc).__name__}")
        if tried and isinstance(error, LoginFailed):
            self._logins.rejected(key, tried[-1], started)
        elif source is not None and source.fetched:  # FOGIS accepted them, whatever came next
            self._logins.accepted(key)
        finished = self._clock()
        record = self._record(
            started=started,
            finished=finished,
            slot=slot,
            handled_trigger=handled_trigger,
            detection=detection,
            error=error,
            previous_status=previous_status,
        )
        self._observe(ref=ref, trigger=trigger, record=record, detection=detection, error=error)
        try:
            status = await self._kube.patch_status(
                ref,
                status_after_run(
                    previous_status, record, next_time=next_time(), generation=generation
                ),
            )
        finally:
            await _announce(
                ref, trigger=trigger, slot=slot, detection=detection, error=error, emit=emit
            )
        return status

    @staticmethod
    def _record(
        *,
        started: datetime,
        finished: datetime,
        slot: datetime | None,
        handled_trigger: str | None,
        detection: Detection | None,
        error: DetectorError | None,
        previous_status: Mapping[str, Any],
    ) -> RunRecord:
        previous = WebhookState.from_status(previous_status.get("webhook") or {})
        webhook: WebhookState | None = None
        summary = detection.summary if detection else None
        match_count = detection.match_count if detection else None
        if detection is not None and detection.delivery is not None:
            webhook = WebhookState(
                last_delivery_time=finished,
                last_status_code=detection.delivery.status_code,
                consecutive_failures=0,
                pending_changes=0,
                last_delivery_id=str(detection.report["id"]),
            )
        elif isinstance(error, ChangesPending):
            summary = summarise(error.changes)
            match_count = error.match_count
            webhook = replace(
                previous,
                last_status_code=error.last_status_code,
                consecutive_failures=previous.consecutive_failures + 1,
                pending_changes=len(error.changes),
            )
        elif detection is not None and (previous.pending_changes or previous.consecutive_failures):
            # Nothing left to deliver (the list changed back, or the webhook was removed):
            # what was pending is settled.
            webhook = replace(previous, consecutive_failures=0, pending_changes=0)
        if error is None:
            assert detection is not None  # noqa: S101 - narrowing: no error means a detection
            reason = "Succeeded" if detection.reset is None else "BaselineReset"
            readiness = Readiness(True, reason, _describe_success(detection))
        else:
            readiness = Readiness(False, error.reason, error.message)
        return RunRecord(
            started=started,
            finished=finished,
            slot=slot,
            handled_trigger=handled_trigger,
            readiness=readiness,
            error=None if error is None else error.message,
            match_count=match_count,
            summary=summary,
            delivered=error is None,
            webhook=webhook,
        )

    def _observe(
        self,
        *,
        ref: WatcherRef,
        trigger: str,
        record: RunRecord,
        detection: Detection | None,
        error: DetectorError | None,
    ) -> None:
        m, labels = self._metrics, {"namespace": ref.namespace, "name": ref.name}
        started, finished = record.started, record.finished
        result = "success" if error is None else "failure"
        m.runs.labels(**labels, trigger=trigger, result=result).inc()
        m.run_duration.labels(trigger=trigger).observe((finished - started).total_seconds())
        if detection is not None:
            m.last_success.labels(**labels).set(finished.timestamp())
            for change in detection.changes:
                for category in change.categories:
                    m.changes.labels(**labels, category=category).inc()
        if isinstance(error, SourceUnavailable | LoginFailed):
            m.source_errors.labels(**labels, reason=error.reason).inc()
        attempts: tuple[Attempt, ...] = ()
        if detection is not None and detection.delivery is not None:
            attempts = detection.delivery.attempts
            m.deliveries.labels(**labels, result="delivered").inc()
        elif isinstance(error, DeliveryFailed):
            attempts = error.attempts
            m.deliveries.labels(**labels, result="failed").inc()
        for attempt in attempts:
            code = attempt_code(attempt.status_code)
            m.attempts.labels(**labels, code=code).inc()
            m.webhook_duration.observe(attempt.duration_seconds)
