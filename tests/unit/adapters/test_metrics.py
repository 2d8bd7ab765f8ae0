"""The per-watcher state metrics follow the status, and a deleted watcher leaves no series."""

from __future__ import annotations

import gc

from prometheus_client import generate_latest

from controller.adapters.metrics import Metrics
from controller.core.model import WatcherRef
from controller.core.status import WatcherStatus
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

    metrics.forget(REF)
    assert 'name="anna"' not in text(metrics)


def test_process_collectors_and_build_info_are_exported() -> None:
    exported = text(Metrics())
    assert "process_resident_memory_bytes" in exported
    assert "python_gc_collections_total" in exported
    assert 'matchwatcher_build_info{version="' in exported


def test_per_watcher_counters_count_by_their_labels_and_are_exposed_as_totals() -> None:
    metrics = Metrics()
    other = WatcherRef("referees", "bo", "uid-2")
    for ref, trigger, result in [
        (REF, "schedule", "success"),
        (REF, "schedule", "success"),
        (REF, "manual", "failure"),
        (other, "schedule", "success"),
    ]:
        metrics.runs.inc(ref, trigger, result)
    exported = text(metrics)
    anna = {"namespace": "referees", "name": "anna"}
    assert metric_value(exported, "matchwatcher_runs_total", {**anna, "result": "success"}) == 2
    assert metric_value(exported, "matchwatcher_runs_total", {**anna, "trigger": "manual"}) == 1
    assert metric_value(exported, "matchwatcher_runs_total", {"name": "bo"}) == 1
    assert "# TYPE matchwatcher_runs_total counter" in exported  # as Counter exposed it

    metrics.forget(REF)
    assert metric_value(text(metrics), "matchwatcher_runs_total", {"name": "bo"}) == 1
    assert 'name="anna"' not in text(metrics)


def test_per_watcher_series_leave_nothing_per_watcher_for_the_garbage_collector() -> None:
    """The reason for WatcherFamily: full collections scan every tracked object on the event
    loop, and a labelled prometheus-client child is several of them per series."""
    metrics = Metrics()
    refs = [WatcherRef("referees", f"w{i}", f"uid-{i}") for i in range(2000)]
    gc.collect()
    before = len(gc.get_objects())
    for ref in refs:
        metrics.runs.inc(ref, "schedule", "success")
        metrics.watcher_state(ref, ready("True", "Scheduled", webhook={"pendingChanges": 0}))
    gc.collect()
    assert len(gc.get_objects()) - before < 100  # not one per watcher


def test_a_deleted_watchers_cleanup_leaves_the_series_of_one_recreated_under_its_name() -> None:
    """Deleted during a run, a watcher is released when the run ends: by then one re-created
    under its name may be serving (and exporting) already."""
    metrics = Metrics()
    old, new = REF, WatcherRef(REF.namespace, REF.name, "uid-recreated")
    metrics.watcher_state(old, ready("True", "Scheduled"))
    metrics.runs.inc(old, "schedule", "success")
    metrics.watcher_state(new, ready("False", "LoginFailed"))
    metrics.runs.inc(new, "manual", "failure")

    metrics.forget(old)
    labels = {"namespace": "referees", "name": "anna"}
    assert (
        metric_value(text(metrics), "matchwatcher_ready", {**labels, "reason": "LoginFailed"}) == 0
    )
    assert metric_value(text(metrics), "matchwatcher_runs_total", labels) is not None
    metrics.forget(new)
    assert 'name="anna"' not in text(metrics)
