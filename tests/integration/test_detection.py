"""FOGIS source and change detection (issue 3) on a real API server: baseline, categorised
changes, failed fetches that are never compared, Secrets read at run time, restart safety.

Runs are triggered by hand (`matchlist.io/trigger`) on a yearly schedule, so every run is one the
test asked for; the fake FOGIS serves the match list and injects the failures.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from controller.core.diff import CATEGORIES
from tests.fakes.fogis.records import make_match
from tests.fakes.fogis.server import FakeFogis
from tests.fakes.receiver import WebhookReceiver
from tests.integration.conftest import PASSWORD, USERNAME
from tests.integration.harness import (
    ManualRuns,
    snapshot_config_map,
    snapshot_document,
    snapshot_name,
    wait_event_with,
)
from tests.support.cluster import Cluster
from tests.support.metrics import metric_value
from tests.support.operator_process import Operator
from tests.support.payloads import delivery_check
from tests.support.waiting import wait_for
from tests.support.watchers import fogis_spec, ready

MATCH_FIELDS = {
    "matchId", "matchNumber", "date", "time", "venue", "homeTeam", "awayTeam", "competition",
    "cancelled", "postponed", "interrupted", "referees",
}  # fmt: skip


def _day(offset: int) -> date:
    return date.today() + timedelta(days=offset)


def _ready(status: dict[str, Any]) -> tuple[str, str]:
    condition = ready(status)
    assert condition is not None, f"no Ready condition in {status}"
    return condition["status"], condition["reason"]


def _changes(text: str, namespace: str, name: str) -> dict[str, float]:
    """matchwatcher_changes_total of one watcher, by category (absent series left out)."""
    found = {}
    for category in CATEGORIES:
        value = metric_value(
            text,
            "matchwatcher_changes_total",
            {"namespace": namespace, "name": name, "category": category},
        )
        if value is not None:
            found[category] = value
    return found


def _stored_ids(cluster: Cluster, namespace: str, name: str) -> set[str]:
    return set(snapshot_document(snapshot_config_map(cluster, namespace, name))["matches"])


def _swap_first_two_roles(referees: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same referees with the roles of the first two exchanged (a role swap)."""
    swapped = [dict(r) for r in referees]
    role_keys = ("domarrollid", "domarrollnamn", "domarrollkortnamn")
    for key in role_keys:
        swapped[0][key], swapped[1][key] = referees[1][key], referees[0][key]
    return swapped


def test_first_run_records_a_baseline_and_notifies_nobody(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    with WebhookReceiver(check=delivery_check()) as hook:
        spec = fogis_spec(fogis.base_url, credentials, webhook={"url": hook.url})
        watcher = cluster.create_watcher(namespace, "base", spec)
        status = ManualRuns(cluster, namespace, "base")()
        assert _ready(status) == ("True", "Succeeded")
        assert status["matchCount"] == 4
        assert status["executionCount"] == 1
        assert status.get("lastError") is None
        assert not status.get("changeCount")
        assert status.get("lastChange") is None
        assert status.get("webhook") is None
        event = cluster.wait_event(namespace, "base", "Baseline")
        assert event.type == "Normal"
        assert event.message == "manual run: recorded a baseline of 4 matches"
        assert hook.requests == []  # the run is over (its status is written): nothing was sent

    # The filter FOGIS got: the default window (7 days back, 365 ahead), all statuses.
    sent = fogis.last_filter
    assert sent is not None
    window = date.fromisoformat(sent["datumTill"]) - date.fromisoformat(sent["datumFran"])
    assert window.days == 7 + 365
    assert sent["typ"] == "alla"

    config_map = snapshot_config_map(cluster, namespace, "base")
    assert config_map is not None, f"no ConfigMap {snapshot_name('base')}"
    (owner,) = config_map.metadata.owner_references
    assert owner.api_version == "matchlist.io/v1alpha1"
    assert (owner.kind, owner.name) == ("MatchWatcher", "base")
    assert owner.uid == watcher["metadata"]["uid"]
    assert owner.controller is True
    assert config_map.metadata.labels["matchlist.io/watcher"] == "base"
    assert (
        config_map.metadata.labels["app.kubernetes.io/managed-by"] == "match-list-change-detector"
    )
    assert not config_map.data
    document = snapshot_document(config_map)
    assert document["format"] == 1
    matches = document["matches"]
    assert set(matches) == {"6143001", "6143002", "6143003", "6143004"}
    for match_id, match in matches.items():
        assert set(match) == MATCH_FIELDS, f"{match_id} is not compact: {sorted(match)}"
    assert matches["6143001"]["time"] == "18:30"
    assert matches["6143003"]["postponed"] is True
    assert {r["role"] for r in matches["6143001"]["referees"]} == {"Dom", "AD1", "AD2"}
    # Compact: contact details and results of the raw records are not stored.
    assert "example.se" not in str(document)
    assert "Kalle Kansli" not in str(document)

    text = operator.metrics()
    labels = {"namespace": namespace, "name": "base"}
    runs = {"trigger": "manual", "result": "success"}
    assert metric_value(text, "matchwatcher_runs_total", {**labels, **runs}) == 1
    assert _changes(text, namespace, "base") == {}
    assert metric_value(text, "matchwatcher_webhook_deliveries_total", labels) is None
    assert [e.reason for e in cluster.events(namespace, "base")] == ["Baseline"]


def _base_list() -> list[dict[str, Any]]:
    return [
        make_match(1001, on=_day(2), avsparkstid="18:30"),
        make_match(1002, on=_day(4)),
        make_match(1003, on=_day(6)),
        make_match(1004, on=_day(8)),
        make_match(1005, on=_day(10)),
        make_match(1006, on=_day(-3)),
    ]


def test_changes_are_reported_by_category(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    fogis.set_matches(_base_list())
    cluster.create_watcher(namespace, "cats", fogis_spec(fogis.base_url, credentials))
    run = ManualRuns(cluster, namespace, "cats")
    assert run()["matchCount"] == 6
    cluster.wait_event(namespace, "cats", "Baseline")

    # Round 1: one of each, plus changes that must stay silent.
    # 1006 (3 days ago) slides out of the window when daysBack drops to 1: not a removal.
    cluster.patch_spec(namespace, "cats", {"source": {"fogis": {"daysBack": 1}}})
    swapped = make_match(1003, on=_day(6))
    swapped["domaruppdraglista"] = _swap_first_two_roles(swapped["domaruppdraglista"])
    ignored = make_match(
        1005,
        on=_day(10),
        matchlag1mal=3,
        matchlag2mal=1,
        antalaskadare=250,
        matchrapportgodkandavdomare=True,
        kontaktpersoner=[{"namn": "Lisa Ledare", "telefon": "08-999 999"}],
    )
    # Reordered referees with new contact details: the same (referee, role) set.
    ignored["domaruppdraglista"] = [
        dict(r, mobiltelefon="070-1111111", epostadress="ny@example.se")
        for r in reversed(ignored["domaruppdraglista"])
    ]
    fogis.set_matches(
        [
            make_match(1001, on=_day(2), avsparkstid="20:15"),  # time_change
            # 1002 is gone while its date is inside the window: removed
            swapped,  # referee_change (role swap)
            make_match(1004, on=_day(8), installd=True),  # cancelled
            ignored,  # nothing
            make_match(1006, on=_day(-3)),  # outside the new window: the fake does not serve it
            make_match(1007, on=_day(12)),  # new_assignment
        ]
    )
    status = run()
    assert _ready(status) == ("True", "Succeeded")
    assert status["matchCount"] == 5
    assert status["changeCount"] == 5
    last = status["lastChange"]
    assert (last["new"], last["removed"], last["changed"]) == (1, 1, 3)
    assert last["time"]
    expected = "manual run: 5 changes (1 new, 1 removed, 3 changed) in 5 matches"
    assert wait_event_with(cluster, namespace, "cats", "RunSucceeded", expected).type == "Normal"
    assert _changes(operator.metrics(), namespace, "cats") == {
        "new_assignment": 1,
        "removed": 1,
        "time_change": 1,
        "referee_change": 1,
        "cancelled": 1,
    }
    matches = snapshot_document(snapshot_config_map(cluster, namespace, "cats"))["matches"]
    assert set(matches) == {"1001", "1003", "1004", "1005", "1007"}
    assert matches["1001"]["time"] == "20:15"
    assert matches["1004"]["cancelled"] is True
    roles = {r["name"]: r["role"] for r in matches["1003"]["referees"]}
    assert roles == {"Anna Andersson": "AD1", "Bo Berg": "Dom", "Cia Carlsson": "AD2"}

    # Round 2: several categories on one match, and a reversal.
    moved = make_match(1001, on=_day(3), avsparkstid="20:15", anlaggningid=3999)
    fogis.set_matches(
        [moved, swapped, make_match(1004, on=_day(8)), ignored, make_match(1007, on=_day(12))]
    )
    status = run()
    assert status["changeCount"] == 7
    last = status["lastChange"]
    assert (last["new"], last["removed"], last["changed"]) == (0, 0, 2)
    expected = "manual run: 2 changes (0 new, 0 removed, 2 changed) in 5 matches"
    wait_event_with(cluster, namespace, "cats", "RunSucceeded", expected)
    assert _changes(operator.metrics(), namespace, "cats") == {
        "new_assignment": 1,
        "removed": 1,
        "time_change": 1,
        "referee_change": 1,
        "cancelled": 1,
        "uncancelled": 1,
        "date_change": 1,
        "venue_change": 1,
    }

    # Round 3: the same list again is no change, and the snapshot is not rewritten.
    before = snapshot_config_map(cluster, namespace, "cats")
    status = run()
    assert status["changeCount"] == 7
    assert status["executionCount"] == 4
    wait_event_with(cluster, namespace, "cats", "RunSucceeded", "no changes in 5 matches")
    after = snapshot_config_map(cluster, namespace, "cats")
    assert after.metadata.resource_version == before.metadata.resource_version


FAILURES = (
    # (injected failure, Ready reason, text of the message)
    ("500", "SourceUnavailable", "FOGIS answered HTTP 500"),
    ("timeout", "SourceUnavailable", "did not answer within 5 s"),
    ("garbage", "SourceUnavailable", "invalid JSON"),
    ("success_false", "SourceUnavailable", "success=false"),
    ("no_matchlista", "SourceUnavailable", "no matchlista"),
    ("login_rejected", "LoginFailed", "FOGIS rejected the login"),
)


def test_failed_fetches_are_never_compared(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    matches = [make_match(1001, on=_day(2)), make_match(1002, on=_day(4))]
    fogis.set_matches(matches)
    cluster.create_watcher(namespace, "flaky", fogis_spec(fogis.base_url, credentials))
    run = ManualRuns(cluster, namespace, "flaky")
    run()
    labels = {"namespace": namespace, "name": "flaky"}
    for index, (kind, reason, text) in enumerate(FAILURES):
        # A real change waits behind each failure.
        matches.append(make_match(2000 + index, on=_day(5 + index)))
        fogis.set_matches(matches)
        before = snapshot_config_map(cluster, namespace, "flaky")
        if kind == "login_rejected":
            fogis.expire_sessions()  # the run must log in again, and that login is refused
        # An answer that is not the list is retried once with a fresh login: fail that too.
        fogis.fail_next(kind, count=1 if kind in ("timeout", "login_rejected") else 2)
        status = run()
        assert _ready(status) == ("False", reason), kind
        assert text in status["lastError"], kind
        assert status["matchCount"] == len(matches) - 1, kind  # the last good count stays
        assert status.get("changeCount", 0) == index, kind
        event = wait_event_with(cluster, namespace, "flaky", reason, text)
        assert event.type == "Warning"
        assert event.message.startswith("manual run failed: ")
        after = snapshot_config_map(cluster, namespace, "flaky")
        assert after.metadata.resource_version == before.metadata.resource_version, kind
        assert after.binary_data == before.binary_data, kind
        errors = sum(1 for k, r, _ in FAILURES[: index + 1] if r == reason)
        metric = metric_value(
            operator.metrics(), "matchwatcher_source_errors_total", {**labels, "reason": reason}
        )
        assert metric == errors, kind

        # The next good run reports the one real change: nothing else, nothing twice.
        status = run()
        assert _ready(status) == ("True", "Succeeded"), kind
        assert status["changeCount"] == index + 1, kind
        last = status["lastChange"]
        assert (last["new"], last["removed"], last["changed"]) == (1, 0, 0), kind
        wait_event_with(
            cluster,
            namespace,
            "flaky",
            "RunSucceeded",
            f"1 changes (1 new, 0 removed, 0 changed) in {len(matches)} matches",
        )
        assert _stored_ids(cluster, namespace, "flaky") == {str(m["matchid"]) for m in matches}

    text = operator.metrics()
    assert _changes(text, namespace, "flaky") == {"new_assignment": len(FAILURES)}
    runs = "matchwatcher_runs_total"
    failed = {**labels, "trigger": "manual", "result": "failure"}
    assert metric_value(text, runs, failed) == len(FAILURES)
    assert metric_value(text, runs, {**failed, "result": "success"}) == len(FAILURES) + 1


def test_missing_credentials_fail_the_run_and_keep_the_snapshot(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    matches = [make_match(1001, on=_day(2))]
    fogis.set_matches(matches)
    cluster.create_watcher(namespace, "nocreds", fogis_spec(fogis.base_url, credentials))
    run = ManualRuns(cluster, namespace, "nocreds")
    run()
    before = snapshot_config_map(cluster, namespace, "nocreds")
    matches.append(make_match(1002, on=_day(4)))
    fogis.set_matches(matches)
    fetches = fogis.fetches

    cluster.core.delete_namespaced_secret(credentials, namespace)
    status = run()
    assert _ready(status) == ("False", "SecretNotFound")
    assert status["lastError"] == f"FOGIS credentials Secret {namespace}/{credentials} not found"
    assert wait_event_with(cluster, namespace, "nocreds", "SecretNotFound", "not found").type == (
        "Warning"
    )

    cluster.create_secret(namespace, credentials, {"username": USERNAME})
    status = run()
    assert _ready(status) == ("False", "SecretNotFound")
    assert "has no password key" in status["lastError"]
    wait_event_with(cluster, namespace, "nocreds", "SecretNotFound", "has no password key")

    assert fogis.fetches == fetches  # no credentials, no request
    after = snapshot_config_map(cluster, namespace, "nocreds")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert status["matchCount"] == 1

    cluster.create_secret(namespace, credentials, {"username": USERNAME, "password": PASSWORD})
    status = run()
    assert _ready(status) == ("True", "Succeeded")
    assert status["changeCount"] == 1
    assert status["lastChange"]["new"] == 1
    assert _stored_ids(cluster, namespace, "nocreds") == {"1001", "1002"}
    text = operator.metrics()
    labels = {"namespace": namespace, "name": "nocreds", "trigger": "manual"}
    assert metric_value(text, "matchwatcher_runs_total", {**labels, "result": "failure"}) == 2
    assert _changes(text, namespace, "nocreds") == {"new_assignment": 1}


def test_session_is_reused_and_a_rotated_password_is_picked_up(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    assert operator.proc is not None
    pid = operator.proc.pid
    cluster.create_watcher(namespace, "session", fogis_spec(fogis.base_url, credentials))
    run = ManualRuns(cluster, namespace, "session")
    for _ in range(3):
        assert _ready(run()) == ("True", "Succeeded")
    assert (fogis.logins, fogis.login_attempts, fogis.fetches) == (1, 1, 3)

    # An expired session: one fresh login inside the same run, which succeeds.
    fogis.fail_next("expire_session")
    assert _ready(run()) == ("True", "Succeeded")
    assert (fogis.logins, fogis.fetches) == (2, 4)

    # The password is changed at FOGIS (old sessions end): the old one in the Secret fails...
    rotated = "n3w-R0tated-pw"
    fogis.set_users({USERNAME: rotated})
    fogis.expire_sessions()
    status = run()
    assert _ready(status) == ("False", "LoginFailed")
    wait_event_with(cluster, namespace, "session", "LoginFailed", "rejected the login")
    # ...and the new one is used as soon as the Secret has it, without a restart.
    cluster.create_secret(namespace, credentials, {"username": USERNAME, "password": rotated})
    status = run()
    assert _ready(status) == ("True", "Succeeded")
    assert fogis.logins == 3
    assert operator.proc is not None
    assert operator.proc.pid == pid
    assert status["executionCount"] == 6


def test_restarted_operator_reports_the_change_not_a_new_baseline(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, tmp_path: Path
) -> None:
    matches = [make_match(1001, on=_day(2)), make_match(1002, on=_day(4))]
    fogis.set_matches(matches)
    run = ManualRuns(cluster, namespace, "restart")
    first = Operator(cluster.kubeconfig, [namespace], tmp_path / "op1.log").start()
    second = Operator(cluster.kubeconfig, [namespace], tmp_path / "op2.log")
    try:
        cluster.create_watcher(namespace, "restart", fogis_spec(fogis.base_url, credentials))
        run()
        cluster.wait_event(namespace, "restart", "Baseline")
        first.stop()
        before = snapshot_config_map(cluster, namespace, "restart")

        # Changed while no operator runs.
        fogis.set_matches([make_match(1001, on=_day(2), avsparkstid="21:00")])
        second.start()
        status = run()
        assert _ready(status) == ("True", "Succeeded")
        assert status["executionCount"] == 2
        assert status["changeCount"] == 2
        last = status["lastChange"]
        assert (last["new"], last["removed"], last["changed"]) == (0, 1, 1)
        wait_event_with(cluster, namespace, "restart", "RunSucceeded", "2 changes (0 new")
        assert [e.reason for e in cluster.events(namespace, "restart")].count("Baseline") == 1
        assert _changes(second.metrics(), namespace, "restart") == {
            "removed": 1,
            "time_change": 1,
        }
        after = snapshot_config_map(cluster, namespace, "restart")
        assert after.metadata.uid == before.metadata.uid  # the same object, updated
        assert set(snapshot_document(after)["matches"]) == {"1001"}
        cluster.delete_watcher(namespace, "restart")
        wait_for("deletion", lambda: not cluster.exists(namespace, "restart"), timeout=15)
    finally:
        first.stop()
        second.stop()
        cluster.force_delete_watcher(namespace, "restart")


def test_a_fogis_host_outside_the_allow_list_never_gets_the_credentials(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, tmp_path: Path
) -> None:
    env = {"MLCD_FOGIS_ALLOWED_HOSTS": "fogis.svenskfotboll.se"}
    operator = Operator(cluster.kubeconfig, [namespace], tmp_path / "op.log", env=env).start()
    try:
        cluster.create_watcher(namespace, "elsewhere", fogis_spec(fogis.base_url, credentials))
        status = ManualRuns(cluster, namespace, "elsewhere")()
        assert _ready(status) == ("False", "SourceNotAllowed")
        assert "127.0.0.1" in status["lastError"]
        assert fogis.login_attempts == 0  # not even the login page was asked for
        cluster.wait_event(namespace, "elsewhere", "SourceNotAllowed")
        cluster.delete_watcher(namespace, "elsewhere")
        wait_for("deletion", lambda: not cluster.exists(namespace, "elsewhere"), timeout=15)
    finally:
        operator.stop()
        cluster.force_delete_watcher(namespace, "elsewhere")
