"""The per-watcher state metrics follow the status, and a deleted watcher leaves no series."""

from __future__ import annotations

from prometheus_client import generate_latest

from controller.metrics import Metrics
from controller.model import WatcherRef
from controller.status import WatcherStatus
from tests.support.metrics import metric_value

REF = WatcherRef("referees", "anna", "uid-1")


def ready(status: str, reason: str, **more: object) -> WatcherStatus:
    return WatcherStatus.parse(
        {"conditions": [{"type": "Ready", "status": status, "reason": reason}], **more}
    )


def text(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_state_follows_the_status_and_a_reason_change_leaves_no_stale_series() -> None:
    metrics = Metrics()
    labels = {"namespace": "referees", "name": "anna"}
    metrics.watcher_state(
        REF,
        ready("True", "Scheduled", nextExecutionTime="2026-11-28T11:00:00Z",
              webhook={"pendingChanges": 2}),
    )  # fmt: skip
    assert metric_value(text(metrics), "matchwatcher_ready", {**labels, "reason": "Scheduled"}) == 1
    assert metric_value(text(metrics), "matchwatcher_next_run_timestamp_seconds", labels) == (
        1795863600.0
    )
    assert metric_value(text(metrics), "matchwatcher_webhook_pending_changes", labels) == 2

    metrics.watcher_state(REF, ready("False", "LoginFailed"))  # and suspended: no next run
    assert (
        metric_value(text(metrics), "matchwatcher_ready", {**labels, "reason": "Scheduled"}) is None
    )
    assert (
        metric_value(text(metrics), "matchwatcher_ready", {**labels, "reason": "LoginFailed"}) == 0
    )
    assert metric_value(text(metrics), "matchwatcher_next_run_timestamp_seconds", labels) is None

    metrics.forget("referees", "anna")
    assert 'name="anna"' not in text(metrics)


def test_process_collectors_and_build_info_are_exported() -> None:
    exported = text(Metrics())
    assert "process_resident_memory_bytes" in exported
    assert "python_gc_collections_total" in exported
    assert 'matchwatcher_build_info{version="' in exported
