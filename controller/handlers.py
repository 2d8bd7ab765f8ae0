"""kopf wiring, and the only module that imports kopf.

Routing stays thin: every decision lives in loop.WatcherLoop and run.WatcherRunner.
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
from controller.loop import WatcherLoop
from controller.metrics import Metrics
from controller.model import GROUP, PLURAL, VERSION, WatcherRef
from controller.run import WatcherRunner

SETTINGS = load_settings()
log = logging.getLogger(__name__)


class _Operator:
    """Operator-wide objects, created in the startup handler."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.kube = Kube.from_environment(SETTINGS.kube_workers)
        self.runner = WatcherRunner(kube=self.kube, settings=SETTINGS, metrics=self.metrics)
        # Keyed by uid: a watcher deleted and re-created under the same name is a new object.
        self.loops: dict[str, WatcherLoop] = {}


_operator: _Operator | None = None


def _op() -> _Operator:
    if _operator is None:
        raise RuntimeError("the startup handler has not run")
    return _operator


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Every kopf setting in one place, each with the reason it is set."""
    global _operator  # noqa: PLW0603 - one operator per process, built once at startup
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
    _operator = _Operator()
    if SETTINGS.metrics_port:
        _operator.metrics.serve(SETTINGS.metrics_host, SETTINGS.metrics_port)
    # Everything imported and built so far lives for the whole process: keep it out of the
    # collector's full passes, which otherwise pause the loop for tenths of a second at scale.
    gc.freeze()


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    if _operator is not None:
        await _operator.runner.aclose()
        _operator.kube.close()


def _ref(body: kopf.Body) -> WatcherRef:
    return WatcherRef(
        namespace=body.metadata.namespace or "",
        name=body.metadata.name or "",
        uid=body.metadata.uid or "",
    )


# Async on purpose: kopf runs sync handlers in threads, and asyncio.Event is not thread-safe.
@kopf.on.event(GROUP, VERSION, PLURAL)
async def poke(body: kopf.Body, uid: str | None, **_: Any) -> None:
    """Wake the watcher's loop on a spec change, a new trigger value or deletion."""
    loop = _op().loops.get(uid or "")
    if loop is not None:
        loop.poke(body)


@kopf.daemon(
    GROUP,
    VERSION,
    PLURAL,
    # On stop, an idle loop is cancelled at once; a run in progress is shielded and given
    # the shutdown timeout to finish (see WatcherLoop._run).
    cancellation_timeout=SETTINGS.shutdown_timeout_seconds + 5,
)
async def watch(body: kopf.Body, stopped: kopf.DaemonStopped, logger: Any, **_: Any) -> None:
    op = _op()
    ref = _ref(body)

    async def emit(type_: str, reason: str, message: str) -> None:
        await op.kube.post_event(ref, type_, reason, message)

    loop = WatcherLoop(
        ref=ref,
        body=lambda: body,
        runner=op.runner,
        patch_status=op.kube.patch_status,
        emit=emit,
        settings=SETTINGS,
    )
    op.loops[ref.uid] = loop
    op.metrics.watchers.inc()
    try:
        await loop.serve(lambda: bool(stopped))
    finally:
        op.metrics.watchers.dec()
        op.loops.pop(ref.uid, None)
        if (
            stopped.reason is not None
            and kopf.DaemonStoppingReason.RESOURCE_DELETED in stopped.reason
        ):
            await asyncio.shield(op.runner.forget(ref))
        else:
            # Paused by peering (another replica serves it now) or shutting down: this process
            # must not keep exporting the watcher's series as if it still ran it.
            op.metrics.forget(ref.namespace, ref.name)


@kopf.on.probe(id="watchers")
async def watchers_running(**_: Any) -> int:
    return len(_op().loops)


@kopf.on.probe(id="secondsSinceLastSuccess")
async def last_success_age(**_: Any) -> float | None:
    """Age of the freshest successful run of any watcher: an operator that is alive but stuck
    shows here while /healthz still answers."""
    latest = max((w.last_success for w in _op().loops.values() if w.last_success), default=None)
    return None if latest is None else round((datetime.now(UTC) - latest).total_seconds(), 1)
