"""The operator core on a real API server: schedule, trigger, suspend, validation, restart,
probes and metrics.

One or two end-to-end proofs per rule; the rules themselves (deadlines, missed slots, schedule
changes while down, DST, the same trigger twice, ...) are rows of tests/unit/core/test_decide.py."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.core.model import GROUP, PLURAL, VERSION
from controller.core.schedule import parse_schedule
from tests.fakes.fogis.server import FakeFogis
from tests.integration.conftest import USERNAME
from tests.integration.harness import ManualRuns
from tests.support.cluster import Cluster
from tests.support.metrics import metric_value
from tests.support.operator_process import Operator, running
from tests.support.waiting import wait_for
from tests.support.watchers import fogis_spec, ready

EVERY_2S = "* * * * * */2"  # test hook: 6th field = seconds (MLCD_ALLOW_SECONDS_SCHEDULES)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    condition = ready(status)
    assert condition is not None, f"no Ready condition in {status}"
    return condition


FINALIZER = f"{GROUP}/finalizer"


def _runs_at_least(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status.get("executionCount", 0) >= count


def test_scheduled_runs_fill_status_and_columns(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    cluster.create_watcher(namespace, "anna", fogis_spec(fogis.base_url, credentials, EVERY_2S))
    status = cluster.wait_status(namespace, "anna", "two scheduled runs", _runs_at_least(2))
    assert _ready(status)["status"] == "True"
    assert status["matchCount"] > 0
    assert status["observedGeneration"] == 1
    slot = _ts(status["lastScheduleTime"])
    assert slot.second % 2 == 0
    assert slot.microsecond == 0
    assert _ts(status["nextExecutionTime"]) > _ts(status["lastExecutionTime"])
    assert status["lastSuccessfulTime"]
    cluster.wait_event(namespace, "anna", "RunSucceeded")
    assert cluster.event_reasons(namespace, "anna")[0] == "Baseline"
    table = cluster.kubectl("get", "mw", "-n", namespace)
    header = table.splitlines()[0].split()
    assert header == [
        "NAME", "SCHEDULE", "TIMEZONE", "SUSPENDED", "LAST", "RUN", "NEXT", "RUN",
        "RUNS", "CHANGES", "READY", "AGE",
    ]  # fmt: skip
    row = table.splitlines()[1].split()
    assert row[0] == "anna"
    assert "True" in row


def test_next_run_is_shown_before_the_first_run(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    spec = fogis_spec(fogis.base_url, credentials, "@yearly", timeZone="Europe/Stockholm")
    cluster.create_watcher(namespace, "yearly", spec)
    status = cluster.wait_status(
        namespace, "yearly", "nextExecutionTime", lambda s: s.get("nextExecutionTime")
    )
    next_run = _ts(status["nextExecutionTime"])
    # Midnight of 1 January in Stockholm is 23:00 UTC on 31 December.
    assert (next_run.month, next_run.day, next_run.hour) == (12, 31, 23)
    assert _ready(status)["reason"] == "Scheduled"
    assert "executionCount" not in status
    assert fogis.fetches == 0


def test_manual_trigger_runs_once_per_value_even_when_suspended(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    spec = fogis_spec(fogis.base_url, credentials, EVERY_2S, suspend=True)
    cluster.create_watcher(namespace, "manual", spec)
    status = cluster.wait_status(namespace, "manual", "Ready", ready)
    assert _ready(status)["reason"] == "Suspended"
    assert status.get("nextExecutionTime") is None

    cluster.trigger(namespace, "manual", "first")
    # docs/usage.md's way to wait for the run a trigger caused.
    cluster.kubectl(
        "wait", "mw/manual", "-n", namespace, "--timeout=20s",
        "--for=jsonpath={.status.lastHandledTrigger}=first",
    )  # fmt: skip
    status = cluster.status(namespace, "manual")
    assert status["executionCount"] == 1
    assert "lastScheduleTime" not in status  # a manual run belongs to no slot

    cluster.trigger(namespace, "manual", "first")  # the same value again: nothing happens
    time.sleep(3)
    assert cluster.status(namespace, "manual")["executionCount"] == 1

    cluster.trigger(namespace, "manual", "second")
    status = cluster.wait_status(namespace, "manual", "second run", _runs_at_least(2), 10)
    assert status["lastHandledTrigger"] == "second"
    assert status["executionCount"] == 2


def test_suspend_stops_scheduled_runs_and_resume_restarts_them(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    cluster.create_watcher(namespace, "pause", fogis_spec(fogis.base_url, credentials, EVERY_2S))
    cluster.wait_status(namespace, "pause", "a run", _runs_at_least(1))
    cluster.patch_spec(namespace, "pause", {"suspend": True})
    status = cluster.wait_status(
        namespace,
        "pause",
        "suspended",
        lambda s: s.get("observedGeneration") == 2 and s.get("nextExecutionTime") is None,
    )
    count = status["executionCount"]
    time.sleep(5)  # two and a half slots
    assert cluster.status(namespace, "pause")["executionCount"] == count
    cluster.patch_spec(namespace, "pause", {"suspend": False})
    status = cluster.wait_status(namespace, "pause", "runs again", _runs_at_least(count + 2), 15)
    assert status.get("nextExecutionTime")


def test_invalid_schedule_and_zone_are_reported_and_recover(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    base = fogis.base_url
    cluster.create_watcher(namespace, "good", fogis_spec(base, credentials, EVERY_2S))
    cluster.create_watcher(namespace, "badcron", fogis_spec(base, credentials, "61 * * * *"))
    cluster.create_watcher(
        namespace, "badzone", fogis_spec(base, credentials, "@daily", timeZone="Mars/Olympus")
    )
    for name, reason in (("badcron", "InvalidSchedule"), ("badzone", "UnknownTimeZone")):
        status = cluster.wait_status(namespace, name, "Ready condition", ready)
        assert (_ready(status)["status"], _ready(status)["reason"]) == ("False", reason)
        assert _condition(status, "Stalled") == ("True", reason)  # kstatus: broken, not busy
        assert cluster.wait_event(namespace, name, reason).type == "Warning"
        assert "executionCount" not in status
        assert status.get("nextExecutionTime") is None
    cluster.wait_status(namespace, "good", "good keeps running", _runs_at_least(2))

    cluster.patch_spec(namespace, "badcron", {"schedule": EVERY_2S})
    cluster.patch_spec(namespace, "badzone", {"timeZone": "Europe/Stockholm", "schedule": EVERY_2S})
    for name in ("badcron", "badzone"):
        status = cluster.wait_status(namespace, name, "recovered", _runs_at_least(1))
        assert _ready(status)["status"] == "True"
        assert _condition(status, "Stalled") is None
        assert _condition(status, "Reconciling") is None  # the run is over
    cluster.kubectl("wait", "mw/badcron", "-n", namespace, "--for=condition=Ready", "--timeout=20s")


def _condition(status: dict[str, Any], type_: str) -> tuple[str, str] | None:
    found = [c for c in status.get("conditions") or [] if c.get("type") == type_]
    return (found[0]["status"], found[0]["reason"]) if found else None


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def _delete_with(cluster: Cluster, namespace: str, name: str) -> None:
    """Delete while an operator runs and wait until it is gone."""
    cluster.delete_watcher(namespace, name)
    wait_for("deletion", lambda: not cluster.exists(namespace, name), timeout=15)


def test_the_finalizer_of_older_versions_is_removed_and_deletion_is_not_held(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    """Older versions ran a kopf daemon per watcher, which needs a finalizer; this one needs
    none, and must not leave upgraded watchers undeletable."""
    cluster.create_watcher(namespace, "old", fogis_spec(fogis.base_url, credentials, "0 0 1 1 *"))
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "old", {"metadata": {"finalizers": [FINALIZER]}}
    )
    wait_for(
        "the finalizer to be removed",
        lambda: (
            FINALIZER not in (cluster.watcher(namespace, "old")["metadata"].get("finalizers") or [])
        ),
        timeout=30,
    )
    _delete_with(cluster, namespace, "old")


def test_restart_runs_one_missed_slot_inside_the_deadline(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, tmp_path: Path
) -> None:
    # Slots at :00, :20 and :40 of every minute.
    spec = fogis_spec(fogis.base_url, credentials, "* * * * * */20", startingDeadlineSeconds=15)
    with running(Operator(cluster.kubeconfig, [namespace], tmp_path / "op1.log")):
        cluster.create_watcher(namespace, "restart", spec)
        first = cluster.wait_status(
            namespace, "restart", "a scheduled run", lambda s: s.get("lastScheduleTime"), 30
        )
    # What a restart tells a changed schedule by survives the CRD's structural schema.
    assert first["lastScheduleOf"] == {"schedule": "* * * * * */20", "timeZone": "UTC"}
    # Down across the next slot; back 5 s after it (inside the 15 s deadline).
    _sleep_until(_ts(first["lastScheduleTime"]) + timedelta(seconds=25))
    before = cluster.status(namespace, "restart")
    assert before["lastScheduleTime"] == first["lastScheduleTime"]
    with running(Operator(cluster.kubeconfig, [namespace], tmp_path / "op2.log")):
        status = cluster.wait_status(
            namespace, "restart", "catch-up run", _runs_at_least(before["executionCount"] + 1), 10
        )
        caught_up = _ts(status["lastScheduleTime"])
        assert caught_up > _ts(first["lastScheduleTime"])
        assert caught_up.second % 20 == 0
        # The missed slot is the one 20 s after the first run's: run late, and only that one.
        assert caught_up == _ts(first["lastScheduleTime"]) + timedelta(seconds=20)
        assert status["executionCount"] == before["executionCount"] + 1
        assert cluster.event_reasons(namespace, "restart").count("Baseline") == 1
        _delete_with(cluster, namespace, "restart")


def test_a_run_that_kills_the_process_is_not_started_again_after_the_restart(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, tmp_path: Path
) -> None:
    """The slot is claimed in status before its run: an OOM-kill during the run must not make
    every restart run the same slot again (a crash loop for every watcher of the operator)."""
    spec = fogis_spec(fogis.base_url, credentials, "* * * * * */20")
    op = Operator(cluster.kubeconfig, [namespace], tmp_path / "op1.log").start()
    try:
        cluster.create_watcher(namespace, "crash", spec)
        cluster.wait_status(namespace, "crash", "Ready", ready)
        fogis.fail_next("timeout")  # the first slot's match list is held back ...
        wait_for("the first slot's login", lambda: fogis.logins >= 1, timeout=30)
        time.sleep(0.5)
        claimed = cluster.status(namespace, "crash").get("lastScheduleTime")
        op.stop(signal.SIGKILL)  # ... and the process dies in the middle of that run
    finally:
        op.stop()
    assert claimed is not None
    assert "executionCount" not in cluster.status(namespace, "crash")
    with running(Operator(cluster.kubeconfig, [namespace], tmp_path / "op2.log")):
        time.sleep(4)  # long enough for a catch-up run of the claimed slot, were there one
        assert "executionCount" not in cluster.status(namespace, "crash")
        status = cluster.wait_status(namespace, "crash", "the next slot", _runs_at_least(1), 30)
        assert _ts(status["lastScheduleTime"]) >= _ts(claimed) + timedelta(seconds=20)
        _delete_with(cluster, namespace, "crash")


def test_a_rejected_password_is_not_retried_sooner_by_a_new_operator(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, tmp_path: Path
) -> None:
    """The login backoff is kept in status (by the Secret's uid and version): a restarted
    operator or a new leader keeps to it, so a wrong password cannot lock the account sooner;
    a changed Secret is tried at once."""
    fogis.set_users({USERNAME: "changed-at-fogis"})  # the Secret's password is now wrong
    spec = fogis_spec(fogis.base_url, credentials, EVERY_2S)
    with running(Operator(cluster.kubeconfig, [namespace], tmp_path / "op1.log")):
        cluster.create_watcher(namespace, "locked", spec)
        status = cluster.wait_status(namespace, "locked", "status.login", lambda s: s.get("login"))
    secret = cluster.core.read_namespaced_secret(credentials, namespace).metadata
    assert status["login"]["secretUid"] == secret.uid
    assert status["login"]["secretResourceVersion"] == secret.resource_version
    assert status["login"]["failures"] == 1
    assert set(status["login"]) == {"secretUid", "secretResourceVersion", "failures", "retryAfter"}
    assert _ts(status["login"]["retryAfter"]) > datetime.now(UTC) + timedelta(minutes=10)
    attempts = fogis.login_attempts
    assert attempts == 1

    with running(Operator(cluster.kubeconfig, [namespace], tmp_path / "op2.log")):
        count = cluster.status(namespace, "locked")["executionCount"]
        status = cluster.wait_status(
            namespace, "locked", "three more scheduled runs", _runs_at_least(count + 3), 30
        )
        assert fogis.login_attempts == attempts  # the new process did not try them again
        assert _ready(status)["reason"] == "LoginFailed"
        assert "scheduled runs retry them after" in status["lastError"]
        assert status["login"]["failures"] == 1

        # The Secret is fixed (a new resourceVersion): the next scheduled run logs in.
        cluster.create_secret(
            namespace, credentials, {"username": USERNAME, "password": "changed-at-fogis"}
        )
        status = cluster.wait_status(
            namespace,
            "locked",
            "a run that logs in",
            lambda s: (ready(s) or {}).get("reason") == "Succeeded",
        )
        assert fogis.login_attempts == attempts + 1
        assert "login" not in status  # cleared once FOGIS accepted them
        _delete_with(cluster, namespace, "locked")


def test_probes_metrics_and_series_removed_on_delete(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    cluster.create_watcher(namespace, "metered", fogis_spec(fogis.base_url, credentials, EVERY_2S))
    cluster.wait_status(namespace, "metered", "two runs", _runs_at_least(2))
    # kopf caches probe results for 10 s.
    health = wait_for("probe", lambda: (h := operator.health())["watchers"] == 1 and h, 15)
    assert health["watchers"] == 1
    assert 0 <= health["secondsSinceLastSuccess"] < 30
    text = operator.metrics()
    labels = {"namespace": namespace, "name": "metered"}
    runs = metric_value(
        text, "matchwatcher_runs_total", {**labels, "trigger": "schedule", "result": "success"}
    )
    assert runs is not None
    assert runs >= 2
    assert metric_value(text, "matchwatcher_last_success_timestamp_seconds", labels)
    assert "matchwatcher_run_duration_seconds_bucket" in text
    assert "matchwatcher_schedule_lag_seconds_bucket" in text
    assert "\nmatchwatcher_watchers 1.0" in text
    _delete_with(cluster, namespace, "metered")
    wait_for("series removed", lambda: 'name="metered"' not in operator.metrics(), timeout=15)
    assert "\nmatchwatcher_watchers 0.0" in operator.metrics()


def test_sigterm_lets_a_running_run_finish_and_exits_zero(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, tmp_path: Path
) -> None:
    fogis.timeout_delay = 3  # the fetch takes 3 s (below the operator's 5 s FOGIS timeout)
    op = Operator(cluster.kubeconfig, [namespace], tmp_path / "op.log").start()
    try:
        cluster.create_watcher(namespace, "slow", fogis_spec(fogis.base_url, credentials))
        cluster.wait_status(namespace, "slow", "Ready", ready)
        fogis.fail_next("timeout")
        cluster.trigger(namespace, "slow", "go")
        wait_for("a login", lambda: fogis.logins >= 1, timeout=10)
        time.sleep(0.5)  # the match list request is now being held back by the fake
        busy = _condition(cluster.status(namespace, "slow"), "Reconciling")
        code = op.stop(signal.SIGTERM)
    finally:
        op.stop()
    assert code == 0
    assert busy == ("True", "Running")  # kstatus: busy while the run was held
    status = cluster.status(namespace, "slow")
    assert _condition(status, "Reconciling") is None
    assert status.get("lastHandledTrigger") == "go"
    assert status.get("executionCount") == 1
    assert _ready(status)["status"] == "True"
    cluster.force_delete_watcher(namespace, "slow")


def test_one_replica_leads_and_a_frozen_leader_is_replaced_then_steps_down(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, tmp_path: Path
) -> None:
    """HA on a Lease: the standby serves nothing (no runs, no series) while the leader renews;
    a leader that stops renewing (frozen here) is replaced once its Lease expires, and when it
    wakes it steps down and drops the series it no longer serves."""
    env = {"MLCD_LEASE_NAME": "ha", "MLCD_LEASE_NAMESPACE": namespace}
    first = Operator(cluster.kubeconfig, [namespace], tmp_path / "first.log", env)
    second = Operator(cluster.kubeconfig, [namespace], tmp_path / "second.log", env)
    with running(first):
        cluster.create_watcher(
            namespace, "moved", fogis_spec(fogis.base_url, credentials, EVERY_2S)
        )
        cluster.wait_status(namespace, "moved", "runs", _runs_at_least(1), 30)
        wait_for("the series", lambda: 'name="moved"' in first.metrics(), timeout=15)
        with running(second):
            runs = cluster.status(namespace, "moved").get("executionCount", 0)
            cluster.wait_status(namespace, "moved", "more runs", _runs_at_least(runs + 2), 30)
            assert second.health()["watchers"] == 0
            assert 'name="moved"' not in second.metrics()
            os.kill(first.pid, signal.SIGSTOP)  # renewals stop; the Lease runs out in 15 s
            try:
                wait_for("the take-over", lambda: "won leadership" in second.logs(), timeout=40)
                runs = cluster.status(namespace, "moved").get("executionCount", 0)
                cluster.wait_status(namespace, "moved", "runs", _runs_at_least(runs + 1), 30)
                wait_for("the series", lambda: 'name="moved"' in second.metrics(), timeout=15)
            finally:
                os.kill(first.pid, signal.SIGCONT)
            wait_for("the step-down", lambda: "lost leadership" in first.logs(), timeout=30)
            wait_for(
                "the old leader to drop the series",
                lambda: 'name="moved"' not in first.metrics(),
                timeout=30,
            )
            _delete_with(cluster, namespace, "moved")


def test_json_logs_name_the_watcher_in_fields(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, tmp_path: Path
) -> None:
    """The chart's logFormat: json (kopf's --log-format=json): every line is a JSON object, and
    lines about a watcher carry it as fields, so `jq 'select(.watcher.name == "x")'` works."""
    log = tmp_path / "op.log"
    with running(Operator(cluster.kubeconfig, [namespace], log, args=["--log-format=json"])):
        spec = fogis_spec(fogis.base_url, credentials, "0 0 1 1 *")
        cluster.create_watcher(namespace, "jsonlog", spec)
        ManualRuns(cluster, namespace, "jsonlog")()
        _delete_with(cluster, namespace, "jsonlog")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    about = [line for line in lines if line.get("watcher") == {"namespace": namespace,
                                                                 "name": "jsonlog"}]  # fmt: skip
    assert any("manual run: recorded a baseline" in line["message"] for line in about)


def test_a_hashed_schedule_runs_at_the_minute_of_its_uid(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    watcher = cluster.create_watcher(
        namespace, "hashed", fogis_spec(fogis.base_url, credentials, "H * * * *")
    )
    status = cluster.wait_status(
        namespace, "hashed", "NEXT RUN", lambda s: s.get("nextExecutionTime"), 15
    )
    assert _ready(status)["reason"] == "Scheduled"
    uid = watcher["metadata"]["uid"]
    expected = parse_schedule("H * * * *", "UTC", hash_id=uid).next_after(datetime.now(UTC))
    assert _ts(status["nextExecutionTime"]).minute == expected.minute
