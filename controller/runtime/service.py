"""The service's one watcher (RUN_MODE=service), stepped as the operator's dispatcher steps each
of its watchers: WatcherScheduler decides (slots, missed ones, the starting deadline, claims) and
WatcherRunner runs, against file-backed seams (controller/adapters/statefiles.py). One step at a
time, so never more than one run at a time; a manual trigger is a trigger annotation value set in
the watcher's body, as `kubectl matchlist run` sets it on a MatchWatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from controller.adapters.metrics import Metrics
from controller.adapters.statefiles import FileStatus
from controller.core.config import Settings
from controller.core.model import TRIGGER_ANNOTATION, WatcherRef, WatcherSpec
from controller.core.outcome import Outcome
from controller.core.status import WatcherStatus, timestamp
from controller.core.trigger import Manual, Trigger
from controller.runtime.scheduler import Runner, WatcherScheduler

log = logging.getLogger(__name__)
# Step at least this often: a wall clock that jumped (a suspended laptop, an NTP step) is
# noticed soon, whatever the event loop's monotonic timer thinks.
_MAX_SLEEP_SECONDS = 60.0


@dataclass(frozen=True)
class Finished:
    trigger: Trigger
    outcome: Outcome


class _Runs:
    """The runner, with what runs now and what finished since the last look."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self.running: Trigger | None = None
        self.finished: list[Finished] = []

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
        self.running = trigger
        try:
            outcome = await self._runner.run(
                ref, spec, trigger, previous=previous, zone=zone, started=started
            )
        finally:
            self.running = None
        self.finished.append(Finished(trigger, outcome))
        return outcome


class Service:
    def __init__(
        self,
        *,
        ref: WatcherRef,
        spec: Mapping[str, Any],
        state: FileStatus,
        runner: Runner,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ref = ref
        self.state = state
        self._spec = dict(spec)
        self._clock = clock
        self._runs = _Runs(runner)
        self._trigger: str | None = None  # the trigger value set last (in memory only)
        self._waiters: dict[str, asyncio.Future[Finished]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self.last: Finished | None = None  # the last run of this process
        self.scheduler = WatcherScheduler(
            ref=ref,
            body=self.body,
            runner=self._runs,
            cluster=state,
            settings=settings,
            on_status=metrics.watcher_state,
            clock=clock,
        )
        self.task: asyncio.Task[None] | None = None

    def body(self) -> dict[str, Any]:
        """The watcher as a MatchWatcher object, for the scheduler to decide from."""
        return {
            "metadata": {
                "namespace": self.ref.namespace,
                "name": self.ref.name,
                "uid": self.ref.uid,
                "generation": 1,  # the spec is the environment's: it changes only at a restart
                "resourceVersion": self.state.version,
                "creationTimestamp": timestamp(self.state.created),
                "annotations": {TRIGGER_ANNOTATION: self._trigger} if self._trigger else {},
            },
            "spec": self._spec,
            "status": self.state.status,
        }

    @property
    def running(self) -> Trigger | None:
        return self._runs.running

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        self.task = asyncio.create_task(self._serve(), name="service watcher")
        self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # step() never raises: this is a bug. /health answers 503 from now on.
            log.error("the scheduler stopped", exc_info=task.exception())

    def trigger(self) -> asyncio.Future[Finished]:
        """A manual run, after the one under way if any; resolves when it has finished and its
        status is written. A trigger not yet claimed is shared: two requests, one run."""
        pending = self._trigger
        if pending is not None and self.scheduler.memory.handled_trigger != pending:
            return self._waiters[pending]
        value = f"service-{timestamp(self._clock())}-{secrets.token_hex(4)}"
        self._trigger = value
        waiter = self._waiters[value] = asyncio.get_running_loop().create_future()
        self._wake.set()
        return waiter

    async def _serve(self) -> None:
        while not self._stopping:
            self._wake.clear()
            delay = await self.scheduler.step(lambda: self._stopping)
            self._settle()
            if delay is not None and delay <= 0:
                continue
            wait = _MAX_SLEEP_SECONDS if delay is None else min(delay, _MAX_SLEEP_SECONDS)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _settle(self) -> None:
        """Answer the triggers whose runs finished (their status is written by now)."""
        for finished in self._runs.finished:
            self.last = finished
            if isinstance(finished.trigger, Manual):
                waiter = self._waiters.pop(finished.trigger.value, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(finished)
        self._runs.finished.clear()

    async def stop(self, grace: float) -> None:
        """No new run; the one under way may finish within `grace` seconds, then it is cut
        (its slot stays claimed; its changes go with the next run, under the same delivery id
        when nothing changed meanwhile)."""
        self._stopping = True
        self._wake.set()
        if self.task is None:
            return
        if self.running is not None:
            log.info("stopping: waiting up to %gs for the run under way", grace)
        done, _ = await asyncio.wait({self.task}, timeout=grace)
        if not done:
            log.warning("stopping: the run under way was cut after %gs", grace)
            self.task.cancel()
            await asyncio.wait({self.task})
