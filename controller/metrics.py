"""Prometheus metrics and the /metrics HTTP server.

Per-watcher series are labelled {namespace, name}; histograms are operator-wide so 1,000 watchers
do not multiply their buckets. `forget()` drops a deleted watcher's series.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

_WATCHER = ("namespace", "name")
# The *_created series double every counter's cardinality and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class Metrics:
    """All metric objects of the operator, in a registry of their own (no process collectors
    from other libraries leaking in, and tests can build as many as they like)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
        self._per_watcher = (
            self.runs,
            self.last_success,
            self.changes,
            self.source_errors,
            self.deliveries,
            self.notifications,
            self.attempts,
        )

    def forget(self, namespace: str, name: str) -> None:
        """Remove every series of a deleted watcher."""
        for metric in self._per_watcher:
            metric.remove_by_labels({"namespace": namespace, "name": name})

    def serve(self, host: str, port: int) -> None:
        """Start the /metrics server in a daemon thread (prometheus-client's own)."""
        start_http_server(port, addr=host, registry=self.registry)
