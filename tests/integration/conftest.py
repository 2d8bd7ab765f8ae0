"""Session fixtures: one real etcd + kube-apiserver for the whole run (hack/local_cluster.py),
the CRD applied for real, and per-test namespaces, FOGIS fakes and operator processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from hack import local_cluster
from tests.fakes.fogis import FakeFogis, sample_matches
from tests.integration.harness import ROOT, Cluster, Operator, wait_for

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
    configuration = client.Configuration()
    config.load_kube_config(config_file=info.kubeconfig, client_configuration=configuration)
    api = client.ApiClient(configuration)
    handle = Cluster(api, info.kubeconfig)
    handle.kubectl("apply", "-f", str(ROOT / "deploy" / "crds"))
    handle.kubectl(
        "wait", "--for=condition=Established", "crd/matchwatchers.matchlist.io", "--timeout=30s"
    )
    yield handle
    api.close()
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
    for item in cluster.custom.list_namespaced_custom_object(
        "matchlist.io", "v1alpha1", namespace, "matchwatchers"
    )["items"]:
        cluster.delete_watcher(namespace, item["metadata"]["name"])
    if op.proc is not None:
        wait_for(
            "watchers deleted",
            lambda: (
                not cluster.custom.list_namespaced_custom_object(
                    "matchlist.io", "v1alpha1", namespace, "matchwatchers"
                )["items"]
            ),
            timeout=30,
        )
    op.stop()
    for item in cluster.custom.list_namespaced_custom_object(
        "matchlist.io", "v1alpha1", namespace, "matchwatchers"
    )["items"]:
        cluster.force_delete_watcher(namespace, item["metadata"]["name"])
