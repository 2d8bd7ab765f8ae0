"""Prometheus metrics and the /metrics HTTP server.

Per-watcher series are labelled {namespace, name}; histograms are operator-wide so 1,000 watchers
do not multiply their buckets. `forget()` drops a deleted watcher's series.

Per-watcher series are plain numbers in dicts (`WatcherFamily`), turned into samples only when
scraped, the way exporters of many objects do it: prometheus-client's labelled children cost about
1.1 KiB and 15 garbage-collected objects a watcher (a metric object, a lock and a value each), which
at 10,000 watchers made every full collection scan 150,000 more objects on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller import __version__
from controller.core.model import WatcherRef
from controller.core.status import WatcherStatus

# The *_created series double every counter's cardinality and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class WatcherFamily(Collector):
    """One per-watcher metric: a value per watcher and per value of its `extra` labels.

    Written on the event loop, read by the /metrics thread: every read copies a dict first
    (one C call under the GIL), so a scrape never sees a dict change size under it.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        kind: Literal["gauge", "counter"],
        extra: tuple[str, ...] = (),
    ) -> None:
        self._name, self._doc, self._kind, self._extra = name, documentation, kind, extra
        # (namespace, name) -> (extra label values) -> value. Tuples of strings and floats only,
        # so the collector untracks the inner dicts: nothing per watcher for it to scan.
        self._values: dict[tuple[str, str], dict[tuple[str, ...], float]] = {}

    def _series(self, ref: WatcherRef) -> dict[tuple[str, ...], float]:
        key = (ref.namespace, ref.name)
        series = self._values.get(key)
        if series is None:
            series = self._values[key] = {}
        return series

    def inc(self, ref: WatcherRef, *extra: str) -> None:
        series = self._series(ref)
        series[extra] = series.get(extra, 0.0) + 1.0

    def set(self, ref: WatcherRef, value: float, *extra: str) -> None:
        """Set the watcher's one series (with these extra label values), dropping any other."""
        self._values[(ref.namespace, ref.name)] = {extra: value}

    def forget(self, namespace: str, name: str) -> None:
        self._values.pop((namespace, name), None)

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "name", *self._extra]
        family: GaugeMetricFamily | CounterMetricFamily
        if self._kind == "gauge":
            family = GaugeMetricFamily(self._name, self._doc, labels=labels)
        else:
            family = CounterMetricFamily(self._name, self._doc, labels=labels)
        for (namespace, name), series in self._values.copy().items():
            for extra, value in series.copy().items():
                family.add_metric([namespace, name, *extra], value)
        yield family


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
        # State of each watcher, as its status says (set after every status write, and at a
        # process's first step when nothing needs writing): what the alerts look at.
        self.ready = WatcherFamily(
            "matchwatcher_ready",
            "1 when the watcher's Ready condition is True, else 0; reason as a label.",
            "gauge",
            ("reason",),
        )
        self.next_run = WatcherFamily(
            "matchwatcher_next_run_timestamp_seconds",
            "Unix time of the watcher's next scheduled run (absent while suspended).",
            "gauge",
        )
        self.pending = WatcherFamily(
            "matchwatcher_webhook_pending_changes",
            "Changes found but not yet accepted by the webhook.",
            "gauge",
        )
        self.runs = WatcherFamily(
            "matchwatcher_runs", "Detection runs.", "counter", ("trigger", "result")
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
        self.last_success = WatcherFamily(
            "matchwatcher_last_success_timestamp_seconds",
            "Unix time of the last successful run.",
            "gauge",
        )
        self.changes = WatcherFamily(
            "matchwatcher_changes", "Detected changes by category.", "counter", ("category",)
        )
        self.source_errors = WatcherFamily(
            "matchwatcher_source_errors", "Failed FOGIS fetches by reason.", "counter", ("reason",)
        )
        self.deliveries = WatcherFamily(
            "matchwatcher_webhook_deliveries",
            "Webhook deliveries (all attempts of one run) by result.",
            "counter",
            ("result",),
        )
        self.notifications = WatcherFamily(
            "matchwatcher_notifications",
            "Notification passes to people (spec.notify) by result: delivered, failed, held "
            "(changes kept for quiet hours' end), filtered (changes in categories nobody asked "
            "for, counted as told), or nothing (no change to tell); a pass counts once in each "
            "that happened.",
            "counter",
            ("result",),
        )
        self.attempts = WatcherFamily(
            "matchwatcher_webhook_attempts",
            "Webhook HTTP attempts by status code ('error' for no answer).",
            "counter",
            ("code",),
        )
        self.webhook_duration = Histogram(
            "matchwatcher_webhook_duration_seconds",
            "Duration of single webhook attempts.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Politeness towards FOGIS (controller/runtime/politeness.py): operator-wide, by kind of
        # turn ("exchange": to start talking to FOGIS at all, "login": to post credentials).
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
        for family in self._per_watcher:
            r.register(family)
        # (namespace, name) -> the uid whose status was exported last: the series are that
        # object's, so a deleted watcher's cleanup leaves those of one re-created under its name.
        self._owners: dict[tuple[str, str], str] = {}

    def watcher_state(self, ref: WatcherRef, status: WatcherStatus) -> None:
        """Export what a watcher's status says now (its Ready, next run, pending changes)."""
        self._owners[(ref.namespace, ref.name)] = ref.uid
        ready = status.ready
        if ready is not None:
            self.ready.set(ref, 1 if ready.ready else 0, ready.reason)
        if status.next_execution_time is None:
            self.next_run.forget(ref.namespace, ref.name)
        else:
            self.next_run.set(ref, status.next_execution_time.timestamp())
        self.pending.set(ref, status.webhook.pending_changes)

    def forget(self, ref: WatcherRef) -> None:
        """Remove every series of a watcher this process no longer serves, unless another
        object of its name (re-created meanwhile) exported its status since."""
        key = (ref.namespace, ref.name)
        if self._owners.get(key, ref.uid) != ref.uid:
            return
        self._owners.pop(key, None)
        for family in self._per_watcher:
            family.forget(ref.namespace, ref.name)

    def serve(self, host: str, port: int) -> None:
        """Start the /metrics server in a daemon thread (prometheus-client's own)."""
        start_http_server(port, addr=host, registry=self.registry)
