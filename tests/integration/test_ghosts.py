"""Watchers deleted unseen: what the API server says of them, and an operator whose watch was
down when one was deleted (kopf's re-listing sends no DELETED event) no longer serving it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from kubernetes import config

from controller.adapters.kube import Kube
from controller.core.errors import WatcherGone
from controller.core.model import WatcherRef
from hack import local_cluster
from tests.fakes.fogis.server import FakeFogis
from tests.support.cluster import Cluster
from tests.support.operator_process import Operator
from tests.support.waiting import wait_for
from tests.support.watchers import fogis_spec


@pytest.fixture
def kube(cluster: Cluster) -> Iterator[Kube]:
    api = config.new_client_from_config(cluster.kubeconfig)
    adapter = Kube(api, api, 2)
    yield adapter
    adapter.close()


async def test_status_calls_on_a_deleted_watcher_say_it_is_gone(
    cluster: Cluster, namespace: str, kube: Kube
) -> None:
    watcher = cluster.create_watcher(namespace, "deleted", fogis_spec("http://127.0.0.1:9", "x"))
    ref = WatcherRef(namespace, "deleted", watcher["metadata"]["uid"])
    cluster.delete_watcher(namespace, "deleted")
    wait_for("the deletion", lambda: not cluster.exists(namespace, "deleted"), timeout=10)
    with pytest.raises(WatcherGone):
        await kube.patch_status(ref, {"executionCount": 1})
    with pytest.raises(WatcherGone):
        await kube.read_status(ref)


async def test_the_uids_of_every_watcher_are_listed_over_pages(
    cluster: Cluster, namespace: str, kube: Kube
) -> None:
    uids = {
        cluster.create_watcher(namespace, f"w{i}", fogis_spec("http://127.0.0.1:9", "x"))[
            "metadata"
        ]["uid"]
        for i in range(5)
    }
    try:
        assert await kube.watcher_uids(namespace, page=2) == uids
        assert uids <= await kube.watcher_uids(None, page=2)
    finally:
        for i in range(5):
            cluster.delete_watcher(namespace, f"w{i}")


def test_a_watcher_deleted_while_the_watch_was_down_is_no_longer_served(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    """Frozen, the operator misses the DELETED event; the API server restarted meanwhile, so
    its watch cannot resume and kopf re-lists. Before: the deleted watcher was served (and its
    series exported) until the operator restarted."""
    for name in ("kept", "ghost"):
        cluster.create_watcher(namespace, name, fogis_spec(fogis.base_url, credentials))
    wait_for("both watchers served", lambda: operator.health()["watchers"] == 2, timeout=20)
    wait_for("the ghost's series", lambda: 'name="ghost"' in operator.metrics(), timeout=20)
    os.kill(operator.pid, signal.SIGSTOP)
    try:
        # Restarted first: a DELETED event sent before would wait in the frozen one's socket.
        local_cluster.restart_apiserver()
        cluster.delete_watcher(namespace, "ghost")
        wait_for("the deletion", lambda: not cluster.exists(namespace, "ghost"), timeout=10)
    finally:
        os.kill(operator.pid, signal.SIGCONT)
    wait_for("the ghost dropped", lambda: operator.health()["watchers"] == 1, timeout=60)
    assert 'name="ghost"' not in operator.metrics()
    assert 'name="kept"' in operator.metrics()
    assert "ghost: deleted while the watch was down" in operator.logs()
