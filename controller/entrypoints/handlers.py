"""kopf wiring; with operator.py (kopf's command line), the only module that imports kopf.

Routing stays thin: kopf's watch feeds one dispatcher.Dispatcher (the one queue of every
watcher's next step), whose workers carry out decide.py's decisions through
scheduler.WatcherScheduler; runs happen in runner.WatcherRunner. With a Lease name set, the
replica that holds it serves the watchers (leadership.Leadership); kopf itself runs standalone.
The operator-wide `Operator` travels in kopf's global memo (set at startup).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from controller.adapters.kube import Kube
from controller.adapters.metrics import Metrics
from controller.adapters.peoplestore import KubeBacking
from controller.core.config import load_settings
from controller.core.model import GROUP, PLURAL, VERSION, WatcherRef
from controller.core.sharding import shard_of
from controller.runtime.calendar_server import CalendarServer
from controller.runtime.dispatcher import Dispatcher
from controller.runtime.heap import HeapKeeper
from controller.runtime.leadership import Leadership
from controller.runtime.logs import set_log_levels
from controller.runtime.reconcile import Reconciler
from controller.runtime.runner import WatcherRunner
from controller.runtime.scheduler import WatcherScheduler

# Read at import: the event handler's shard filter below needs it.
SETTINGS = load_settings(os.environ)
log = logging.getLogger(__name__)


class Operator:
    """Operator-wide objects, created in the startup handler."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.kube = Kube.from_environment(SETTINGS.kube_workers)
        self.runner = WatcherRunner(
            backing=KubeBacking(self.kube), settings=SETTINGS, metrics=self.metrics
        )
        self.dispatcher = Dispatcher(
            make=self._scheduler,
            workers=SETTINGS.max_concurrent_runs,
            release=self._release,
            serving=not SETTINGS.lease_name,
            quiet=HeapKeeper().quiet,
        )
        self.metrics.watchers.set_function(lambda: self.dispatcher.served)
        # Standbys too: a watcher deleted while their watch was down must not be served later.
        self.reconciler = Reconciler(self.dispatcher, self.kube)
        # Every replica serves every feed its watch sees (controller/runtime/calendar_server.py).
        self.calendar = CalendarServer(self.kube) if SETTINGS.calendar_port else None
        self.leadership: Leadership | None = None
        if SETTINGS.lease_name:
            self.leadership = Leadership(
                self.kube,
                namespace=SETTINGS.lease_namespace,
                name=SETTINGS.lease_name,
                # The pod's name (its hostname), unique per process besides.
                identity=f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}",
                on_change=self.dispatcher.lead,
            )
        self._tasks: list[asyncio.Task[None]] = []

    def _scheduler(
        self, ref: WatcherRef, body: Callable[[], Mapping[str, Any]]
    ) -> WatcherScheduler:
        return WatcherScheduler(
            ref=ref,
            body=body,
            runner=self.runner,
            cluster=self.kube,
            settings=SETTINGS,
            on_status=self.metrics.watcher_state,
        )

    async def _release(self, ref: WatcherRef, deleted: bool) -> None:
        if deleted:
            await asyncio.shield(self.runner.forget(ref))
        else:
            # Another replica serves it now, or shutting down: this process must not keep
            # exporting the watcher's series as if it still ran it.
            self.metrics.forget(ref)

    async def start(self) -> None:
        if not SETTINGS.notify_key:
            log.warning(
                "MLCD_NOTIFY_KEY is not set: people's cursors are keyed with a built-in key, "
                "which hides an Apprise URL no better than a plain hash from whoever reads the "
                "-notified ConfigMaps (the chart generates a key; see docs/reference.md)"
            )
        if self.calendar is not None:
            try:
                await self.calendar.start(SETTINGS.calendar_host, SETTINGS.calendar_port)
            except OSError as exc:
                # The watchers still run; only the feeds are not served from this replica.
                log.error(
                    "calendar feeds not served: cannot listen on %s:%d (%s)",
                    SETTINGS.calendar_host,
                    SETTINGS.calendar_port,
                    exc.strerror or type(exc).__name__,
                )
                self.calendar = None
        self.dispatcher.start()
        self._tasks.append(asyncio.create_task(self.reconciler.serve(), name="reconcile"))
        if self.leadership is not None:
            self._tasks.append(asyncio.create_task(self.leadership.serve(), name="leadership"))

    async def stop(self) -> None:
        """Runs in progress finish until the one shutdown deadline (MLCD_SHUTDOWN_TIMEOUT_SECONDS
        from now; what is left then is cut), then the Lease is given up so a standby takes over
        at once: all within the pod's grace period, which the chart sets to that plus a margin."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.dispatcher.stop(SETTINGS.shutdown_timeout_seconds)
        if self.leadership is not None:
            await self.leadership.release()
        if self.calendar is not None:
            await self.calendar.stop()
        await self.runner.aclose()
        self.kube.close()


def _operator(memo: kopf.Memo) -> Operator:
    operator = memo.get("operator")
    if not isinstance(operator, Operator):
        raise RuntimeError("the startup handler has not run")
    return operator


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Every kopf setting in one place, each with the reason it is set."""
    # The finalizer older versions (a daemon per watcher) added: kopf removes it, since nothing
    # here needs one any more, but only under its name.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # kopf must never write status.kopf (the status schema is structural and ours: it would be
    # pruned and re-written forever). Only event handlers: no progress or diff-base is stored.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # Events come only from our own calls (one per run, one per failure), posted and awaited
    # through controller/adapters/kube.py so none is lost at shutdown; kopf posts none, not even for
    # log lines, so `kubectl describe` stays readable.
    settings.posting.enabled = False
    # Reconnect watches periodically even if the server keeps them open: a silently dead
    # connection would otherwise delay triggers until TCP notices.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # kopf's own API calls (its watch and its annotations) wait 300 s by default: a hung
    # API server would hold a watcher's handling that long. Ours (controller/adapters/kube.py)
    # have theirs.
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # Events of one object arriving within this window are processed together; short, because
    # the manual trigger's promise is a run within a second.
    settings.batching.batch_window = 0.05
    # Fetches and deliveries happen in our own async code; kopf's sync-handler threads are idle.
    settings.execution.max_workers = 4
    # HA is our Lease (controller/runtime/leadership.py): kopf itself never pauses, so a standby
    # keeps following the watch and takes over without listing 10,000 objects first.
    settings.peering.standalone = True
    # After kopf's own logging set-up (its --verbose/--quiet), which this refines.
    set_log_levels(SETTINGS.log_level)
    operator = memo["operator"] = Operator()
    await operator.start()
    if SETTINGS.metrics_port:
        operator.metrics.serve(SETTINGS.metrics_host, SETTINGS.metrics_port)
    # Everything imported and built so far lives for the whole process: keep it out of the
    # collector's full passes from the start (the watchers' state follows, see
    # controller/runtime/heap.py).
    gc.freeze()


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    operator = memo.get("operator")
    if isinstance(operator, Operator):
        await operator.stop()


def _mine(body: kopf.Body) -> bool:
    return shard_of(body.metadata.uid or "", SETTINGS.shards) == SETTINGS.shard_index


# Async on purpose: kopf runs sync handlers in threads, and the dispatcher is not thread-safe.
# No daemon, timer or change handler: kopf then needs no finalizer (and removes the one older
# versions added), and keeps nothing per watcher but its own small watch bookkeeping.
@kopf.on.event(GROUP, VERSION, PLURAL, when=lambda body, **_: _mine(body))
async def observe(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Every watch event of a watcher this shard serves: new, changed, triggered or deleted."""
    operator = _operator(memo)
    # A listing event (no type) for a watcher already held: kopf re-listed, which tells nothing
    # about objects deleted meanwhile. (At startup every listed watcher is new.)
    if type is None and operator.dispatcher.holds(body.metadata.uid or ""):
        operator.reconciler.relisted()
    await operator.dispatcher.observe(body, deleted=type == "DELETED")


# Every watcher, whatever the shard: any replica answers for any feed its watch sees.
@kopf.on.event(GROUP, VERSION, PLURAL)
async def calendar_feed(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """What a watcher's calendar feed is; the replica that serves the watcher (its shard's
    leader) makes sure it has a token, at every watch event (a re-list included)."""
    operator = _operator(memo)
    if operator.calendar is None:
        return
    view = operator.calendar.observe(body, deleted=type == "DELETED")
    if view is not None and operator.dispatcher.serving and _mine(body):
        operator.calendar.tokens.want(view.ref)


@kopf.on.probe(id="watchers")
async def watchers_served(memo: kopf.Memo, **_: Any) -> int:
    """Watchers this replica serves: 0 on a standby (another replica holds the Lease)."""
    return _operator(memo).dispatcher.served


@kopf.on.probe(id="secondsSinceLastSuccess")
async def last_success_age(memo: kopf.Memo, **_: Any) -> float | None:
    """Age of the freshest successful run of any watcher: an operator that is alive but stuck
    shows here while /healthz still answers."""
    latest = max(
        (s.last_success for s in _operator(memo).dispatcher.schedulers() if s.last_success),
        default=None,
    )
    return None if latest is None else round((datetime.now(UTC) - latest).total_seconds(), 1)
