"""Prometheus metrics and the /metrics HTTP server.

Per-watcher series are labelled {namespace, name}; histograms are operator-wide so 1,000 watchers
do not multiply their buckets. `forget()` drops a deleted watcher's series.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    start_http_server,
)

from controller import __version__
from controller.model import WatcherRef
from controller.status import WatcherStatus

_WATCHER = ("namespace", "name")
# The *_created series double every counter's cardinality and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class Metrics:
    """All metric objects of the operator, in a registry of their own (nothing from other
    libraries leaking in, and tests can build as many as they like), plus prometheus-client's
    process, platform and GC collectors and a build_info series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        Info("matchwatcher_build", "The operator's version.", registry=r).info(
            {"version": __version__}
        )
        # State of each watcher, as its status says (set after every status write): what the
        # alerts look at.
        self.ready = Gauge(
            "matchwatcher_ready",
            "1 when the watcher's Ready condition is True, else 0; reason as a label.",
            [*_WATCHER, "reason"],
            registry=r,
        )
        self.next_run = Gauge(
            "matchwatcher_next_run_timestamp_seconds",
            "Unix time of the watcher's next scheduled run (absent while suspended).",
            _WATCHER,
            registry=r,
        )
        self.pending = Gauge(
            "matchwatcher_webhook_pending_changes",
            "Changes found but not yet accepted by the webhook.",
            _WATCHER,
            registry=r,
        )
        self._ready_reasons: dict[tuple[str, str], str] = {}
        self.runs = Counter(
            "matchwatcher_runs", "Detection runs.", [*_WATCHER, "trigger", "result"], registry=r
        )
        self.run_duration = Histogram(
            "matchwatcher_run_duration_seconds",
            "Duration of detection runs.",
            ["trigger"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.schedule_lag = Histogram(
            "matchwatcher_schedule_lag_seconds",
            "Start of a scheduled run minus its cron slot.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 60, 600),
            registry=r,
        )
        self.watchers = Gauge("matchwatcher_watchers", "MatchWatchers being served.", registry=r)
        self.last_success = Gauge(
            "matchwatcher_last_success_timestamp_seconds",
            "Unix time of the last successful run.",
            _WATCHER,
            registry=r,
        )
        self.changes = Counter(
            "matchwatcher_changes",
            "Detected changes by category.",
            [*_WATCHER, "category"],
            registry=r,
        )
        self.source_errors = Counter(
            "matchwatcher_source_errors",
            "Failed FOGIS fetches by reason.",
            [*_WATCHER, "reason"],
            registry=r,
        )
        self.deliveries = Counter(
            "matchwatcher_webhook_deliveries",
            "Webhook deliveries (all attempts of one run) by result.",
            [*_WATCHER, "result"],
            registry=r,
        )
        self.notifications = Counter(
            "matchwatcher_notifications",
            "Notification passes to people (spec.notify) by result: delivered, failed, or "
            "nothing (no change to tell).",
            [*_WATCHER, "result"],
            registry=r,
        )
        self.attempts = Counter(
            "matchwatcher_webhook_attempts",
            "Webhook HTTP attempts by status code ('error' for no answer).",
            [*_WATCHER, "code"],
            registry=r,
        )
        self.webhook_duration = Histogram(
            "matchwatcher_webhook_duration_seconds",
            "Duration of single webhook attempts.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Politeness towards FOGIS (controller/politeness.py): operator-wide, by kind of turn
        # ("exchange": to start talking to FOGIS at all, "login": to post credentials).
        self.fogis_queue = Histogram(
            "matchwatcher_fogis_queue_seconds",
            "Time a FOGIS exchange or login waited for its turn (per-host politeness limits).",
            ["kind"],
            buckets=(0.001, *_LATENCY_BUCKETS, 600, 1800),
            registry=r,
        )
        self.fogis_waiting = Gauge(
            "matchwatcher_fogis_waiting",
            "FOGIS exchanges or logins waiting for their turn now.",
            ["kind"],
            registry=r,
        )
        self._per_watcher = (
            self.ready,
            self.next_run,
            self.pending,
            self.runs,
            self.last_success,
            self.changes,
            self.source_errors,
            self.deliveries,
            self.notifications,
            self.attempts,
        )

    def watcher_state(self, ref: WatcherRef, status: WatcherStatus) -> None:
        """Export what a watcher's status says now (its Ready, next run, pending changes)."""
        key, labels = (ref.namespace, ref.name), {"namespace": ref.namespace, "name": ref.name}
        ready = status.ready
        if ready is not None:
            old = self._ready_reasons.get(key)
            if old is not None and old != ready.reason:
                self.ready.remove(ref.namespace, ref.name, old)
            self._ready_reasons[key] = ready.reason
            self.ready.labels(**labels, reason=ready.reason).set(1 if ready.ready else 0)
        if status.next_execution_time is None:
            self.next_run.remove_by_labels(labels)
        else:
            self.next_run.labels(**labels).set(status.next_execution_time.timestamp())
        self.pending.labels(**labels).set(status.webhook.pending_changes)

    def forget(self, namespace: str, name: str) -> None:
        """Remove every series of a deleted watcher."""
        self._ready_reasons.pop((namespace, name), None)
        for metric in self._per_watcher:
            metric.remove_by_labels({"namespace": namespace, "name": name})

    def serve(self, host: str, port: int) -> None:
        """Start the /metrics server in a daemon thread (prometheus-client's own)."""
        start_http_server(port, addr=host, registry=self.registry)
