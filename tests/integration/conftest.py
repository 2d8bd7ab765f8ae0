"""Session fixtures: one real etcd + kube-apiserver for the whole run (hack/local_cluster.py),
the CRD applied for real, and per-test namespaces, FOGIS fakes and operator processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hack import local_cluster
from tests.fakes.fogis.records import sample_matches
from tests.fakes.fogis.server import FakeFogis
from tests.support.cluster import Cluster
from tests.support.operator_process import Operator
from tests.support.waiting import wait_for

USERNAME, PASSWORD = "anna.andersson", "s3cret-Pa55word"


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    already = local_cluster.ClusterInfo.load()
    reuse = already is not None and local_cluster.healthy(already)
    try:
        info = local_cluster.up()
    except local_cluster.ClusterError as exc:
        # A failure, never a skip: integration tests that did not run have not passed.
        pytest.fail(f"local control plane did not start: {exc}")
    handle = Cluster.connect(info.kubeconfig)
    handle.install_crd()
    yield handle
    handle.api.close()
    if not reuse:  # tolerate (and keep) a cluster started by `hack/local-cluster up`
        local_cluster.down(quiet=True)


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    return cluster.new_namespace()


@pytest.fixture
def fogis() -> Iterator[FakeFogis]:
    with FakeFogis(users={USERNAME: PASSWORD}, matches=sample_matches(), timeout_delay=8) as fake:
        yield fake


@pytest.fixture
def credentials(cluster: Cluster, namespace: str) -> str:
    cluster.create_secret(namespace, "fogis", {"username": USERNAME, "password": PASSWORD})
    return "fogis"


@pytest.fixture
def operator(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(cluster.kubeconfig, [namespace], tmp_path / "operator.log")
    op.start()
    yield op
    # Delete our watchers while the operator still runs, so it removes its finalizers.
    for item in cluster.watchers(namespace):
        cluster.delete_watcher(namespace, item["metadata"]["name"])
    if op.proc is not None:
        wait_for(
            "watchers deleted",
            lambda: not cluster.watchers(namespace),
            timeout=30,
        )
    op.stop()
    for item in cluster.watchers(namespace):
        cluster.force_delete_watcher(namespace, item["metadata"]["name"])
