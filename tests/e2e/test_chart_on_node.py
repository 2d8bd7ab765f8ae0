"""The chart's operator pod as users run it: `helm install` exactly as the README says, on a real
kubelet, in a namespace enforcing the `restricted` Pod Security Standard; MatchWatchers applied
with kubectl, runs forced with `kubectl annotate`, deliveries to a receiver pod behind a Service
(pod -> Service -> pod, names resolved by cluster DNS), garbage collection, namespace deletion,
`helm upgrade`, high availability with failover, shards, a calendar feed through its Service,
`helm test` and `helm uninstall`.

The steps share one release and run in file order; each step asserts what a user would see.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import vobject

from controller.core.sharding import shard_of
from tests.e2e.conftest import (
    CHART,
    FULLNAME,
    KUBECTL_PACE,
    RELEASE,
    RELEASE_NAMESPACE,
    Node,
    figure,
)
from tests.fakes.fogis.records import make_match, sample_matches
from tests.support.net import http
from tests.support.waiting import wait_for

REFEREES = "e2e-referees"  # watchers, their Secrets and the stand-ins (FOGIS, receiver)
USERNAME, PASSWORD, HMAC_KEY = "anna.andersson", "e2e-Pa55word", "e2e-hmac-key"
FOGIS_PORT, RECEIVER_PORT = 8001, 8000
GROUP_VERSION = "matchlist.io/v1alpha1"
SLOT_IN_MESSAGE = re.compile(r"^schedule run \(([^)]+)\)")


def _install_args(node: Node) -> list[str]:
    repository, tag = node.operator_image.rsplit(":", 1)
    return [
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
    ]


def _operator_pods(node: Node) -> list[dict[str, Any]]:
    pods = node.json(
        "get", "pods", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/instance=" + RELEASE
    )["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _ready_pods(node: Node, count: int) -> list[dict[str, Any]] | None:
    pods = _operator_pods(node)
    return pods if len(pods) == count and all(_ready(p) for p in pods) else None


def _watcher(name: str, schedule: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "MatchWatcher",
        "metadata": {"name": name, "namespace": spec.pop("namespace", REFEREES)},
        "spec": {
            "schedule": schedule,
            "source": {
                "fogis": {
                    "baseUrl": f"http://fogis.{REFEREES}.svc:{FOGIS_PORT}/mdk",
                    "credentialsSecretRef": {"name": "anna-fogis"},
                }
            },
            **spec,
        },
    }


def _webhook(max_attempts: int = 3) -> dict[str, Any]:
    return {
        "url": f"http://receiver.{REFEREES}.svc:{RECEIVER_PORT}/hook",
        "secretRef": {"name": "anna-hook"},
        "timeoutSeconds": 5,
        "maxAttempts": max_attempts,
    }


def _secrets(namespace: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "anna-fogis", "namespace": namespace},
            "stringData": {"username": USERNAME, "password": PASSWORD},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "anna-hook", "namespace": namespace},
            "stringData": {"hmacKey": HMAC_KEY},
        },
    ]


def _standins(image: str) -> list[dict[str, Any]]:
    """The FOGIS stand-in and the webhook receiver as Deployments behind Services."""
    programs = {
        "fogis": (
            FOGIS_PORT,
            ["tests.fakes.fogis", "--user", USERNAME, "--password", PASSWORD],
        ),
        "receiver": (RECEIVER_PORT, ["tests.fakes.receiver", "--hmac-key", HMAC_KEY]),
    }
    items: list[dict[str, Any]] = []
    for name, (port, args) in programs.items():
        labels = {"app": name}
        items.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": REFEREES},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": name,
                                    "image": image,
                                    "imagePullPolicy": "Never",
                                    # The image's entrypoint is `python -m`.
                                    "args": [
                                        *args,
                                        "--host=0.0.0.0",
                                        f"--port={port}",
                                    ],
                                    "ports": [{"containerPort": port}],
                                    "readinessProbe": {"tcpSocket": {"port": port}},
                                }
                            ]
                        },
                    },
                },
            }
        )
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": REFEREES},
                "spec": {"selector": labels, "ports": [{"port": port, "targetPort": port}]},
            }
        )
    return items


class Standins:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.fogis = node.service_url(REFEREES, "fogis", FOGIS_PORT)
        self.receiver = node.service_url(REFEREES, "receiver", RECEIVER_PORT)

    def set_matches(self, matches: list[dict[str, Any]]) -> None:
        status, body = http("PUT", f"{self.fogis}/_control/matches", matches)
        assert status in (200, 204), body

    def fogis_state(self) -> dict[str, Any]:
        status, body = http("GET", f"{self.fogis}/_control/state")
        assert status == 200, body
        state: dict[str, Any] = json.loads(body)
        return state

    def deliveries(self) -> list[dict[str, Any]]:
        status, body = http("GET", f"{self.receiver}/_control/requests")
        assert status == 200, body
        requests: list[dict[str, Any]] = json.loads(body)
        return requests

    def answer(self, *statuses: int) -> None:
        status, body = http("POST", f"{self.receiver}/_control/replies", {"statuses": statuses})
        assert status == 204, body


def _status(node: Node, name: str, namespace: str = REFEREES) -> dict[str, Any]:
    item = node.json("get", "matchwatcher", name, "-n", namespace)
    status: dict[str, Any] = item.get("status") or {}
    return status


def _trigger(node: Node, name: str, value: str, namespace: str = REFEREES) -> dict[str, Any]:
    node.kubectl(
        "annotate", "mw", name, "-n", namespace, f"matchlist.io/trigger={value}", "--overwrite"
    )
    status: dict[str, Any] = wait_for(
        f"{namespace}/{name} to handle trigger {value}",
        lambda: (s := _status(node, name, namespace)).get("lastHandledTrigger") == value and s,
        timeout=60,
        interval=KUBECTL_PACE,
    )
    return status


def _run_slots(node: Node, name: str) -> list[str]:
    """The slot of every scheduled run of a watcher, from its Events (one per run)."""
    events = node.json(
        "get", "events", "-n", REFEREES, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    slots = []
    for event in events:
        match = SLOT_IN_MESSAGE.match(event.get("message") or "")
        if match and event.get("reason") in ("Baseline", "RunSucceeded"):
            slots.extend([match.group(1)] * int(event.get("count") or 1))
    return sorted(slots)


def _logs(node: Node, pod: str) -> str:
    return node.kubectl("logs", pod, "-n", RELEASE_NAMESPACE, check=False)


@pytest.fixture(scope="module")
def release(node: Node) -> Iterator[Node]:
    """The chart installed like the README says, into a namespace enforcing `restricted`."""
    node.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": RELEASE_NAMESPACE,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        }
    )
    started = time.monotonic()
    node.helm("install", *_install_args(node), "--create-namespace")
    wait_for(
        "the operator pod Ready", lambda: _ready_pods(node, 1), timeout=180, interval=KUBECTL_PACE
    )
    figure("helm install -> pod Ready", time.monotonic() - started)
    yield node
    # Whatever a failed step left behind: no finalizer may outlive the operator.
    node.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--ignore-not-found")
    for namespace in (REFEREES, "e2e-doomed"):
        for item in node.json("get", "mw", "-n", namespace)["items"]:
            node.kubectl(
                "patch", "mw", item["metadata"]["name"], "-n", namespace, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
        node.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false")
    node.kubectl("delete", "namespace", RELEASE_NAMESPACE, "--ignore-not-found", "--wait=false")
    # Gone before the next session on a kept node installs into them again.
    node.kubectl(
        "wait", "--for=delete", f"namespace/{RELEASE_NAMESPACE}", f"namespace/{REFEREES}",
        "namespace/e2e-doomed", "--timeout=120s", check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def standins(release: Node) -> Standins:
    node = release
    node.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": REFEREES}})
    node.apply([*_standins(node.standins_image), *_secrets(REFEREES)])
    for name in ("fogis", "receiver"):
        node.kubectl("rollout", "status", f"deployment/{name}", "-n", REFEREES, "--timeout=120s")
    handle = Standins(node)
    wait_for(
        "the stand-ins through their Services",
        lambda: http("GET", handle.fogis)[0] > 0,
        timeout=60,
        interval=KUBECTL_PACE,
    )
    return handle


def test_install_runs_restricted_pod_through_kubelet_probes(release: Node) -> None:
    node = release
    deployment = node.json("get", "deployment", FULLNAME, "-n", RELEASE_NAMESPACE)
    available = [c for c in deployment["status"]["conditions"] if c["type"] == "Available"]
    assert available
    assert available[0]["status"] == "True"
    (pod,) = _operator_pods(node)
    name = pod["metadata"]["name"]
    (container,) = pod["status"]["containerStatuses"]
    assert container["ready"]
    assert container["restartCount"] == 0
    # The kubelet's probes answered: Ready came from the readiness probe, not from a guess.
    assert _ready(pod)
    uid = node.kubectl("exec", name, "-n", RELEASE_NAMESPACE, "--", "id", "-u").strip()
    assert uid == "10001"
    result = node.run(
        "kubectl", "exec", name, "-n", RELEASE_NAMESPACE, "--", "sh", "-c",
        "touch /opt/x 2>&1; echo rc=$?", check=False,
    )  # fmt: skip
    assert "Read-only file system" in result
    assert "rc=1" in result
    # enableServiceLinks is off, so no docker-link variable can collide with MLCD_* settings.
    environment = node.kubectl("exec", name, "-n", RELEASE_NAMESPACE, "--", "env")
    assert "MLCD_MATCH_LIST_CHANGE_DETECTOR_SERVICE_HOST" not in environment


def test_a_deployment_with_service_links_still_starts(release: Node) -> None:
    """The loader skips the kubelet's link variables too, for Deployments not made by the chart."""
    node = release
    patch = '{"spec":{"template":{"spec":{"enableServiceLinks":true}}}}'
    try:
        node.kubectl("patch", "deployment", FULLNAME, "-n", RELEASE_NAMESPACE, "-p", patch)
        node.kubectl(
            "rollout", "status", f"deployment/{FULLNAME}", "-n", RELEASE_NAMESPACE,
            "--timeout=180s",
        )  # fmt: skip
        (pod,) = wait_for(
            "one Ready pod", lambda: _ready_pods(node, 1), timeout=120, interval=KUBECTL_PACE
        )
        environment = node.kubectl(
            "exec", pod["metadata"]["name"], "-n", RELEASE_NAMESPACE, "--", "env"
        )
        assert "MLCD_MATCH_LIST_CHANGE_DETECTOR_SERVICE_HOST=" in environment
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    finally:
        patch = '{"spec":{"template":{"spec":{"enableServiceLinks":false}}}}'
        node.kubectl("patch", "deployment", FULLNAME, "-n", RELEASE_NAMESPACE, "-p", patch)
        node.kubectl(
            "rollout", "status", f"deployment/{FULLNAME}", "-n", RELEASE_NAMESPACE,
            "--timeout=180s",
        )  # fmt: skip


def test_annotate_delivers_a_signed_change_to_a_receiver_pod(standins: Standins) -> None:
    node = standins.node
    node.apply(_watcher("anna", "0 0 1 1 *", webhook=_webhook()))
    status = _trigger(node, "anna", "baseline")
    assert status["matchCount"] == 4, status
    assert standins.deliveries() == []  # a baseline is never a notification

    today = date.today()
    changed = sample_matches(today)
    changed[0]["installd"] = True  # cancelled
    changed.append(make_match(6143100, on=today + timedelta(days=3)))  # new
    standins.set_matches(changed)
    status = _trigger(node, "anna", "second")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded"), ready

    (delivery,) = wait_for("one delivery", standins.deliveries, timeout=30, interval=KUBECTL_PACE)
    assert delivery["signatureValid"] is True
    payload = delivery["payload"]
    assert payload["kind"] == "MatchListChanged"
    assert delivery["headers"]["x-matchlist-delivery"] == payload["id"]
    assert payload["watcher"] == {
        "namespace": REFEREES,
        "name": "anna",
        "uid": node.kubectl("get", "mw", "anna", "-n", REFEREES, "-o", "jsonpath={.metadata.uid}"),
    }
    assert payload["summary"]["new"] == 1
    assert payload["summary"]["changed"] == 1
    assert status["webhook"]["lastDeliveryId"] == payload["id"]

    (pod,) = _operator_pods(node)
    logs = _logs(node, pod["metadata"]["name"])
    assert f"{REFEREES}/anna: manual run: 2 changes" in logs, logs[-3000:]

    metrics = node.service_url(RELEASE_NAMESPACE, FULLNAME, 8080)
    code, body = http("GET", f"{metrics}/metrics")
    assert code == 200
    text = body.decode()
    runs = re.findall(
        r'^matchwatcher_runs_total\{name="anna",namespace="e2e-referees",result="success",'
        r'trigger="manual"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    assert runs == ["2.0"], [line for line in text.splitlines() if "runs_total" in line]
    assert re.search(r'^matchwatcher_webhook_deliveries_total\{.*name="anna".*\} 1\.0$', text, re.M)


def test_the_calendar_feed_through_its_service(standins: Standins) -> None:
    """The feed from the chart's calendar Service (kube-proxy to the pod's calendar port), read
    with vobject; its token Secret garbage-collected with the watcher."""
    node = standins.node
    standins.set_matches(sample_matches(date.today()))
    node.apply(_watcher("cal", "0 0 1 1 *", calendar={"enabled": True}))
    status = _trigger(node, "cal", "baseline")
    revision = status["calendar"]["revision"]
    secret = wait_for(
        "the feed's token Secret",
        lambda: (
            node.kubectl("get", "secret", "cal-calendar", "-n", REFEREES, check=False)
            and node.json("get", "secret", "cal-calendar", "-n", REFEREES)
        ),
        timeout=30,
        interval=KUBECTL_PACE,
    )
    assert [o["kind"] for o in secret["metadata"]["ownerReferences"]] == ["MatchWatcher"]
    token = base64.b64decode(secret["data"]["token"]).decode()
    feeds = node.service_url(RELEASE_NAMESPACE, f"{FULLNAME}-calendar", 80)
    path = f"/calendar/{REFEREES}/cal/{token}.ics"
    started = time.monotonic()
    code, body = http("GET", feeds + path)
    figure("calendar feed through its Service, first GET", time.monotonic() - started)
    assert code == 200, body
    calendar = vobject.readOne(body.decode("utf-8"))
    assert len(calendar.vevent_list) == status["matchCount"] == 4
    assert revision >= 1
    assert http("GET", f"{feeds}/calendar/{REFEREES}/cal/{'x' * 43}.ics")[0] == 404
    (pod,) = _operator_pods(node)
    assert token not in _logs(node, pod["metadata"]["name"])
    node.kubectl("delete", "mw", "cal", "-n", REFEREES, "--timeout=60s")
    wait_for(
        "the token Secret to be garbage-collected",
        lambda: node.kubectl("get", "secret", "cal-calendar", "-n", REFEREES, check=False) == "",
        timeout=90,
        interval=KUBECTL_PACE,
    )


def test_garbage_collection_and_namespace_deletion(standins: Standins) -> None:
    node = standins.node
    snapshot = "anna-matchlist-snapshot"
    owners = node.json("get", "configmap", snapshot, "-n", REFEREES)["metadata"]["ownerReferences"]
    assert [o["kind"] for o in owners] == ["MatchWatcher"]
    node.kubectl("delete", "mw", "anna", "-n", REFEREES, "--timeout=60s")
    wait_for(
        "the snapshot ConfigMap to be garbage-collected",
        lambda: node.kubectl("get", "configmap", snapshot, "-n", REFEREES, check=False) == "",
        timeout=90,
        interval=KUBECTL_PACE,
    )

    doomed = "e2e-doomed"
    node.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": doomed}})
    node.apply([*_secrets(doomed), _watcher("bo", "0 0 1 1 *", namespace=doomed)])
    _trigger(node, "bo", "baseline", namespace=doomed)
    # No daemon, so kopf adds no finalizer: nothing has to answer for the namespace to go.
    assert not node.json("get", "mw", "bo", "-n", doomed)["metadata"].get("finalizers")
    started = time.monotonic()
    node.kubectl("delete", "namespace", doomed, "--timeout=120s")
    figure("namespace with a watcher deleted", time.monotonic() - started)
    assert node.kubectl("get", "namespace", doomed, check=False) == ""


def test_helm_test_reaches_the_operator_through_its_service(release: Node) -> None:
    node = release
    result = subprocess.run(
        [node.helm_bin, "test", RELEASE, "-n", RELEASE_NAMESPACE, "--timeout", "3m"],
        env=node.env,
        capture_output=True,
        text=True,
        check=False,
    )
    # On failure the test pod stays (hook-delete-policy hook-succeeded): show what it said.
    logs = "" if result.returncode == 0 else _logs(node, f"{FULLNAME}-test")
    assert result.returncode == 0, f"{result.stdout}{result.stderr}{logs}"
    assert "Phase:          Succeeded" in result.stdout, result.stdout


def test_upgrade_rolls_the_pod_without_a_slot_twice_or_a_lost_change(standins: Standins) -> None:
    node = standins.node
    (old_pod,) = _operator_pods(node)
    # A watcher on every minute's slot, and one whose change is pending (the receiver is down).
    standins.set_matches(sample_matches(date.today()))
    node.apply(_watcher("ticker", "* * * * *"))
    node.apply(_watcher("pending", "0 0 1 1 *", webhook=_webhook(max_attempts=1)))
    _trigger(node, "pending", "baseline")
    wait_for(
        "a scheduled run of ticker",
        lambda: _run_slots(node, "ticker"),
        timeout=90,
        interval=KUBECTL_PACE,
    )
    standins.answer(*[503] * 50)
    standins.set_matches([*sample_matches(date.today())[1:]])  # one match removed
    status = _trigger(node, "pending", "undelivered")
    assert status["webhook"]["pendingChanges"] == 1, status
    refused = [d for d in standins.deliveries() if d["payload"]["watcher"]["name"] == "pending"]
    assert refused, "the receiver never saw the pending change"

    started = time.monotonic()
    node.helm(
        "upgrade", *_install_args(node), "--reuse-values",
        "--set", "operator.env.MLCD_ALLOW_SECONDS_SCHEDULES=true",
    )  # fmt: skip
    (new_pod,) = wait_for(
        "the rolled pod Ready",
        lambda: (
            (pods := _ready_pods(node, 1))
            and pods[0]["metadata"]["name"] != old_pod["metadata"]["name"]
            and pods
        ),
        timeout=180,
        interval=KUBECTL_PACE,
    )
    figure("helm upgrade -> new pod Ready", time.monotonic() - started)
    assert new_pod["spec"]["containers"][0]["env"] != old_pod["spec"]["containers"][0]["env"]
    before = len(_run_slots(node, "ticker"))
    wait_for(
        "a scheduled run of ticker after the roll",
        lambda: len(_run_slots(node, "ticker")) > before,
        timeout=90,
        interval=KUBECTL_PACE,
    )
    slots = _run_slots(node, "ticker")
    assert len(slots) == len(set(slots)), f"a slot ran twice: {slots}"

    standins.answer()  # the receiver is back
    status = _trigger(node, "pending", "after-roll")
    assert status["webhook"]["pendingChanges"] == 0, status
    attempts = [d for d in standins.deliveries() if d["payload"]["watcher"]["name"] == "pending"]
    ids = {d["payload"]["id"] for d in attempts}
    assert len(ids) == 1, "the redelivery after the roll must keep the pending change's id"
    assert attempts[-1]["payload"]["summary"]["removed"] == 1
    node.kubectl("delete", "mw", "ticker", "pending", "-n", REFEREES, "--timeout=60s")


def _active_pod(node: Node, watcher: str, pods: list[str], since: float) -> str | None:
    """The pod that logged a scheduled run of `watcher` after `since` (the kubelet's log time)."""
    stamp = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for pod in pods:
        logs = node.kubectl(
            "logs", pod, "-n", RELEASE_NAMESPACE, f"--since-time={stamp}", check=False
        )
        if f"{REFEREES}/{watcher}: schedule run (" in logs:
            return pod
    return None


def _other_pods(node: Node, gone: str) -> list[str]:
    return [p["metadata"]["name"] for p in _operator_pods(node) if p["metadata"]["name"] != gone]


def test_ha_failover_graceful_and_crash(standins: Standins) -> None:
    node = standins.node
    node.helm("upgrade", *_install_args(node), "--reuse-values", "--set", "replicaCount=2")
    pods = [
        p["metadata"]["name"]
        for p in wait_for(
            "two Ready pods", lambda: _ready_pods(node, 2), timeout=180, interval=KUBECTL_PACE
        )
    ]
    node.apply(_watcher("ha", "* * * * * */2"))  # every 2 seconds (seconds field last)
    since = time.time()
    active = wait_for(
        "the active replica",
        lambda: _active_pod(node, "ha", pods, since),
        90,
        interval=KUBECTL_PACE,
    )
    standby = next(p for p in pods if p != active)

    # Graceful: the leader releases its Lease on the way out; the standby takes it at its next
    # try (every 2 s). Should the ReplicaSet's new pod get there first, it leads instead: either
    # way a live replica runs the next slot.
    started = time.time()
    node.kubectl("delete", "pod", active, "-n", RELEASE_NAMESPACE, "--wait=false")
    taken = wait_for(
        "another replica to run a slot",
        lambda: _active_pod(node, "ha", _other_pods(node, active), started),
        90,
        interval=KUBECTL_PACE,
    )
    who = "the standby" if taken == standby else "the replacement pod"
    figure(f"failover, graceful delete -> {who} runs a slot", time.time() - started)

    # Crash: SIGKILL the leader's container; its Lease holds until 15 s after its last renewal.
    pods = [
        p["metadata"]["name"]
        for p in wait_for(
            "two Ready pods", lambda: _ready_pods(node, 2), timeout=180, interval=KUBECTL_PACE
        )
    ]
    since = time.time()
    time.sleep(5)
    active = wait_for(
        "the active replica",
        lambda: _active_pod(node, "ha", pods, since),
        90,
        interval=KUBECTL_PACE,
    )
    pod = node.json("get", "pod", active, "-n", RELEASE_NAMESPACE)
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    started = time.time()
    node.run(
        "ctr", "--address", "/run/mlcd-node/containerd/containerd.sock", "-n", "k8s.io",
        "tasks", "kill", "-s", "SIGKILL", container_id,
    )  # fmt: skip
    taken = wait_for(
        "a live replica to run a slot after the crash",
        lambda: _active_pod(node, "ha", pods, started + 1),
        timeout=150,
        interval=KUBECTL_PACE,
    )
    # The standby takes over once the lease has expired (15 s, plus up to its 2 s retry), unless
    # the restarted container (a new identity) tries first after the expiry.
    who = "its restarted container" if taken == active else "the standby"
    figure(f"failover, SIGKILL of the active container -> {who} runs a slot", time.time() - started)
    slots = _run_slots(node, "ha")
    assert len(slots) == len(set(slots)), f"a slot ran twice across replicas: {slots}"
    node.kubectl("delete", "mw", "ha", "-n", REFEREES, "--timeout=60s")


def test_shards_split_the_watchers_between_deployments(standins: Standins) -> None:
    node = standins.node
    node.helm(
        "upgrade", *_install_args(node), "--reuse-values",
        "--set", "replicaCount=1", "--set", "shards=2",
    )  # fmt: skip

    def env(pod: dict[str, Any]) -> dict[str, str]:
        return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}

    def sharded() -> dict[int, str] | None:
        pods = [p for p in _ready_pods(node, 2) or [] if env(p)["MLCD_SHARDS"] == "2"]
        found = {int(env(p)["MLCD_SHARD_INDEX"]): p["metadata"]["name"] for p in pods}
        return found if len(found) == 2 else None

    pod_of = wait_for("a Ready pod per shard", sharded, timeout=180, interval=KUBECTL_PACE)
    node.json("get", "deployment", f"{FULLNAME}-shard-1", "-n", RELEASE_NAMESPACE)
    shards: dict[str, int] = {}
    while len(set(shards.values())) < 2 and len(shards) < 12:  # random uids: both shards get one
        name = f"shard-{len(shards)}"
        node.apply(_watcher(name, "0 0 1 1 *"))
        uid = node.kubectl("get", "mw", name, "-n", REFEREES, "-o", "jsonpath={.metadata.uid}")
        shards[name] = shard_of(uid, 2)
    for name in shards:
        _trigger(node, name, "sharded")
    logs = {shard: _logs(node, pod) for shard, pod in pod_of.items()}
    for name, shard in shards.items():
        assert f"{REFEREES}/{name}: manual run" in logs[shard], logs[shard][-3000:]
        assert f"{REFEREES}/{name}:" not in logs[1 - shard], f"shard {1 - shard} ran {name}"
    node.kubectl("delete", "mw", *shards, "-n", REFEREES, "--timeout=60s")


def test_uninstall_keeps_the_crd_and_users_secrets(standins: Standins) -> None:
    node = standins.node
    node.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", "--timeout", "3m")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    # The pods were the ReplicaSet's, not the release's: they go once they have shut down.
    wait_for(
        "the operator pods to finish",
        lambda: (
            not node.kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-l", selector, "-o", "name")
        ),
        timeout=120,
        interval=KUBECTL_PACE,
    )
    # The one object kept on purpose (helm.sh/resource-policy: keep): the key people's cursors
    # are stored under, so a reinstall does not re-key them.
    kept = {"secret": f"secret/{RELEASE}-match-list-change-detector-notify-key\n"}
    for kind in ("deployment", "service", "serviceaccount", "configmap", "secret"):
        leftover = node.kubectl(
            "get", kind, "-n", RELEASE_NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}",
            "-o", "name",
        )  # fmt: skip
        assert leftover == kept.get(kind, ""), leftover
    node.kubectl("delete", "secret", "-n", RELEASE_NAMESPACE, kept["secret"].strip().split("/")[1])
    cluster_wide = node.kubectl(
        "get", "clusterrole,clusterrolebinding", "-l", f"app.kubernetes.io/instance={RELEASE}",
        "-o", "name",
    )  # fmt: skip
    assert cluster_wide == ""
    assert node.kubectl("get", "crd", "matchwatchers.matchlist.io", "-o", "name").strip()
    secrets = node.kubectl("get", "secrets", "-n", REFEREES, "-o", "name").split()
    assert {"secret/anna-fogis", "secret/anna-hook"} <= set(secrets)
