"""A watcher's scheduler: carries out `decide`'s decisions, one step at a time, for one watcher.

Kept free of kopf and of tasks: controller/runtime/dispatcher.py owns the one queue of every
watcher's next step and calls `step` when it is due, or when `poke` says a watch event changed
what to do. An idle watcher is an entry in that queue, not a task. This module is the only
writer of a watcher's status.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from controller.core.config import Settings
from controller.core.decide import Memory, Run, View, created_at, decide, next_run
from controller.core.errors import DetectorError, StatusConflict, WatcherGone
from controller.core.events import Note
from controller.core.logfields import about
from controller.core.model import WatcherRef, WatcherSpec
from controller.core.outcome import Outcome
from controller.core.status import WatcherStatus, status_after_run
from controller.core.trigger import Trigger
from controller.runtime.bugs import unexpected

log = logging.getLogger(__name__)
# After the API server refused a status patch, wait before trying again (and never spin).
_API_RETRY_SECONDS = 5.0
# After an unexpected error: retry later, or at once when the resource changes.
_INTERNAL_ERROR_RETRY_SECONDS = 60.0


class Cluster(Protocol):
    """The Kubernetes calls a scheduler makes (controller/adapters/kube.py's Kube)."""

    async def patch_status(
        self, ref: WatcherRef, status: Mapping[str, Any], resource_version: str | None = None
    ) -> tuple[dict[str, Any], str]: ...

    async def read_status(self, ref: WatcherRef) -> tuple[dict[str, Any], str]: ...

    async def post_event(self, ref: WatcherRef, type_: str, reason: str, message: str) -> None: ...


class Runner(Protocol):
    """Runs detection (controller/runtime/runner.py's WatcherRunner)."""

    async def run(
        self,
        ref: WatcherRef,
        spec: WatcherSpec,
        trigger: Trigger,
        *,
        previous: WatcherStatus,
        zone: ZoneInfo,
        started: datetime,
    ) -> Outcome: ...


class WatcherScheduler:
    def __init__(
        self,
        *,
        ref: WatcherRef,
        body: Callable[[], Mapping[str, Any]],
        runner: Runner,
        cluster: Cluster,
        settings: Settings,
        on_status: Callable[[WatcherRef, WatcherStatus], None] = lambda ref, status: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ref = ref
        self._on_status = on_status  # e.g. the metrics of the watcher's state
        self._body = body
        self._runner = runner
        self._cluster = cluster
        self._settings = settings
        self._clock = clock
        initial = body()
        self.memory = Memory.start(
            WatcherStatus.parse(initial.get("status")), created_at(initial) or clock()
        )
        # The metrics of a (re)started process must not wait for the next status write, an
        # hour away for an hourly watcher whose status is still right.
        on_status(ref, self.memory.status)
        self._seen: tuple[Any, ...] | None = None
        # The object's latest version this scheduler knows of (from its own writes, or a newer
        # watch event), for compare-and-swap claims without a read first.
        self._version: str | None = None
        self._body_version: str | None = None
        # The API server said the object does not exist: the dispatcher drops this watcher
        # (deleted while the watch was down, whose re-listing sends no DELETED event).
        self.gone = False

    @property
    def last_success(self) -> datetime | None:
        return self.memory.status.last_successful_time

    def poke(self, body: Mapping[str, Any]) -> bool:
        """Called for every watch event: True when it can change the decision (step again)."""
        view, meta = View.of(body), body.get("metadata") or {}
        seen = (view.generation, view.trigger, meta.get("deletionTimestamp"))
        if seen == self._seen:
            return False
        self._seen = seen
        return True

    async def step(self, stopped: Callable[[], bool]) -> float | None:
        """One decision carried out; returns when to step again (seconds; None: when poked).
        Never raises but for cancellation: one watcher's trouble stays its own."""
        try:
            return await self._step(stopped)
        except WatcherGone:
            self.gone = True
            return None
        except DetectorError as exc:  # the API server refused a status write
            log.warning(
                "%s/%s: %s", self.ref.namespace, self.ref.name, exc.message, extra=about(self.ref)
            )
            return _API_RETRY_SECONDS
        except Exception as exc:  # a bug: keep this watcher alive (and every other one)
            error = unexpected(exc, f"{self.ref.namespace}/{self.ref.name}", log, self.ref)
            await self._cluster.post_event(self.ref, "Warning", error.reason, error.message)
            return _INTERNAL_ERROR_RETRY_SECONDS

    async def _step(self, stopped: Callable[[], bool]) -> float | None:
        """One decision carried out; returns how long to sleep (None: until poked)."""
        body = self._body()
        body_version = (body.get("metadata") or {}).get("resourceVersion")
        if body_version != self._body_version:  # a watch event came since the last step
            self._body_version = self._version = body_version
        view = View.of(body)
        decision = decide(
            self.memory, view, self._clock(), allow_seconds=self._settings.allow_seconds_schedules
        )
        if isinstance(decision.action, Run):
            if stopped():  # told to stop (deleted, or paused in favour of another replica)
                return None
            if not await self._claim(decision.memory, decision.patch, decision.action.trigger):
                return 0  # decide again, from the status another replica wrote
        else:
            await self._write(decision.memory, decision.patch)
        for note in decision.events:
            await self._post(note)
        action = decision.action
        if isinstance(action, Run):
            await self._run(action, view.generation)
            return 0
        return None if action.until is None else (action.until - self._clock()).total_seconds()

    async def _claim(
        self, memory: Memory, patch: Mapping[str, Any] | None, trigger: Trigger
    ) -> bool:
        """Claim the run (a slot, or a trigger value) with a compare-and-swap on the object's
        version: in a leader or shard handover, or while two replicas both believe they lead,
        another one may have claimed it after the status this scheduler decided from. The
        version is the latest this scheduler knows; when the object changed since, it is read
        again and the run claimed only if nobody did. False: not ours to run (decide again,
        from the status read)."""
        if self._version and not self._status_at(self._version).claims(trigger):
            with contextlib.suppress(StatusConflict):
                await self._write(memory, patch, self._version)
                return True
        raw, version = await self._cluster.read_status(self.ref)
        live = WatcherStatus.parse(raw)
        if not live.claims(trigger):
            with contextlib.suppress(StatusConflict):
                await self._write(memory, patch, version)
                return True
        self.memory = replace(self.memory, status=live)
        return False

    def _status_at(self, version: str) -> WatcherStatus:
        """The status at `version` as this scheduler knows it: the latest watch event's when it
        is that version (it can carry another replica's claim), else its own last write's. (If
        the object moved on since, a claim on `version` is refused anyway.)"""
        body = self._body()
        if (body.get("metadata") or {}).get("resourceVersion") == version:
            return WatcherStatus.parse(body.get("status"))
        return self.memory.status

    async def _write(
        self, memory: Memory, patch: Mapping[str, Any] | None, version: str | None = None
    ) -> None:
        """The one place a watcher's status is written; `memory` is kept only once it is."""
        if patch is not None:
            raw, self._version = await self._cluster.patch_status(self.ref, patch, version)
            status = WatcherStatus.parse(raw)
            memory = replace(memory, status=status)
            self._on_status(self.ref, status)
        self.memory = memory

    async def _run(self, order: Run, generation: int | None) -> None:
        # Not shielded: a stop request lets a run under way finish until the one shutdown
        # deadline (controller/runtime/dispatcher.py's stop), and a run still going then is cut
        # there, not given the shutdown timeout once more (the pod's grace period would end
        # first, and the Lease would never be released).
        outcome = await self._runner.run(
            self.ref,
            order.spec,
            order.trigger,
            previous=self.memory.status,
            zone=order.schedule.zone,
            started=self._clock(),  # now, after the claim
        )
        await self._finish(outcome, order, generation)

    async def _finish(self, outcome: Outcome, order: Run, generation: int | None) -> None:
        """The run's one status patch, then its Event and log line (also if the patch fails)."""
        patch = status_after_run(
            self.memory.status,
            outcome.record,
            next_time=next_run(order.spec, order.schedule, self._clock()),
            generation=generation,
        )
        try:
            await self._write(self.memory.after_run(), patch)
        finally:
            await self._post(outcome.note)

    async def _post(self, note: Note) -> None:
        where = f"{self.ref.namespace}/{self.ref.name}"
        if note.type_ == "Warning":
            log.warning("%s: %s (%s)", where, note.message, note.reason, extra=about(self.ref))
        else:
            log.info("%s: %s", where, note.message, extra=about(self.ref))
        await self._cluster.post_event(self.ref, note.type_, note.reason, note.message)
