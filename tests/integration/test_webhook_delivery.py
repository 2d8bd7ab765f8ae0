"""Webhook delivery (issue 4) on a real API server: one signed POST per change, retries inside a
run, at-least-once across outages and a SIGKILLed operator, bad webhook Secrets, no secret leaks.

The receiver (tests/fakes/receiver.py) checks X-Signature with its own HMAC code. The watcher's
spec.webhook.url points at a port nobody listens on: deliveries only arrive because the `url` key
of the webhook Secret overrides it.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from hack.local_cluster import free_port
from tests.fakes.fogis.records import dotnet_date, make_match, sample_matches
from tests.fakes.fogis.server import FakeFogis
from tests.fakes.receiver import Received, Reply, WebhookReceiver
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
from tests.support.operator_process import Operator, running
from tests.support.payloads import delivery_check
from tests.support.waiting import wait_for
from tests.support.watchers import fogis_spec, ready

HMAC_KEY = "hmac-K3y-never-logged"
HEADER_VALUE = "Bearer hdr-T0ken-never-logged"
URL_TOKEN = "url-T0ken-never-logged"
HOOK_SECRET = "hook"
CREDENTIALS = "fogis"  # the FOGIS Secret of the `credentials` fixture
HEADER_PATTERN = re.compile(r"match-list-change-detector/\S+")


def _hook_data(receiver: WebhookReceiver) -> dict[str, str]:
    return {
        "url": f"{receiver.url}?token={URL_TOKEN}",
        "hmacKey": HMAC_KEY,
        "headers": f"Authorization: {HEADER_VALUE}\n",
    }


PREVIOUS_HMAC_KEY = "previous-K3y-never-logged"
NOTIFY_TOKEN = "notify-T0ken-never-logged"


@pytest.fixture
def hook(cluster: Cluster, namespace: str, credentials: str) -> Iterator[WebhookReceiver]:
    """A receiver checking signatures with HMAC_KEY, and the webhook Secret pointing at it
    (after the `credentials` fixture made the FOGIS Secret CREDENTIALS)."""
    assert credentials == CREDENTIALS
    with WebhookReceiver(hmac_key=HMAC_KEY, check=delivery_check(HMAC_KEY)) as receiver:
        cluster.create_secret(namespace, HOOK_SECRET, _hook_data(receiver))
        yield receiver


def _spec(fogis: FakeFogis, **webhook: object) -> dict[str, object]:
    decoy = f"http://127.0.0.1:{free_port()}/decoy"  # overridden by the Secret's url key
    spec = {"url": decoy, "secretRef": {"name": HOOK_SECRET}, "timeoutSeconds": 2, **webhook}
    return fogis_spec(fogis.base_url, CREDENTIALS, webhook=spec)


def _day(offset: int) -> date:
    return date.today() + timedelta(days=offset)


def _change_a() -> list[dict[str, Any]]:
    """The samples with 6143001 moved to 20:45 (time_change) and a new match 7001."""
    matches = sample_matches()
    first = matches[0]
    first["avsparkstid"] = "20:45"
    first["tid"] = dotnet_date(date.fromisoformat(first["speldatum"]), "20:45")
    return [*matches, make_match(7001, on=_day(20))]


def _change_a_and_b() -> list[dict[str, Any]]:
    """Change A plus 6143002 cancelled."""
    matches = _change_a()
    matches[1]["installd"] = True
    return matches


def _ready(status: dict[str, Any]) -> tuple[str, str]:
    condition = ready(status)
    assert condition is not None, f"no Ready condition in {status}"
    return condition["status"], condition["reason"]


def _by_id(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {change["matchId"]: change for change in payload["changes"]}


def _delivery(request: Received) -> str:
    value = request.header("X-MatchList-Delivery")
    assert value is not None
    return value


def _metric(operator: Operator, name: str, namespace: str, watcher: str, **labels: str) -> Any:
    return metric_value(
        operator.metrics(), name, {"namespace": namespace, "name": watcher, **labels}
    )


SnapshotState = tuple[int, str]


def _snapshot_version(cluster: Cluster, namespace: str, name: str) -> SnapshotState:
    """Where the snapshot stands: its revision and its list. Not the ConfigMap's version: a
    delivery is written ahead (and undone when refused) without the snapshot advancing."""
    document = snapshot_document(snapshot_config_map(cluster, namespace, name))
    return document["revision"], json.dumps(document["matches"], sort_keys=True)


def _change_answered(
    cluster: Cluster,
    namespace: str,
    name: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    replies: tuple[Reply | int, ...],
    **webhook: object,
) -> tuple[ManualRuns, SnapshotState, dict[str, Any]]:
    """A watcher with a baseline, then change A, whose delivery the receiver answers with
    `replies`. Returns its runs, the baseline snapshot's resourceVersion and the run's status."""
    cluster.create_watcher(namespace, name, _spec(fogis, **webhook))
    run = ManualRuns(cluster, namespace, name)
    run()
    baseline = _snapshot_version(cluster, namespace, name)
    fogis.set_matches(_change_a())
    hook.enqueue(*replies)
    return run, baseline, run()


def test_a_change_is_posted_once_signed_with_the_documented_body(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    watcher = cluster.create_watcher(namespace, "hooked", _spec(fogis))
    run = ManualRuns(cluster, namespace, "hooked")
    assert _ready(run()) == ("True", "Succeeded")  # the baseline
    cluster.wait_event(namespace, "hooked", "Baseline")
    assert _ready(run()) == ("True", "Succeeded")  # nothing changed
    wait_event_with(cluster, namespace, "hooked", "RunSucceeded", "no changes in 4 matches")
    assert hook.requests == []

    fogis.set_matches(_change_a())
    status = run()
    (post,) = hook.requests
    assert post.method == "POST"
    assert post.path == f"/webhook?token={URL_TOKEN}"
    assert post.header("Content-Type") == "application/json"
    assert HEADER_PATTERN.fullmatch(post.header("User-Agent") or "")
    assert post.header("X-MatchList-Event") == "MatchListChanged"
    assert (post.header("X-Signature") or "").startswith("sha256=")
    assert post.signature_valid is True
    assert post.header("Authorization") == HEADER_VALUE

    body = post.payload
    assert set(body) == {
        "apiVersion", "kind", "id", "watcher", "detectedAt", "trigger", "summary", "changes",
    }  # fmt: skip
    assert body["apiVersion"] == "matchlist.io/v1alpha1"
    assert body["kind"] == "MatchListChanged"
    assert body["id"] == _delivery(post)
    assert str(uuid.UUID(body["id"])) == body["id"]
    assert body["watcher"] == {
        "namespace": namespace,
        "name": "hooked",
        "uid": watcher["metadata"]["uid"],
    }
    assert body["detectedAt"] == status["lastExecutionTime"]
    assert body["trigger"] == "manual"
    assert body["summary"] == {"new": 1, "removed": 0, "changed": 1, "total": 2}
    changes = _by_id(body)
    assert set(changes) == {"6143001", "7001"}
    moved = changes["6143001"]
    assert moved["type"] == "changed"
    assert moved["matchNumber"] == "6243001"
    assert moved["categories"] == ["time_change"]
    assert moved["fields"] == {"time": {"old": "18:30", "new": "20:45"}}
    assert moved["match"]["matchId"] == "6143001"
    assert moved["match"]["time"] == "20:45"
    new = changes["7001"]
    assert (new["type"], new["categories"], new["fields"]) == ("new", ["new_assignment"], {})
    assert new["match"]["date"] == _day(20).isoformat()

    assert _ready(status) == ("True", "Succeeded")
    state = status["webhook"]
    assert state["lastStatusCode"] == 204
    assert state["consecutiveFailures"] == 0
    assert state["pendingChanges"] == 0
    assert state["lastDeliveryId"] == body["id"]
    assert state["lastDeliveryTime"]
    assert status["changeCount"] == 2
    wait_event_with(cluster, namespace, "hooked", "RunSucceeded", "delivered (HTTP 204, 1 attempt")
    deliveries = "matchwatcher_webhook_deliveries_total"
    attempts = "matchwatcher_webhook_attempts_total"
    assert _metric(operator, deliveries, namespace, "hooked", result="delivered") == 1
    assert _metric(operator, deliveries, namespace, "hooked", result="failed") is None
    assert _metric(operator, attempts, namespace, "hooked", code="204") == 1
    assert "matchwatcher_webhook_duration_seconds_count 1.0" in operator.metrics()

    # The same list again: no change, no request.
    run()
    wait_event_with(cluster, namespace, "hooked", "RunSucceeded", "no changes in 5 matches")
    assert len(hook.requests) == 1


def test_server_errors_are_retried_within_the_run(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    _, _, status = _change_answered(cluster, namespace, "retry", fogis, hook, (500, 500, 200))
    requests = hook.requests
    assert len(requests) == 3
    assert len({_delivery(r) for r in requests}) == 1
    assert len({r.body for r in requests}) == 1  # byte-identical retries
    assert all(r.signature_valid for r in requests)
    assert _ready(status) == ("True", "Succeeded")
    assert status["webhook"]["lastStatusCode"] == 200
    assert status["webhook"]["consecutiveFailures"] == 0
    assert status["webhook"]["lastDeliveryId"] == _delivery(requests[0])
    assert status["changeCount"] == 2
    wait_event_with(cluster, namespace, "retry", "RunSucceeded", "delivered (HTTP 200, 3 attempts")
    attempts = "matchwatcher_webhook_attempts_total"
    assert _metric(operator, attempts, namespace, "retry", code="500") == 2
    assert _metric(operator, attempts, namespace, "retry", code="200") == 1
    deliveries = "matchwatcher_webhook_deliveries_total"
    assert _metric(operator, deliveries, namespace, "retry", result="delivered") == 1
    assert _metric(operator, deliveries, namespace, "retry", result="failed") is None


def test_an_outage_redelivers_the_same_id_when_nothing_else_changed(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    run, baseline, status = _change_answered(
        cluster, namespace, "outage", fogis, hook, (503, 503), maxAttempts=2
    )
    assert _ready(status) == ("False", "WebhookFailing")
    assert "answered 503 after 2 attempts" in status["lastError"]
    assert status["webhook"]["lastStatusCode"] == 503
    failed_ids = {_delivery(r) for r in hook.requests}
    assert len(hook.requests) == 2
    assert len(failed_ids) == 1

    hook.down()
    for failures in (2, 3):
        status = run()
        assert _ready(status) == ("False", "WebhookFailing")
        state = status["webhook"]
        assert state["consecutiveFailures"] == failures
        assert state["pendingChanges"] == 2
        assert state.get("lastStatusCode") is None  # no answer at all
        assert state.get("lastDeliveryTime") is None
        assert not status.get("changeCount")
        assert status["matchCount"] == 5
        assert _snapshot_version(cluster, namespace, "outage") == baseline
    event = wait_event_with(cluster, namespace, "outage", "WebhookFailing", "connection refused")
    assert event.type == "Warning"

    hook.up()
    status = run()
    assert _ready(status) == ("True", "Succeeded")
    requests = hook.requests
    assert len(requests) == 3
    delivered = requests[-1]
    assert {_delivery(delivered)} == failed_ids
    # The same report as the one refused with 503; only the clock (detectedAt) moved on.
    assert {**delivered.payload, "detectedAt": None} == {**requests[0].payload, "detectedAt": None}
    assert delivered.payload["summary"]["total"] == 2
    state = status["webhook"]
    assert (state["consecutiveFailures"], state["pendingChanges"]) == (0, 0)
    assert state["lastDeliveryId"] in failed_ids
    assert status["changeCount"] == 2
    assert "7001" in snapshot_document(snapshot_config_map(cluster, namespace, "outage"))["matches"]
    attempts = "matchwatcher_webhook_attempts_total"
    assert _metric(operator, attempts, namespace, "outage", code="503") == 2
    assert _metric(operator, attempts, namespace, "outage", code="error") == 4
    assert _metric(operator, attempts, namespace, "outage", code="204") == 1
    deliveries = "matchwatcher_webhook_deliveries_total"
    assert _metric(operator, deliveries, namespace, "outage", result="failed") == 3
    assert _metric(operator, deliveries, namespace, "outage", result="delivered") == 1


def test_an_outage_with_a_further_change_delivers_every_change_once(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    run, baseline, status = _change_answered(
        cluster, namespace, "more", fogis, hook, (503, 503), maxAttempts=2
    )
    assert status["webhook"]["pendingChanges"] == 2
    first_id = _delivery(hook.requests[0])

    hook.down()
    fogis.set_matches(_change_a_and_b())
    status = run()
    assert _ready(status) == ("False", "WebhookFailing")
    assert status["webhook"]["pendingChanges"] == 3
    assert status["webhook"]["consecutiveFailures"] == 2
    assert _snapshot_version(cluster, namespace, "more") == baseline

    hook.up()
    status = run()
    assert _ready(status) == ("True", "Succeeded")
    assert len(hook.requests) == 3
    delivered = hook.requests[-1]
    assert _delivery(delivered) != first_id  # another transition, another id
    payload = delivered.payload
    assert payload["summary"] == {"new": 1, "removed": 0, "changed": 2, "total": 3}
    changes = _by_id(payload)
    assert changes["6143001"]["categories"] == ["time_change"]
    assert changes["6143002"]["categories"] == ["cancelled"]
    assert changes["6143002"]["fields"] == {"cancelled": {"old": False, "new": True}}
    assert changes["7001"]["categories"] == ["new_assignment"]
    assert status["changeCount"] == 3
    last = status["lastChange"]
    assert (last["new"], last["removed"], last["changed"]) == (1, 0, 2)
    assert status["webhook"]["lastDeliveryId"] == _delivery(delivered)
    # The first outage's change set went with this delivery: no longer pending in history.
    assert [(e["deliveryId"], e["delivered"]) for e in status["history"]] == [
        (first_id, True),
        (_delivery(delivered), True),
    ]

    run()  # nothing new: nothing sent
    wait_event_with(cluster, namespace, "more", "RunSucceeded", "no changes in 5 matches")
    assert len(hook.requests) == 3


def test_a_client_error_is_not_retried(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    run, baseline, status = _change_answered(cluster, namespace, "refused", fogis, hook, (400,))
    # The run is over (its status is written) after one attempt, with maxAttempts 5.
    assert len(hook.requests) == 1
    assert _ready(status) == ("False", "WebhookFailing")
    assert "answered 400 after 1 attempt" in status["lastError"]
    state = status["webhook"]
    assert (state["lastStatusCode"], state["consecutiveFailures"], state["pendingChanges"]) == (
        400,
        1,
        2,
    )
    assert _snapshot_version(cluster, namespace, "refused") == baseline
    wait_event_with(cluster, namespace, "refused", "WebhookFailing", "answered 400")
    attempts = "matchwatcher_webhook_attempts_total"
    assert _metric(operator, attempts, namespace, "refused", code="400") == 1
    deliveries = "matchwatcher_webhook_deliveries_total"
    assert _metric(operator, deliveries, namespace, "refused", result="failed") == 1

    status = run()  # the receiver accepts again: the pending change goes out, same id
    assert _ready(status) == ("True", "Succeeded")
    first, second = hook.requests
    assert _delivery(second) == _delivery(first)
    assert status["changeCount"] == 2


def test_a_receiver_answering_410_gone_gets_nothing_until_its_secret_changes(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    run, baseline, status = _change_answered(cluster, namespace, "gone", fogis, hook, (410,))
    assert len(hook.requests) == 1  # 410 is not retried
    assert _ready(status) == ("False", "WebhookGone")
    assert status["webhook"]["pendingChanges"] == 2
    assert status["webhook"]["goneFor"]

    status = run()  # the same webhook configuration: nothing is sent
    assert _ready(status) == ("False", "WebhookGone")
    assert len(hook.requests) == 1
    assert _snapshot_version(cluster, namespace, "gone") == baseline

    # The receiver's owner rotates the key: the Secret changed, deliveries resume.
    cluster.create_secret(namespace, HOOK_SECRET, {**_hook_data(hook), "previousHmacKey": "old"})
    status = run()
    assert _ready(status) == ("True", "Succeeded")
    first, second = hook.requests
    assert _delivery(second) == _delivery(first)  # the same pending transition
    assert status["webhook"].get("goneFor") is None  # null in a merge patch removes it
    assert len(str(second.header("webhook-signature")).split()) == 2  # both keys sign


def test_a_failing_chat_service_holds_back_neither_the_webhook_nor_itself(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    with WebhookReceiver() as people:
        url = people.url.replace("http://", "json://", 1)
        cluster.create_secret(namespace, "people", {"urls": f"# the referee's phone\n{url}\n"})
        spec = {**_spec(fogis), "notify": {"secretRef": {"name": "people"}}}
        cluster.create_watcher(namespace, "told", spec)
        run = ManualRuns(cluster, namespace, "told")
        run()  # baselines for both: nobody is told anything
        assert cluster.core.read_namespaced_config_map("told-matchlist-notified", namespace)
        fogis.set_matches(_change_a())
        people.enqueue(500)

        status = run()
        assert len(hook.requests) == 1  # the webhook got its change regardless
        assert status["webhook"]["pendingChanges"] == 0
        assert _ready(status) == ("False", "NotifyFailing")
        assert status["notify"]["pendingChanges"] == 2
        wait_event_with(cluster, namespace, "told", "NotifyFailing", "notifications failed")

        status = run()  # the webhook has nothing new; the people's pending text goes out
        assert _ready(status) == ("True", "Succeeded")
        assert len(hook.requests) == 1
        assert status["notify"]["pendingChanges"] == 0
        told = people.requests[-1].payload
        assert told["title"] == "Matchlistan: 2 ändringar"
        assert "flyttad" in told["message"]
        assert "ny tillsättning" in told["message"]
        assert _metric(operator, "matchwatcher_notifications_total", namespace, "told",
                       result="delivered") == 1  # fmt: skip


def test_people_are_not_told_of_a_drop_the_webhook_pass_never_compared(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    credentials: str,
    operator: Operator,
) -> None:
    """Issue: when the webhook's pass failed before it compared (here its Secret is missing), the
    people's pass ran as if the list were confirmed: one empty FOGIS answer told the referee
    that every match was no longer on their list, and the next run that each was new."""
    with WebhookReceiver() as people:
        url = people.url.replace("http://", "json://", 1)
        cluster.create_secret(namespace, "people", {"urls": url})
        spec = {**_spec(fogis), "notify": {"secretRef": {"name": "people"}}}  # no HOOK_SECRET
        cluster.create_watcher(namespace, "glitch", spec)
        run = ManualRuns(cluster, namespace, "glitch")
        assert _ready(run()) == ("False", "SecretNotFound")  # the people's baseline all the same
        assert cluster.core.read_namespaced_config_map("glitch-matchlist-notified", namespace)

        fogis.set_matches([])  # a glitch: every match gone at once
        status = run()
        assert people.requests == []
        assert "suddenly answered without 4 of the matches" in status["lastError"]

        fogis.set_matches(sample_matches())  # FOGIS is back to normal: nothing to tell
        status = run()
        assert people.requests == []
        assert status["notify"]["pendingChanges"] == 0


def test_retry_after_is_honoured(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    arrivals: list[float] = []
    hook.on_request = lambda _: arrivals.append(time.monotonic())
    too_many = Reply(429, headers={"Retry-After": "1"})
    _, _, status = _change_answered(cluster, namespace, "later", fogis, hook, (too_many,))
    assert _ready(status) == ("True", "Succeeded")
    first, second = hook.requests
    assert _delivery(first) == _delivery(second)
    # The backoff of this operator is at most 0.2 s: only Retry-After explains a 1 s pause.
    assert arrivals[1] - arrivals[0] >= 0.9
    assert status["webhook"]["lastStatusCode"] == 204
    wait_event_with(cluster, namespace, "later", "RunSucceeded", "delivered (HTTP 204, 2 attempts)")
    attempts = "matchwatcher_webhook_attempts_total"
    assert _metric(operator, attempts, namespace, "later", code="429") == 1
    assert _metric(operator, attempts, namespace, "later", code="204") == 1


def test_an_operator_killed_before_the_snapshot_write_redelivers_the_same_id(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    tmp_path: Path,
) -> None:
    first = Operator(cluster.kubeconfig, [namespace], tmp_path / "op1.log")
    killed = threading.Event()

    def kill_operator(_: Received) -> None:
        """The POST has arrived; the operator dies before it can see the answer."""
        proc = first.proc
        if proc is not None and not killed.is_set():
            proc.kill()
            proc.wait()
            killed.set()

    try:
        first.start()
        cluster.create_watcher(namespace, "crash", _spec(fogis))
        run = ManualRuns(cluster, namespace, "crash")
        run()
        cluster.wait_event(namespace, "crash", "Baseline")
        baseline = _snapshot_version(cluster, namespace, "crash")
        fogis.set_matches(_change_a())
        hook.on_request = kill_operator
        cluster.trigger(namespace, "crash", run.next_value())
        wait_for("the operator killed by the receiver", killed.is_set, timeout=20)
    finally:
        first.stop()
    hook.on_request = None
    (lost,) = hook.requests
    status = cluster.status(namespace, "crash")
    assert status["executionCount"] == 1  # the killed run wrote nothing but its claim
    assert status["lastClaimedTrigger"] == f"run-{run.count}"
    assert status.get("lastHandledTrigger") == f"run-{run.count - 1}"
    assert _snapshot_version(cluster, namespace, "crash") == baseline

    with running(Operator(cluster.kubeconfig, [namespace], tmp_path / "op2.log")) as second:
        try:
            # A claimed trigger is not run again (like a slot: a run that killed its process
            # must not crash-loop); the change stays pending, and the next run delivers it.
            status = run()
            assert status["executionCount"] == 2
            assert _ready(status) == ("True", "Succeeded")
            assert len(hook.requests) == 2
            again = hook.requests[1]
            assert _delivery(again) == _delivery(lost)
            assert again.payload["changes"] == lost.payload["changes"]
            assert again.payload["summary"] == {"new": 1, "removed": 0, "changed": 1, "total": 2}
            assert again.signature_valid is True
            assert status["webhook"]["lastDeliveryId"] == _delivery(lost)
            assert _snapshot_version(cluster, namespace, "crash") != baseline

            status = run()  # triggered once more: delivered already, nothing to send
            assert _ready(status) == ("True", "Succeeded")
            assert len(hook.requests) == 2
            attempts = "matchwatcher_webhook_attempts_total"
            assert _metric(second, attempts, namespace, "crash", code="204") == 1
        finally:
            cluster.delete_watcher(namespace, "crash")
            wait_for("deletion", lambda: not cluster.exists(namespace, "crash"), timeout=15)


def test_bad_webhook_secrets_send_nothing_and_lose_nothing(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    cluster.create_watcher(namespace, "badhook", _spec(fogis))
    run = ManualRuns(cluster, namespace, "badhook")
    run()
    baseline = _snapshot_version(cluster, namespace, "badhook")
    fogis.set_matches(_change_a())

    cluster.core.delete_namespaced_secret(HOOK_SECRET, namespace)
    status = run()
    assert _ready(status) == ("False", "SecretNotFound")
    assert status["lastError"] == f"webhook Secret {namespace}/{HOOK_SECRET} not found"
    event = wait_event_with(cluster, namespace, "badhook", "SecretNotFound", "webhook Secret")
    assert event.type == "Warning"

    broken = {**_hook_data(hook), "headers": "Authorization: [Bearer unclosed"}
    cluster.create_secret(namespace, HOOK_SECRET, broken)
    status = run()
    assert _ready(status) == ("False", "InvalidWebhookSecret")
    assert "key headers is not valid YAML or JSON" in status["lastError"]
    wait_event_with(cluster, namespace, "badhook", "InvalidWebhookSecret", "key headers")

    assert hook.requests == []
    assert _snapshot_version(cluster, namespace, "badhook") == baseline
    assert not status.get("changeCount")

    cluster.create_secret(namespace, HOOK_SECRET, _hook_data(hook))
    status = run()
    assert _ready(status) == ("True", "Succeeded")
    (post,) = hook.requests
    assert post.payload["summary"]["total"] == 2
    assert post.header("Authorization") == HEADER_VALUE
    assert status["changeCount"] == 2


def _leaks(where: str, text: str, secrets: dict[str, str]) -> list[str]:
    return [f"{name} in {where}" for name, value in secrets.items() if value in text]


def test_secret_values_never_appear_in_logs_events_status_or_metrics(
    cluster: Cluster, namespace: str, fogis: FakeFogis, hook: WebhookReceiver, tmp_path: Path
) -> None:
    # --verbose alone is not enough: the operator sets the root level from MLCD_LOG_LEVEL
    # (default INFO) at startup. DEBUG makes kopf and the controller log all they can.
    operator = Operator(
        cluster.kubeconfig, [namespace], tmp_path / "op.log", env={"MLCD_LOG_LEVEL": "DEBUG"}
    )
    with running(operator), WebhookReceiver() as people:
        notify_url = people.url.replace("http://", "json://", 1) + f"?token={NOTIFY_TOKEN}"
        try:
            _exercise_every_message(cluster, namespace, fogis, hook, people, notify_url)
            texts = {
                "operator log": operator.logs(),
                "metrics": operator.metrics(),
                "Events": json.dumps(
                    [
                        cluster.api.sanitize_for_serialization(e)
                        for e in cluster.events(namespace, "leak")
                    ]
                ),
                "MatchWatcher": cluster.kubectl("get", "mw", "leak", "-n", namespace, "-o", "yaml"),
            }
        finally:
            cluster.delete_watcher(namespace, "leak")
            wait_for("deletion", lambda: not cluster.exists(namespace, "leak"), timeout=15)

    # The log is the verbose one, and the failure paths did write to it.
    assert "<url from Secret hook> answered 503" in texts["operator log"]
    assert "[DEBUG   ] logged in to FOGIS" in texts["operator log"]
    assert "InvalidWebhookSecret" in texts["Events"]
    assert "matchwatcher_webhook_attempts_total" in texts["metrics"]
    assert "notifications failed" in texts["Events"]
    good = {**_hook_data(hook), "previousHmacKey": PREVIOUS_HMAC_KEY}
    values = {
        "previousHmacKey": PREVIOUS_HMAC_KEY,
        "notify URL token": NOTIFY_TOKEN,
        "notify URL": notify_url,
        "FOGIS password": PASSWORD,
        "hmacKey": HMAC_KEY,
        "header value": HEADER_VALUE,
        "header token": HEADER_VALUE.rsplit(maxsplit=1)[-1],
        "URL token": URL_TOKEN,
        "URL": good["url"],
        "token in broken headers": BROKEN_HEADER_TOKEN,
    }
    # As the Secrets store them, too: base64 of each whole value.
    stored = [PASSWORD, *good.values(), f"Authorization: [{BROKEN_HEADER_TOKEN}", notify_url]
    for index, value in enumerate(stored):
        values[f"base64 of stored value {index}"] = base64.b64encode(value.encode()).decode()
    leaks = [
        f"{secret} in {where}"
        for where, text in texts.items()
        for secret, value in values.items()
        if value in text
    ]
    assert leaks == []


BROKEN_HEADER_TOKEN = "hdr-in-broken-yaml-never-logged"


def _exercise_every_message(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    people: WebhookReceiver,
    notify_url: str,
) -> None:
    """Every path that writes a message: retries, a refusal, unusable webhook Secrets, a
    failing notification service, a rejected FOGIS login, and finally a delivery."""
    cluster.create_secret(namespace, "people", {"urls": notify_url})
    spec = {**_spec(fogis, maxAttempts=3), "notify": {"secretRef": {"name": "people"}}}
    good = {**_hook_data(hook), "previousHmacKey": PREVIOUS_HMAC_KEY}
    cluster.create_secret(namespace, HOOK_SECRET, good)
    cluster.create_watcher(namespace, "leak", spec)
    run = ManualRuns(cluster, namespace, "leak")
    run()
    fogis.set_matches(_change_a())
    people.enqueue(500)
    hook.enqueue(503, 503, 503)
    assert _ready(run()) == ("False", "WebhookFailing")
    hook.enqueue(400)
    assert _ready(run()) == ("False", "WebhookFailing")
    broken_headers = f"Authorization: [{BROKEN_HEADER_TOKEN}"
    cluster.create_secret(namespace, HOOK_SECRET, {**good, "headers": broken_headers})
    assert _ready(run()) == ("False", "InvalidWebhookSecret")
    bad_url = f"ftp://127.0.0.1/webhook?token={URL_TOKEN}"
    cluster.create_secret(namespace, HOOK_SECRET, {**good, "url": bad_url})
    assert _ready(run()) == ("False", "InvalidWebhookSecret")
    cluster.create_secret(namespace, HOOK_SECRET, {**good, "headers": f"X-Signature: {HMAC_KEY}"})
    assert _ready(run()) == ("False", "InvalidWebhookSecret")
    cluster.create_secret(namespace, HOOK_SECRET, good)
    fogis.set_users({USERNAME: "another-password"})
    fogis.expire_sessions()
    assert _ready(run()) == ("False", "LoginFailed")
    fogis.set_users({USERNAME: PASSWORD})
    assert _ready(run()) == ("True", "Succeeded")
    assert len(hook.requests) == 5
    wait_event_with(cluster, namespace, "leak", "RunSucceeded", "delivered")
    wait_event_with(cluster, namespace, "leak", "LoginFailed", "rejected")


def test_a_lost_snapshot_is_reported_as_a_baseline_reset(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    """Deleting the snapshot ConfigMap (or a restore under a new uid) drops what was pending:
    the operator says so instead of silently starting over."""
    cluster.create_watcher(namespace, "lost", _spec(fogis, maxAttempts=1))
    run = ManualRuns(cluster, namespace, "lost")
    run()
    hook.enqueue(503)
    fogis.set_matches(_change_a())
    status = run()
    assert status["webhook"]["pendingChanges"] == 2
    cluster.core.delete_namespaced_config_map(snapshot_name("lost"), namespace)
    status = run()
    assert _ready(status) == ("True", "BaselineReset")
    event = wait_event_with(cluster, namespace, "lost", "BaselineReset", "was missing")
    assert event.type == "Warning"
    assert "(2 changes were pending)" in event.message
    assert status["webhook"]["pendingChanges"] == 0
    assert len(hook.requests) == 1  # the refused attempt; the reset itself sends nothing


def test_a_lost_notified_snapshot_is_reported_as_a_baseline_reset(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    """The people's snapshot ConfigMap is theirs alone: losing it drops what they were about to
    be told, and the operator says so as it does for the webhook's."""
    with WebhookReceiver() as people:
        url = people.url.replace("http://", "json://", 1)
        cluster.create_secret(namespace, "people", {"urls": url})
        spec = {**_spec(fogis), "notify": {"secretRef": {"name": "people"}}}
        cluster.create_watcher(namespace, "forgot", spec)
        run = ManualRuns(cluster, namespace, "forgot")
        run()
        fogis.set_matches(_change_a())
        people.enqueue(500)
        status = run()
        assert status["notify"]["pendingChanges"] == 2
        cluster.core.delete_namespaced_config_map("forgot-matchlist-notified", namespace)

        status = run()
        assert _ready(status) == ("True", "BaselineReset")
        event = wait_event_with(
            cluster, namespace, "forgot", "BaselineReset", "notified was missing"
        )
        assert event.type == "Warning"
        assert "(2 changes were pending)" in event.message
        assert status["notify"]["pendingChanges"] == 0
        assert len(people.requests) == 1  # the refused attempt; the reset itself sends nothing
        assert cluster.core.read_namespaced_config_map("forgot-matchlist-notified", namespace)


def test_an_in_doubt_delivery_is_undone_when_fogis_reverts(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    operator: Operator,
) -> None:
    """The receiver got the cancellation but its answer never came (a timeout after sending):
    when FOGIS reverts, the receiver must hear it, or it stays wrong for good."""
    cluster.create_watcher(namespace, "doubt", _spec(fogis, maxAttempts=1))
    run = ManualRuns(cluster, namespace, "doubt")
    run()
    cancelled = sample_matches()
    cancelled[1]["installd"] = True
    hook.enqueue(Reply(204, delay_seconds=6))  # read, then no answer within timeoutSeconds (2)
    fogis.set_matches(cancelled)
    status = run()
    assert _ready(status) == ("False", "WebhookFailing")
    fogis.set_matches(sample_matches())  # FOGIS reverts
    status = run()
    assert _ready(status) == ("True", "Succeeded")
    first, second = hook.wait_for(2)
    assert first.payload is not None
    assert second.payload is not None
    assert [c["categories"] for c in first.payload["changes"]] == [["cancelled"]]
    assert [c["categories"] for c in second.payload["changes"]] == [["uncancelled"]]
    assert status["webhook"]["pendingChanges"] == 0


def _condition(status: dict[str, Any], kind: str) -> str | None:
    found = next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)
    return None if found is None else str(found["status"])


def test_a_receiver_in_maintenance_holds_no_worker(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    hook: WebhookReceiver,
    tmp_path: Path,
) -> None:
    """With one permit (MLCD_MAX_CONCURRENT_RUNS=1), a run waiting out its receiver's
    `503 Retry-After: 120` must not hold back another watcher's trigger (it used to: a run held
    its worker through every wait). The waiting run stays Reconciling, and a trigger for it
    queues instead of starting a second run beside it."""
    settings = {"MLCD_MAX_CONCURRENT_RUNS": "1", "MLCD_SHUTDOWN_TIMEOUT_SECONDS": "2"}
    operator = Operator(cluster.kubeconfig, [namespace], tmp_path / "op.log", env=settings)
    try:
        operator.start()
        cluster.create_watcher(namespace, "maintained", _spec(fogis, maxAttempts=2))
        cluster.create_watcher(namespace, "healthy", fogis_spec(fogis.base_url, CREDENTIALS))
        maintained = ManualRuns(cluster, namespace, "maintained")
        healthy = ManualRuns(cluster, namespace, "healthy")
        maintained()  # the baselines
        healthy()
        fogis.set_matches(_change_a())
        hook.enqueue(Reply(503, headers={"Retry-After": "120"}))
        waiting = maintained.next_value()
        cluster.trigger(namespace, "maintained", waiting)
        hook.wait_for(1)  # its run now waits 120 s for the second attempt

        healthy()  # handled meanwhile
        cluster.trigger(namespace, "maintained", maintained.next_value())
        status = cluster.status(namespace, "maintained")
        assert status.get("lastHandledTrigger") != waiting  # still in its wait
        assert _condition(status, "Reconciling") == "True"
        assert len(hook.requests) == 1  # no second run beside the waiting one
        # SIGTERM with the run still waiting: cut at the shutdown deadline, a clean exit.
        assert operator.stop() == 0
    finally:
        operator.stop()
        for name in ("maintained", "healthy"):
            cluster.force_delete_watcher(namespace, name)
