"""The calendar feeds over HTTP from operator processes on the real API server, read with vobject
(a parser independent of the library that writes them): the token Secret the operator makes,
a change of time, a cancellation, a removal, a token rotation, and the same feed from a standby
replica and from another shard's replica, and through real runs against the FOGIS stand-in while
the webhook fails."""

from __future__ import annotations

import base64
import gzip
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import vobject
from kubernetes.client.exceptions import ApiException

from controller.core.calendar import CalendarState, advance
from controller.core.diff import Snapshot, normalise_all, window_for
from controller.core.sharding import shard_of
from hack.local_cluster import ROOT, free_port
from tests.fakes.fogis.records import make_match
from tests.fakes.fogis.server import FakeFogis
from tests.support.cluster import Cluster
from tests.support.operator_process import Operator, running
from tests.support.waiting import wait_for
from tests.support.watchers import GROUP, PLURAL, VERSION, fogis_spec

CALENDAR = {"enabled": True, "durationMinutes": 105}
DAY = date.today() + timedelta(days=10)


def token_of(cluster: Cluster, namespace: str, name: str) -> str:
    secret = cluster.core.read_namespaced_secret(f"{name}-calendar", namespace)
    return base64.b64decode(secret.data["token"]).decode()


def wait_token(cluster: Cluster, namespace: str, name: str, other_than: str = "") -> str:
    def probe() -> str | None:
        try:
            token = token_of(cluster, namespace, name)
        except ApiException:  # not there yet
            return None
        return token if token != other_than else None

    return wait_for(f"the token Secret of {name}", probe, timeout=30)


def plugin(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """This checkout's plugin (the console script on PATH may be another worktree's)."""
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    command = [sys.executable, "-m", "controller.entrypoints.kubectl_plugin", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False
    )


class Publisher:
    """Writes a watcher's calendar state the way a confirmed run does (its "notified"
    ConfigMap's calendar.json.gz, owned by the watcher, and status.calendar.revision)."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.uid = cluster.watcher(namespace, name)["metadata"]["uid"]
        self.state: CalendarState | None = None

    def publish(self, records: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        window = window_for(now.date(), 7, 365)
        latest = Snapshot(normalise_all(records))
        self.state = advance(self.state, latest, records, window, now, include_contacts=False)
        name = f"{self.name}-matchlist-notified"
        data = base64.b64encode(gzip.compress(self.state.to_json().encode(), mtime=0)).decode()
        body = {
            "metadata": {
                "name": name,
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "MatchWatcher",
                        "name": self.name,
                        "uid": self.uid,
                    }
                ],
            },
            "binaryData": {"calendar.json.gz": data},
        }
        core = self.cluster.core
        try:
            core.replace_namespaced_config_map(name, self.namespace, body)
        except ApiException as exc:  # the first write creates it
            if exc.status != 404:
                raise
            core.create_namespaced_config_map(self.namespace, body)
        self.cluster.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, self.name,
            {"status": {"calendar": {"revision": self.state.revision}}},
        )  # fmt: skip


def fetch(base: str, path: str, etag: str | None = None) -> tuple[int, bytes, str | None]:
    headers = {} if etag is None else {"If-None-Match": etag}
    request = urllib.request.Request(base + path, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.read(), answer.headers.get("ETag")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("ETag")


def events(body: bytes) -> dict[str, Any]:
    calendar = vobject.readOne(body.decode("utf-8"))
    return {e.uid.value.split(".")[0]: e for e in getattr(calendar, "vevent_list", [])}


def wait_feed(base: str, path: str, check: Any, etag: str | None = None) -> tuple[bytes, str]:
    """The feed once `check(events)` holds (the watch brings the new revision in a moment)."""

    def probe() -> tuple[bytes, str] | None:
        status, body, tag = fetch(base, path, etag)
        if status == 200 and tag is not None and check(events(body)):
            return body, tag
        return None

    return wait_for("the feed to show it", probe, timeout=20)


def test_a_feed_through_a_change_a_cancellation_a_removal_and_a_rotation(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    cluster.create_watcher(
        namespace, "anna", fogis_spec(fogis.base_url, credentials, calendar=CALENDAR)
    )
    token = wait_token(cluster, namespace, "anna")
    secret = cluster.core.read_namespaced_secret("anna-calendar", namespace)
    assert secret.type == "Opaque"
    assert [o.uid for o in secret.metadata.owner_references] == [
        cluster.watcher(namespace, "anna")["metadata"]["uid"]
    ]
    assert len(token) >= 43  # 256 bits

    line = plugin(cluster, "calendar", "anna", "-n", namespace, "--base-url", operator.calendar_url)
    assert line.returncode == 0, line.stderr
    path = line.stdout.strip().removeprefix(operator.calendar_url)
    assert path == f"/calendar/{namespace}/anna/{token}.ics"
    missing = plugin(cluster, "calendar", "anna", "-n", namespace)
    assert missing.returncode == 2
    assert "--base-url" in missing.stderr

    # No list yet: a valid, empty calendar.
    status, body, empty_tag = fetch(operator.calendar_url, path)
    assert status == 200
    assert events(body) == {}
    assert fetch(operator.calendar_url, path, empty_tag)[0] == 304

    publisher = Publisher(cluster, namespace, "anna")
    records = [make_match(1, on=DAY, avsparkstid="18:00"), make_match(2, on=DAY)]
    publisher.publish(records)
    body, tag = wait_feed(operator.calendar_url, path, lambda found: len(found) == 2)
    first = events(body)["1"]
    assert first.dtstart.params["X-VOBJ-ORIGINAL-TZID"] == ["Europe/Stockholm"]
    assert (first.dtstart.value.date(), first.dtstart.value.hour) == (DAY, 18)
    assert (first.dtend.value - first.dtstart.value) == timedelta(minutes=105)
    assert int(first.sequence.value) == 0
    assert fetch(operator.calendar_url, path, tag)[0] == 304

    # The match moves: the same UID, a later time, SEQUENCE + 1.
    records[0] = make_match(1, on=DAY, avsparkstid="20:15")
    publisher.publish(records)
    body, tag = wait_feed(
        operator.calendar_url, path, lambda found: found["1"].dtstart.value.hour == 20, tag
    )
    moved = events(body)["1"]
    assert (moved.dtstart.value.hour, moved.dtstart.value.minute) == (20, 15)
    assert moved.uid.value == first.uid.value
    assert int(moved.sequence.value) == 1

    # Cancelled by FOGIS.
    records[1] = make_match(2, on=DAY, installd=True)
    publisher.publish(records)
    body, tag = wait_feed(
        operator.calendar_url, path, lambda found: found["2"].status.value == "CANCELLED", tag
    )
    assert events(body)["1"].status.value == "CONFIRMED"

    # Left the list: kept as CANCELLED until its date has passed.
    publisher.publish(records[1:])
    body, tag = wait_feed(
        operator.calendar_url, path, lambda found: found["1"].status.value == "CANCELLED", tag
    )
    assert int(events(body)["1"].sequence.value) == 2

    # Rotation: delete the Secret; the plugin asks for a new token and prints it.
    cluster.core.delete_namespaced_secret("anna-calendar", namespace)
    rotated = plugin(cluster, "calendar", "anna", "-n", namespace, "--base-url", "http://x/")
    assert rotated.returncode == 0, rotated.stderr
    new_token = token_of(cluster, namespace, "anna")
    assert new_token != token
    assert rotated.stdout.strip() == f"http://x/calendar/{namespace}/anna/{new_token}.ics"
    new_path = f"/calendar/{namespace}/anna/{new_token}.ics"
    assert fetch(operator.calendar_url, new_path)[0] == 200
    old = fetch(operator.calendar_url, path)
    unknown = fetch(operator.calendar_url, f"/calendar/{namespace}/nobody/{new_token}.ics")
    assert old[0] == unknown[0] == 404
    assert old[1] == unknown[1]

    # Turned off: the same 404.
    cluster.patch_spec(namespace, "anna", {"calendar": {"enabled": False}})
    wait_for(
        "the feed to be off", lambda: fetch(operator.calendar_url, new_path)[0] == 404, timeout=10
    )
    assert token not in operator.logs()
    assert new_token not in operator.logs()


@pytest.mark.parametrize("role", ["standby", "shard"])
def test_every_replica_serves_every_feed(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    credentials: str,
    tmp_path: Path,
    role: str,
) -> None:
    """A standby (another replica holds the Lease) and another shard's replica answer with the
    same bytes and ETag as the replica that serves the watcher; only that one made the token."""
    if role == "standby":
        env = {"MLCD_LEASE_NAME": "feeds", "MLCD_LEASE_NAMESPACE": namespace}
        envs = [env, env]
    else:
        envs = [{"MLCD_SHARDS": "2", "MLCD_SHARD_INDEX": str(i)} for i in range(2)]
    first = Operator(cluster.kubeconfig, [namespace], tmp_path / "first.log", envs[0])
    second = Operator(cluster.kubeconfig, [namespace], tmp_path / "second.log", envs[1])
    with running(first), running(second):
        names: list[str] = []
        shards: set[int] = set()
        # At least three, and until both shards have watchers of their own (uids are random).
        while len(names) < 3 or shards != {0, 1}:
            name = f"w{len(names)}"
            watcher = cluster.create_watcher(
                namespace, name, fogis_spec(fogis.base_url, credentials, calendar=CALENDAR)
            )
            names.append(name)
            shards.add(shard_of(watcher["metadata"]["uid"], 2))
        for name in names:
            token = wait_token(cluster, namespace, name)
            Publisher(cluster, namespace, name).publish([make_match(7, on=DAY)])
            path = f"/calendar/{namespace}/{name}/{token}.ics"
            answers = [
                wait_feed(op.calendar_url, path, lambda found: "7" in found)
                for op in (first, second)
            ]
            assert answers[0] == answers[1]
            assert fetch(second.calendar_url, path, answers[0][1])[0] == 304
        created = [op.logs().count("calendar token Secret") for op in (first, second)]
        assert sum(created) == len(names)
        if role == "standby":
            assert created[1] == 0  # the standby made none: the leader did
        else:
            assert all(created)  # each shard made its own watchers' tokens
        for name in names:
            cluster.delete_watcher(namespace, name)


def test_real_runs_advance_the_feed_while_the_webhook_fails(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, tmp_path: Path
) -> None:
    """Through runs against the FOGIS stand-in, with a webhook nothing answers: the feed follows
    every confirmed list (status.calendar.revision tells every replica), the webhook's changes
    stay pending, and the plugin's base comes from status.calendar.publicUrl."""
    env = {"MLCD_CALENDAR_PUBLIC_URL": "https://calendar.example.org"}
    records = [make_match(1, on=DAY, avsparkstid="18:00"), make_match(2, on=DAY)]
    fogis.set_matches(records)
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    webhook = {"url": dead, "maxAttempts": 1, "timeoutSeconds": 2}
    spec = fogis_spec(fogis.base_url, credentials, calendar=CALENDAR, webhook=webhook)
    with running(Operator(cluster.kubeconfig, [namespace], tmp_path / "op.log", env)) as operator:
        cluster.create_watcher(namespace, "runs", spec)
        token = wait_token(cluster, namespace, "runs")
        path = f"/calendar/{namespace}/runs/{token}.ics"
        line = plugin(cluster, "calendar", "runs", "-n", namespace)
        assert line.returncode == 2  # no run yet: no status.calendar.publicUrl

        def run(value: str) -> dict[str, Any]:
            cluster.trigger(namespace, "runs", value)
            return cluster.wait_status(
                namespace, "runs", value, lambda s: s.get("lastHandledTrigger") == value, 30
            )

        status = run("baseline")
        assert status["calendar"] == {
            "revision": 1,
            "publicUrl": "https://calendar.example.org",
        }
        line = plugin(cluster, "calendar", "runs", "-n", namespace)
        assert line.returncode == 0, line.stderr
        assert line.stdout.strip() == f"https://calendar.example.org{path}"
        body, tag = wait_feed(operator.calendar_url, path, lambda found: len(found) == 2)
        assert events(body)["1"].dtstart.value.hour == 18

        records[0] = make_match(1, on=DAY, avsparkstid="20:15")
        fogis.set_matches(records)
        status = run("moved")
        assert status["webhook"]["pendingChanges"] >= 1  # the webhook fails ...
        body, tag = wait_feed(  # ... and the feed moves on all the same
            operator.calendar_url, path, lambda found: found["1"].dtstart.value.hour == 20, tag
        )
        assert int(events(body)["1"].sequence.value) == 1

        records[1] = make_match(2, on=DAY, installd=True)
        fogis.set_matches(records)
        run("cancelled")
        body, tag = wait_feed(
            operator.calendar_url, path, lambda found: found["2"].status.value == "CANCELLED", tag
        )

        fogis.set_matches(records[1:])
        status = run("removed")
        body, tag = wait_feed(
            operator.calendar_url, path, lambda found: found["1"].status.value == "CANCELLED", tag
        )
        assert status["calendar"]["revision"] == 4
        assert fetch(operator.calendar_url, path, tag)[0] == 304
        run("unchanged")  # the same list again: the same revision, the same bytes
        assert cluster.status(namespace, "runs")["calendar"]["revision"] == 4
        status_code, same, same_tag = fetch(operator.calendar_url, path)
        assert (status_code, same, same_tag) == (200, body, tag)
        cluster.delete_watcher(namespace, "runs")
        logs = operator.logs()
    assert token not in logs
