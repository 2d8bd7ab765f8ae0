"""The operator's side of a run: builds the detection seams for a MatchWatcher (its FOGIS session,
Secrets, webhook target and snapshot ConfigMap), runs `detect`, and records metrics. The outcome
goes back to the scheduler, which writes the status and posts the Event.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from controller import USER_AGENT
from controller.adapters.fogis import FogisClient
from controller.adapters.kube import Kube
from controller.adapters.metrics import Metrics
from controller.adapters.notify import (
    NOTIFY_DEADLINE_SECONDS,
    NOTIFY_THREADS,
    NOTIFY_TIMEOUT_SECONDS,
)
from controller.adapters.sessions import Sessions
from controller.adapters.snapshots import ConfigMapSnapshots, SnapshotStore
from controller.adapters.webhook import (
    RetryPolicy,
    WebhookSender,
    resolve_target,
    webhook_fingerprint,
)
from controller.core.config import Settings
from controller.core.delivery import Attempt, DeliveryFailed
from controller.core.detection import ChangesPending, Detection
from controller.core.diff import window_for
from controller.core.errors import (
    DetectorError,
    InvalidSpec,
    LoginFailed,
    SecretNotFound,
    SourceUnavailable,
)
from controller.core.events import Note
from controller.core.loginguard import blocked_until, rejected
from controller.core.model import (
    GROUP,
    PLURAL,
    VERSION,
    Credentials,
    WatcherRef,
    WatcherSpec,
)
from controller.core.outcome import Outcome, baseline_reset, note_of, notify_state, record_of
from controller.core.reasons import Reason
from controller.core.status import (
    CalendarStatus,
    Readiness,
    RunRecord,
    SecretVersion,
    WatcherStatus,
    timestamp,
)
from controller.core.trigger import Digest, Manual, Scheduled, Trigger
from controller.runtime import permits
from controller.runtime.bugs import unexpected
from controller.runtime.detection import (
    Fetched,
    FogisSource,
    GoneNotifier,
    Notifier,
    UnconfirmedDrop,
    WebhookNotifier,
    detect,
)
from controller.runtime.people import People, Tell, Told, UnconfirmedPeopleDrop
from controller.runtime.politeness import EXCHANGE, LOGIN, Politeness

log = logging.getLogger(__name__)


def credentials_from(data: Mapping[str, str], where: str) -> Credentials:
    username, password = data.get("username", "").strip(), data.get("password", "")
    if not username or not password:
        missing = "username" if not username else "password"
        raise SecretNotFound(f"{where} has no {missing} key (or it is empty)")
    return Credentials(username, password)


# The registered HTTP status codes: a receiver answering 599, 777, ... must not mint a new
# metric series per code (up to 900 per watcher); those count as "other".
_REGISTERED_CODES = frozenset(int(status) for status in http.HTTPStatus)


def attempt_code(status: int | None) -> str:
    """The `code` label of an attempt: a registered status code, "other", or "error"."""
    if status is None:
        return "error"
    return str(status) if status in _REGISTERED_CODES else "other"


def _reset_noted(
    result: Detection, store: ConfigMapSnapshots, accepted: int | None, pending: int
) -> Detection:
    """A pass's baseline where it had accepted a list before is a reset, and its Event says
    so: a deleted or foreign ConfigMap lost that pass's last list and what was pending."""
    if not result.baseline:
        return result
    reset = baseline_reset(accepted, pending, store.name, store.foreign_owner)
    return replace(result, reset=reset)


@dataclass(frozen=True)
class _Pass:
    """What the passes of one run share: one fetched list, one clock reading, one trigger."""

    ref: WatcherRef
    spec: WatcherSpec
    trigger: Trigger
    zone: ZoneInfo
    started: datetime
    fetched: Fetched

    async def detect(
        self,
        store: SnapshotStore,
        notifier: Notifier | None,
        *,
        held_back: str | None = None,
        confirmed: bool = False,
    ) -> Detection:
        return await detect(
            watcher=self.ref,
            zone=self.zone,
            days=(self.spec.fogis.days_back, self.spec.fogis.days_ahead),
            trigger=self.trigger.kind,
            now=self.started,
            source=self.fetched,
            store=store,
            notifier=notifier,
            held_back=held_back,
            confirmed=confirmed,
        )


def _compared(result: Detection | DetectorError) -> bool:
    """Whether the webhook's pass compared the fetched list with its snapshot, so a sudden drop
    was checked: not when it failed before (its Secret, target or snapshot unusable) or recorded
    a baseline (first run, or a lost snapshot)."""
    return isinstance(result, ChangesPending) or (
        isinstance(result, Detection) and not result.baseline
    )


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
        self._fogis = FogisClient(
            transport=self._fogis_transport,
            timeout=settings.fogis_timeout_seconds,
            max_response_bytes=settings.fogis_max_response_bytes,
            allowed_hosts=settings.allowed_fogis_hosts,
        )
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
            # A backoff or Retry-After does not hold the dispatcher's permit (permits.py).
            sleep=permits.sleep,
        )
        # Per watcher only its cookies and whose they are; the client above is shared.
        self._sessions = Sessions()
        # Per watcher uid: the digest of a sudden drop the last run held back (UnconfirmedDrop).
        self._held_back: dict[str, str] = {}
        self._politeness = Politeness(
            max_concurrent_per_host=settings.fogis_max_concurrent_per_host,
            logins_per_second=settings.fogis_logins_per_second,
            max_concurrent=settings.http_max_connections,
            observe=lambda kind, seconds: metrics.fogis_queue.labels(kind=kind).observe(seconds),
        )
        for kind in (EXCHANGE, LOGIN):
            metrics.fogis_waiting.labels(kind=kind).set_function(
                functools.partial(self._politeness.waiting, kind)
            )
        # At most as many exchanges in flight per pool as it has connections. With more, 1,000
        # watchers firing together make httpcore's pool re-scan its queue on every change (the
        # event loop starves, requests time out) and can strand connections in it for good.
        self._webhook_gate = asyncio.Semaphore(settings.http_max_connections)
        # Apprise sends block a thread each: a few at a time, whatever the watcher count.
        # Waiting for a send turn and for the services is not a run's work either (permits).
        self._people = People(
            kube=kube,
            key=settings.notify_key.encode(),
            # Watcher uids whose notify send's thread still runs: they get no new one meanwhile.
            in_flight=set(),
            gate=permits.WithoutPermit(asyncio.Semaphore(NOTIFY_THREADS)),
            timeout_seconds=NOTIFY_TIMEOUT_SECONDS,
            deadline_seconds=NOTIFY_DEADLINE_SECONDS,
            allowed_hosts=settings.allowed_notify_hosts,
        )

    async def aclose(self) -> None:
        await self._fogis.aclose()  # leaves the transport open: it is ours
        await self._fogis_transport.aclose()
        await self._sender.aclose()
        await self._webhook_client.aclose()

    async def forget(self, ref: WatcherRef) -> None:
        """Drop a deleted watcher's session, held-back digest and metric series (by uid: a
        watcher re-created under its name meanwhile keeps its own)."""
        self._held_back.pop(ref.uid, None)
        self._sessions.forget(ref.uid)
        self._metrics.forget(ref)

    def _check_host(self, base_url: str) -> None:
        allowed = self._settings.allowed_fogis_hosts
        host = (httpx.URL(base_url).host or "").lower()
        if allowed and host not in allowed:
            raise InvalidSpec(
                f"FOGIS host {host!r} is not in the operator's MLCD_FOGIS_ALLOWED_HOSTS",
                reason=Reason.SOURCE_NOT_ALLOWED,
            )

    async def _notifier(
        self, ref: WatcherRef, spec: WatcherSpec, previous: WatcherStatus
    ) -> tuple[Notifier | None, str | None]:
        """The watcher's notifier, and the fingerprint of its webhook spec and Secret version
        (a 410 Gone holds for that fingerprint only)."""
        if spec.webhook is None:
            return None, None
        secret = None
        if spec.webhook.secret_name is not None:
            secret = await self._kube.read_secret(
                ref.namespace, spec.webhook.secret_name, purpose="webhook"
            )
        fingerprint = webhook_fingerprint(spec.webhook, secret.version if secret else "")
        if previous.webhook.gone_for == fingerprint:
            return GoneNotifier(), fingerprint
        # In a thread: the Secret's `headers` YAML is parsed there (bounded, but not free).
        target = await asyncio.to_thread(
            resolve_target,
            spec.webhook,
            secret.values if secret else None,
            source=f"/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/{PLURAL}/{ref.name}",
        )
        # Nor does an attempt: that is waiting on the receiver, within its own bounds.
        gate = permits.WithoutPermit(self._webhook_gate)
        notifier = WebhookNotifier(self._sender, target, gate, watcher=ref)
        return notifier, fingerprint

    async def _webhook_pass(
        self, run: _Pass, previous: WatcherStatus
    ) -> tuple[Detection | DetectorError, str | None]:
        """The webhook's pass (also with no webhook: it keeps the snapshot and the counts), and
        the webhook's fingerprint. An UnconfirmedDrop is raised: the list itself is in doubt."""
        webhook: str | None = None
        ref = run.ref
        try:
            notifier, webhook = await self._notifier(ref, run.spec, previous)
            store = ConfigMapSnapshots(self._kube, ref)
            result = await run.detect(
                store,
                notifier,
                held_back=self._held_back.pop(ref.uid, None),
            )
        except UnconfirmedDrop:
            raise
        except DetectorError as exc:  # the webhook's trouble must not hold back people's
            return exc, webhook
        return _reset_noted(
            result, store, previous.match_count, previous.webhook.pending_changes
        ), webhook

    async def _people_pass(
        self,
        ref: WatcherRef,
        spec: WatcherSpec,
        previous: WatcherStatus,
        *,
        zone: ZoneInfo,
        now: datetime,
        fetched: list[Any] | None,
        confirmed: bool,
        result: Detection | DetectorError | None,
    ) -> Told | DetectorError:
        """The people's pass after a run (`result`: how the run went; None for quiet hours'
        digest), with its own state ("notified"): a failing chat service holds back neither
        the webhook nor the reverse. `confirmed`: the webhook's pass compared this list (a
        sudden drop was checked there); else this pass checks it itself, and an
        UnconfirmedPeopleDrop is raised as there."""
        today = now.astimezone(zone).date()
        if result is None:  # a digest: the reason a streak message names is the run's last
            ready = previous.ready
            reason = None if ready is None or ready.ready else ready.reason
            streak = previous.people
        else:
            # Only a failed fetch counts (credentials, login, FOGIS): the webhook's own Secret
            # missing is no reason to tell the referee.
            reason = (
                result.reason if isinstance(result, DetectorError) and fetched is None else None
            )
            streak = previous.people.after_run(reason, isinstance(result, Detection))
        job = Tell(
            ref=ref,
            notify=spec.notify,
            calendar=spec.calendar,
            language=spec.language,
            window=window_for(today, spec.fogis.days_back, spec.fogis.days_ahead),
            now=now,
            zone=zone,
            previous=previous,
            streak=streak,
            reason=reason,
            digest=result is None,
        )
        try:
            return await self._people.tell(
                job,
                fetched=fetched,
                confirmed=confirmed,
                held_back=None if confirmed else self._held_back.pop(ref.uid, None),
            )
        except UnconfirmedPeopleDrop:
            raise
        except DetectorError as exc:
            return exc
        except Exception as exc:  # a bug in this pass must not cost the webhook's result
            return unexpected(exc, f"notify pass of {ref.namespace}/{ref.name}", log, ref)

    async def _digest(
        self,
        ref: WatcherRef,
        spec: WatcherSpec,
        previous: WatcherStatus,
        *,
        zone: ZoneInfo,
        started: datetime,
    ) -> Outcome:
        """Quiet hours ended: what was held goes out as one message, from the stored list."""
        told: Told | DetectorError
        if spec.notify is None:  # removed since the changes were held: nobody to tell
            told = Told(None, replace(previous.people, held_changes=0, held_until=None))
        else:
            told = await self._people_pass(
                ref,
                spec,
                previous,
                zone=zone,
                now=started,
                fetched=None,
                confirmed=True,
                result=None,
            )
        finished = self._clock()
        notice = told.notice if isinstance(told, Told) else told
        ready = previous.ready
        record = RunRecord(
            trigger=Digest(started),
            started=started,
            finished=finished,
            readiness=ready.readiness()
            if ready is not None
            else Readiness(True, Reason.SUCCEEDED, "quiet hours' digest"),
            error=None,
            match_count=None,
            summary=None,
            delivered=False,
            webhook=None,
            notify=notify_state(previous.notify, notice, finished),
            people=told.people if isinstance(told, Told) else previous.people,
        )
        self._count_notifications(ref, told)
        if isinstance(notice, DetectorError):
            note = Note("Warning", notice.reason, f"quiet hours' digest failed: {notice.message}")
        else:
            count = len(notice.changes) if notice is not None else 0
            note = Note("Normal", Reason.DIGEST_SENT, f"quiet hours' digest: {count} changes told")
        return Outcome(record, note)

    async def run(
        self,
        ref: WatcherRef,
        spec: WatcherSpec,
        trigger: Trigger,
        *,
        previous: WatcherStatus,
        zone: ZoneInfo,
        started: datetime,
    ) -> Outcome:
        """One run of one watcher. Never raises for a failed run: the error is its outcome."""
        if isinstance(trigger, Digest):
            return await self._digest(ref, spec, previous, zone=zone, started=started)
        if isinstance(trigger, Scheduled):
            self._metrics.schedule_lag.observe(max(0.0, (started - trigger.slot).total_seconds()))
        key = ref.uid
        tried: list[SecretVersion] = []  # the credentials Secret's version, once it is used

        async def read_credentials() -> Credentials:
            name = spec.fogis.credentials_secret
            secret = await self._kube.read_secret(ref.namespace, name, purpose="FOGIS credentials")
            credentials = credentials_from(secret.values, f"Secret {ref.namespace}/{name}")
            version = SecretVersion(secret.uid, secret.version)
            blocked = blocked_until(previous.login, version, started)
            if blocked is not None and not isinstance(trigger, Manual):
                raise LoginFailed(
                    "FOGIS rejected these credentials; scheduled runs retry them after "
                    f"{timestamp(blocked)} (a changed Secret or a manual trigger retries at once)"
                )
            tried.append(version)
            return credentials

        result: Detection | DetectorError
        told: Told | DetectorError | None = None
        source: FogisSource | None = None
        webhook: str | None = None  # the webhook's fingerprint, once known
        confirmed = False
        try:
            self._check_host(spec.fogis.base_url)
            source = FogisSource(
                self._fogis,
                self._sessions.get(key, spec.fogis.base_url),
                read_credentials,
                # Up to four requests (login page, login, list, one re-login) at the step timeout.
                budget_seconds=4 * self._settings.fogis_timeout_seconds,
                politeness=self._politeness,
            )
            # One fetch for both passes (the webhook's and the people's).
            today = started.astimezone(zone).date()
            fetched = Fetched(
                await source.fetch(
                    today, window_for(today, spec.fogis.days_back, spec.fogis.days_ahead)
                )
            )
            passes = _Pass(ref, spec, trigger, zone, started, fetched)
            result, webhook = await self._webhook_pass(passes, previous)
            confirmed = _compared(result)
        except UnconfirmedDrop as exc:
            self._held_back[key] = exc.digest
            result = exc
        except DetectorError as exc:
            result = exc
        except Exception as exc:  # a bug must fail this run only, never the operator
            result = unexpected(exc, f"run of {ref.namespace}/{ref.name}", log, ref)
        if (spec.notify or spec.calendar) is not None and not isinstance(result, UnconfirmedDrop):
            try:
                told = await self._people_pass(
                    ref,
                    spec,
                    previous,
                    zone=zone,
                    now=started,
                    fetched=None if source is None else source.fetched,
                    confirmed=confirmed,
                    result=result,
                )
            except UnconfirmedPeopleDrop as exc:
                self._held_back[key] = exc.digest
                result = exc
        login = previous.login
        if tried and isinstance(result, LoginFailed):
            login = rejected(previous.login, tried[-1], started)
        elif source is not None and source.fetched is not None:  # FOGIS accepted them
            login = None
        notice = told.notice if isinstance(told, Told) else told
        record = record_of(
            trigger=trigger,
            started=started,
            finished=self._clock(),
            result=result,
            previous=previous,
            webhook=webhook,
            notice=notice,
            login=login,
            people=told.people if isinstance(told, Told) and spec.notify is not None else None,
            calendar=self._calendar_status(told),
        )
        self._observe(ref, record, result, told if spec.notify is not None else None)
        return Outcome(record, note_of(trigger, result, notice))

    def _calendar_status(self, told: Told | DetectorError | None) -> CalendarStatus | None:
        """status.calendar after the pass (None: unchanged): the feed's revision, so every
        replica knows when to read it again, and where it is reached from outside."""
        if not isinstance(told, Told) or told.calendar is None:
            return None
        return CalendarStatus(told.calendar.revision, self._settings.calendar_public_url or None)

    def _count_notifications(self, ref: WatcherRef, told: Told | DetectorError | None) -> None:
        if told is None:
            return
        results = told.results if isinstance(told, Told) else frozenset({"failed"})
        for result in results or ("nothing",):
            self._metrics.notifications.inc(ref, result)

    def _observe(
        self,
        ref: WatcherRef,
        record: RunRecord,
        result: Detection | DetectorError,
        told: Told | DetectorError | None,
    ) -> None:
        m = self._metrics
        self._count_notifications(ref, told)
        trigger = record.trigger.kind
        m.runs.inc(ref, trigger, "success" if record.error is None else "failure")
        m.run_duration.labels(trigger=trigger).observe(
            (record.finished - record.started).total_seconds()
        )
        attempts: tuple[Attempt, ...] = ()
        if isinstance(result, Detection):
            m.last_success.set(ref, record.finished.timestamp())
            for change in result.changes:
                for category in change.categories:
                    m.changes.inc(ref, category)
            if result.delivery is not None:
                attempts = result.delivery.attempts
                m.deliveries.inc(ref, "delivered")
        elif isinstance(result, SourceUnavailable | LoginFailed):
            m.source_errors.inc(ref, result.reason)
        elif isinstance(result, DeliveryFailed):
            attempts = result.attempts
            m.deliveries.inc(ref, "failed")
        for attempt in attempts:
            m.attempts.inc(ref, attempt_code(attempt.status_code))
            m.webhook_duration.observe(attempt.duration_seconds)
