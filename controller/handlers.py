"""kopf wiring, and the only module that imports kopf.

Routing stays thin: decisions live in decide.py, carried out by scheduler.WatcherScheduler; runs
in runner.WatcherRunner. Shared objects travel in kopf's memo: the operator-wide `Operator` in
the global memo (set at startup), each watcher's scheduler in that watcher's own memo.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from datetime import UTC, datetime
from typing import Any

import kopf

from controller.config import load_settings
from controller.kube import Kube
from controller.metrics import Metrics
from controller.model import GROUP, PLURAL, VERSION, WatcherRef
from controller.runner import WatcherRunner
from controller.scheduler import WatcherScheduler

# Read at import: the daemon decorator below needs the shutdown timeout.
SETTINGS = load_settings()
log = logging.getLogger(__name__)


class Operator:
    """Operator-wide objects, created in the startup handler."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.kube = Kube.from_environment(SETTINGS.kube_workers)
        self.runner = WatcherRunner(kube=self.kube, settings=SETTINGS, metrics=self.metrics)
        # The schedulers this process runs now, for the probes.
        self.schedulers: set[WatcherScheduler] = set()


def _operator(memo: kopf.Memo) -> Operator:
    operator = memo.get("operator")
    if not isinstance(operator, Operator):
        raise RuntimeError("the startup handler has not run")
    return operator


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Every kopf setting in one place, each with the reason it is set."""
    # Our own finalizer name: it shows in `kubectl get -o yaml` and names its owner.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Keep kopf's bookkeeping in annotations: the status schema is structural and owned by us,
    # so kopf must not write status.kopf (it would be pruned and re-written forever). There are
    # no create/update handlers, so no diff-base is ever stored.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # Events come only from our own calls (one per run, one per failure), posted and awaited
    # through controller/kube.py so none is lost at shutdown; kopf posts none, not even for
    # log lines, so `kubectl describe` stays readable.
    settings.posting.enabled = False
    # Reconnect watches periodically even if the server keeps them open: a silently dead
    # connection would otherwise delay triggers until TCP notices.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # kopf's own API calls (finalizers, its annotations, peering) wait 300 s by default: a hung
    # API server would hold a watcher's handling that long. Ours (controller/kube.py) have theirs.
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # Events of one object arriving within this window are processed together; short, because
    # the manual trigger's promise is a run within a second.
    settings.batching.batch_window = 0.05
    # A stopped daemon (watcher deleted, operator paused by peering) that has not exited after a
    # few zero-time cycles makes kopf re-check it only on the next watch event or after the
    # cancellation timeout (65 s). Closing the deleted watcher's FOGIS session, or the status
    # patch of a shielded run, takes longer than those cycles, so a deletion could hang for a
    # minute when the last event raced the daemon's exit. Waiting up to 2 s for the exit removes
    # the finalizer as soon as the daemon is done; a loop never starts a run once stopped.
    settings.background.instant_exit_timeout = 2.0
    # Fetches and deliveries happen in our own async code; kopf's sync-handler threads are idle.
    settings.execution.max_workers = 4
    # Peering only when HA is asked for; otherwise run standalone without looking for peers.
    if SETTINGS.peering_name:
        settings.peering.standalone = False
        settings.peering.mandatory = True
        settings.peering.name = SETTINGS.peering_name
        settings.peering.priority = (
            random.randint(1, 10_000)  # noqa: S311 - distinct per replica, not a secret
            if SETTINGS.peering_priority == "auto"
            else int(SETTINGS.peering_priority)
        )
    else:
        settings.peering.standalone = True
    if SETTINGS.log_level:
        logging.getLogger().setLevel(SETTINGS.log_level.upper())
    # httpx logs every request URL at INFO; a webhook URL from a Secret may carry a token.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    operator = memo["operator"] = Operator()
    if SETTINGS.metrics_port:
        operator.metrics.serve(SETTINGS.metrics_host, SETTINGS.metrics_port)
    # Everything imported and built so far lives for the whole process: keep it out of the
    # collector's full passes, which otherwise pause the loop for tenths of a second at scale.
    gc.freeze()


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    operator = memo.get("operator")
    if isinstance(operator, Operator):
        await operator.runner.aclose()
        operator.kube.close()


def _ref(body: kopf.Body) -> WatcherRef:
    return WatcherRef(
        namespace=body.metadata.namespace or "",
        name=body.metadata.name or "",
        uid=body.metadata.uid or "",
    )


# Async on purpose: kopf runs sync handlers in threads, and asyncio.Event is not thread-safe.
@kopf.on.event(GROUP, VERSION, PLURAL)
async def poke(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Wake the watcher's scheduler on a spec change, a new trigger value or deletion."""
    scheduler = memo.get("scheduler")
    if isinstance(scheduler, WatcherScheduler):
        scheduler.poke(body)


@kopf.daemon(
    GROUP,
    VERSION,
    PLURAL,
    # On stop, an idle scheduler is cancelled at once; a run in progress is shielded and given
    # the shutdown timeout to finish (see WatcherScheduler._run).
    cancellation_timeout=SETTINGS.shutdown_timeout_seconds + 5,
)
async def watch(body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any) -> None:
    operator = _operator(memo)
    ref = _ref(body)
    scheduler = WatcherScheduler(
        ref=ref,
        body=lambda: body,
        runner=operator.runner,
        cluster=operator.kube,
        settings=SETTINGS,
        on_status=operator.metrics.watcher_state,
    )
    memo["scheduler"] = scheduler
    operator.schedulers.add(scheduler)
    operator.metrics.watchers.inc()
    try:
        await scheduler.serve(lambda: bool(stopped))
    finally:
        operator.metrics.watchers.dec()
        operator.schedulers.discard(scheduler)
        memo.pop("scheduler", None)
        if (
            stopped.reason is not None
            and kopf.DaemonStoppingReason.RESOURCE_DELETED in stopped.reason
        ):
            await asyncio.shield(operator.runner.forget(ref))
        else:
            # Paused by peering (another replica serves it now) or shutting down: this process
            # must not keep exporting the watcher's series as if it still ran it.
            operator.metrics.forget(ref.namespace, ref.name)


@kopf.on.probe(id="watchers")
async def watchers_running(memo: kopf.Memo, **_: Any) -> int:
    return len(_operator(memo).schedulers)


@kopf.on.probe(id="secondsSinceLastSuccess")
async def last_success_age(memo: kopf.Memo, **_: Any) -> float | None:
    """Age of the freshest successful run of any watcher: an operator that is alive but stuck
    shows here while /healthz still answers."""
    latest = max(
        (s.last_success for s in _operator(memo).schedulers if s.last_success), default=None
    )
    return None if latest is None else round((datetime.now(UTC) - latest).total_seconds(), 1)
