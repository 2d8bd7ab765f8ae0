"""Helpers of the integration tests beyond tests/support: manual runs, snapshot ConfigMaps and
Events of one watcher, read through the real API."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from kubernetes.client.exceptions import ApiException

from tests.support.cluster import Cluster
from tests.support.waiting import wait_for

SNAPSHOT_KEY = "snapshot.json.gz"


def snapshot_name(watcher: str) -> str:
    return f"{watcher}-matchlist-snapshot"


def snapshot_config_map(cluster: Cluster, namespace: str, watcher: str) -> Any:
    """The watcher's snapshot ConfigMap (a V1ConfigMap), or None when there is none yet."""
    try:
        return cluster.core.read_namespaced_config_map(snapshot_name(watcher), namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def snapshot_document(config_map: Any) -> dict[str, Any]:
    """The stored snapshot, decoded from binaryData (base64 of gzip-compressed JSON)."""
    raw = base64.b64decode(config_map.binary_data[SNAPSHOT_KEY])
    document: dict[str, Any] = json.loads(gzip.decompress(raw))
    return document


class ManualRuns:
    """Manual runs of one watcher: every call sets a fresh trigger value and waits until the
    run's status patch (which carries the value as lastHandledTrigger) is visible."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.count = 0

    def next_value(self) -> str:
        self.count += 1
        return f"run-{self.count}"

    def __call__(self, timeout: float = 20.0) -> dict[str, Any]:
        value = self.next_value()
        self.cluster.trigger(self.namespace, self.name, value)
        return self.cluster.wait_status(
            self.namespace,
            self.name,
            f"manual run {value}",
            lambda s: s.get("lastHandledTrigger") == value,
            timeout,
        )


def wait_event_with(
    cluster: Cluster, namespace: str, name: str, reason: str, text: str, *, timeout: float = 10.0
) -> Any:
    """The Event of `reason` whose message contains `text` (Events are posted asynchronously)."""

    def probe() -> Any:
        return next(
            (
                e
                for e in cluster.events(namespace, name)
                if e.reason == reason and text in (e.message or "")
            ),
            None,
        )

    return wait_for(f"{reason} event of {namespace}/{name} saying {text!r}", probe, timeout)
