"""What users install, on the real API server: helm install (CRD, RBAC, Deployment), the
operator running with nothing but the chart's ServiceAccount, and `kubectl apply -f deploy/`
(the operator only) then `-f examples/`."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.local_cluster import ROOT
from tests.fakes.fogis.records import sample_matches
from tests.fakes.fogis.server import FakeFogis
from tests.fakes.receiver import WebhookReceiver
from tests.support.cluster import Cluster
from tests.support.commands import kubectl, run_command
from tests.support.net import http
from tests.support.operator_process import Operator, running
from tests.support.payloads import delivery_check
from tests.support.waiting import wait_for
from tests.support.watchers import fogis_spec, ready

CHART = ROOT / "charts" / "match-list-change-detector"


@pytest.fixture(scope="session")
def helm() -> str:
    result = subprocess.run(
        [str(ROOT / "hack" / "tools"), "helm"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"cannot build helm: {result.stderr[-2000:]}")
    return result.stdout.strip()


def run_helm(helm: str, cluster: Cluster, *args: str) -> str:
    return run_command([helm, f"--kubeconfig={cluster.kubeconfig}", *args])


@pytest.fixture
def release(helm: str, cluster: Cluster, namespace: str) -> Iterator[tuple[str, str]]:
    """The chart installed in a fresh namespace, serving only `namespace` (Role per namespace)."""
    name = f"mlcd-{uuid.uuid4().hex[:6]}"
    install_ns = cluster.new_namespace("mlcd")
    run_helm(
        helm, cluster, "install", name, str(CHART), "-n", install_ns,
        # The CRD is already applied by the session fixture; the release adopts it.
        "--set", "crds.skipIfPresent=false", "--take-ownership",
        "--set", f"watchNamespaces={{{namespace}}}",
    )  # fmt: skip
    yield name, install_ns
    run_helm(helm, cluster, "uninstall", name, "-n", install_ns)


def test_helm_install_creates_crd_rbac_and_deployment(
    cluster: Cluster, namespace: str, release: tuple[str, str]
) -> None:
    name, install_ns = release
    fullname = f"{name}-match-list-change-detector"
    crd = json.loads(cluster.kubectl("get", "crd", "matchwatchers.matchlist.io", "-o", "json"))
    established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
    assert established[0]["status"] == "True"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    deployment = json.loads(
        cluster.kubectl("get", "deployment", fullname, "-n", install_ns, "-o", "json")
    )
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert f"--namespace={namespace}" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    cluster.kubectl("get", "serviceaccount", fullname, "-n", install_ns)
    cluster.kubectl("get", "role,rolebinding", fullname, "-n", namespace)
    cluster.kubectl("get", "service", fullname, "-n", install_ns)


def test_helm_install_leaves_a_crd_it_does_not_own_and_says_so(
    helm: str, cluster: Cluster, namespace: str
) -> None:
    """The CRD came from `kubectl apply` (the session fixture): a plain install must not fail
    with Helm's ownership error, nor take the CRD over."""
    name, install_ns = f"mlcd-{uuid.uuid4().hex[:6]}", cluster.new_namespace("mlcd")
    before = json.loads(cluster.kubectl("get", "crd", "matchwatchers.matchlist.io", "-o", "json"))
    out = run_helm(
        helm, cluster, "install", name, str(CHART), "-n", install_ns,
        "--set", f"watchNamespaces={{{namespace}}}",
    )  # fmt: skip
    try:
        assert "The MatchWatcher CRD already existed" in out
        manifest = run_helm(helm, cluster, "get", "manifest", name, "-n", install_ns)
        assert "kind: CustomResourceDefinition" not in manifest
        after = json.loads(
            cluster.kubectl("get", "crd", "matchwatchers.matchlist.io", "-o", "json")
        )
        assert after["metadata"].get("annotations") == before["metadata"].get("annotations")
    finally:
        run_helm(helm, cluster, "uninstall", name, "-n", install_ns)
    cluster.kubectl("get", "crd", "matchwatchers.matchlist.io")  # still there


def test_operator_as_the_charts_service_account(
    cluster: Cluster,
    namespace: str,
    release: tuple[str, str],
    fogis: FakeFogis,
    credentials: str,
    tmp_path: Path,
) -> None:
    name, install_ns = release
    account = f"{name}-match-list-change-detector"
    kubeconfig = cluster.service_account_kubeconfig(account, install_ns, tmp_path / "sa.json")
    with (
        WebhookReceiver(check=delivery_check()) as hook,
        running(Operator(kubeconfig, [namespace], tmp_path / "operator.log")) as operator,
    ):
        spec = fogis_spec(fogis.base_url, credentials, webhook={"url": hook.url})
        cluster.create_watcher(namespace, "rbac", spec)
        cluster.trigger(namespace, "rbac", "baseline")
        cluster.wait_status(namespace, "rbac", "baseline", lambda s: s.get("matchCount"), 15)
        fogis.set_matches(sample_matches()[1:])  # one match removed
        cluster.trigger(namespace, "rbac", "change")
        status = cluster.wait_status(
            namespace, "rbac", "delivered", lambda s: s.get("lastHandledTrigger") == "change", 15
        )
        condition = ready(status)
        assert condition is not None
        assert (condition["status"], condition["reason"]) == ("True", "Succeeded")
        assert status["webhook"]["lastStatusCode"] == 204
        assert len(hook.requests) == 1
        cluster.wait_event(namespace, "rbac", "RunSucceeded")  # Events are allowed too
        cluster.core.read_namespaced_config_map("rbac-matchlist-snapshot", namespace)
        # A calendar feed: its token Secret made, and the feed served, with the chart's RBAC.
        cluster.create_watcher(
            namespace, "feed", fogis_spec(fogis.base_url, credentials, calendar={"enabled": True})
        )
        secret = wait_for(
            "the feed's token Secret",
            lambda: next(
                (s for s in cluster.core.list_namespaced_secret(namespace).items
                 if s.metadata.name == "feed-calendar"), None,
            ),
            timeout=30,
        )  # fmt: skip
        token = base64.b64decode(secret.data["token"]).decode()
        feed = f"{operator.calendar_url}/calendar/{namespace}/feed/{token}.ics"
        assert http("GET", feed)[0] == 200
        cluster.delete_watcher(namespace, "feed")
        cluster.delete_watcher(namespace, "rbac")  # no finalizer: the delete goes through
        logs = operator.logs()
    # A 403 status, not those digits inside a port or a timestamp (127.0.0.1:40311 is fine).
    assert re.search(r"(?<![\d:.,])403(?![\d:])", logs) is None
    assert "Forbidden" not in logs

    def can_i(*args: str) -> str:
        return kubectl(kubeconfig, "auth", "can-i", *args, check=False).strip()

    # What it needs...
    assert can_i("get", "secrets", "-n", namespace) == "yes"
    assert can_i("patch", "matchwatchers.matchlist.io/status", "-n", namespace) == "yes"
    # ... and nothing more: no listing Secrets, no other namespaces, no pods, no deletes.
    assert can_i("create", "secrets", "-n", namespace) == "yes"  # calendar feed tokens
    assert can_i("list", "secrets", "-n", namespace) == "no"
    assert can_i("update", "secrets", "-n", namespace) == "no"
    assert can_i("delete", "secrets", "-n", namespace) == "no"
    assert can_i("get", "secrets", "-n", install_ns) == "no"
    assert can_i("get", "secrets", "-n", "default") == "no"
    assert can_i("create", "pods", "-n", namespace) == "no"
    assert can_i("delete", "matchwatchers.matchlist.io", "-n", namespace) == "no"
    assert can_i("list", "configmaps", "-n", namespace) == "no"
    # One replica: no leader election, so no Lease permissions anywhere.
    assert can_i("create", "leases.coordination.k8s.io", "-n", install_ns) == "no"
    with pytest.raises(AssertionError, match="forbidden"):
        kubectl(kubeconfig, "get", "secrets", "-n", namespace)


# What deploy/ may hold: the operator, nothing a user must edit first (Secrets) and no
# MatchWatcher (applied with its CRD in one go, it fails until the CRD is Established).
OPERATOR_KINDS = {
    "namespace", "customresourcedefinition.apiextensions.k8s.io", "serviceaccount",
    "clusterrole.rbac.authorization.k8s.io", "clusterrolebinding.rbac.authorization.k8s.io",
    "role.rbac.authorization.k8s.io", "rolebinding.rbac.authorization.k8s.io",
    "deployment.apps", "service",
}  # fmt: skip


def test_kubectl_apply_deploy_and_examples(cluster: Cluster) -> None:
    # deploy/ as documented (not -R: deploy/compose/ holds the service's compose file; that
    # nothing else lies below it is hack/render-manifests --check's job).
    names = cluster.kubectl(
        "apply", "-f", str(ROOT / "deploy"), "--dry-run=client", "-o", "name"
    ).split()
    assert {name.split("/", 1)[0] for name in names} <= OPERATOR_KINDS, names
    out = cluster.kubectl("apply", "-f", str(ROOT / "deploy"))
    for kind in ("namespace/", "customresourcedefinition", "clusterrole", "deployment", "service/"):
        assert kind in out
    cluster.kubectl("get", "deployment", "match-list-change-detector", "-n",
                    "match-list-change-detector")  # fmt: skip
    out = cluster.kubectl("apply", "-f", str(ROOT / "examples"))
    assert "matchwatcher.matchlist.io/anna" in out
    sample = cluster.watcher("referees", "anna")
    assert sample["spec"]["schedule"] == "H * * * *"
    cluster.force_delete_watcher("referees", "anna")
