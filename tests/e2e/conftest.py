"""End-to-end fixtures: a real node (hack/local_node.py), the images built from this checkout
(hack/images), and thin kubectl/helm wrappers. Nothing here mocks Kubernetes: the chart's pod runs
on a kubelet, behind a Service, reached through kube-proxy and CoreDNS like on any cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from hack import local_cluster, local_node
from hack.local_cluster import ROOT
from tests.support.commands import kubectl, run_command

CHART = ROOT / "charts" / "match-list-change-detector"
RELEASE = "mlcd"  # the README's release name and namespace
RELEASE_NAMESPACE = "match-list-change-detector"
FULLNAME = f"{RELEASE}-match-list-change-detector"


# wait_for's interval here: every probe starts kubectl, which costs a core for a moment.
KUBECTL_PACE = 0.5

_FIGURES: list[str] = []


def figure(name: str, seconds: float) -> None:
    """A measured figure, printed at the end (never asserted: these machines are shared)."""
    _FIGURES.append(f"{name}: {seconds:.1f}s")
    print(f"e2e figure: {_FIGURES[-1]}", file=sys.stderr, flush=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("figures (measured, not asserted)")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@dataclass
class Node:
    kubeconfig: str
    helm_bin: str
    operator_image: str
    standins_image: str
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *argv: str, check: bool = True, timeout: float = 300) -> str:
        return run_command(argv, env=self.env, check=check, timeout=timeout)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        return kubectl(self.kubeconfig, *args, check=check, timeout=timeout)

    def helm(self, *args: str) -> str:
        return self.run(self.helm_bin, *args, timeout=600)

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]]) -> None:
        items = manifest if isinstance(manifest, list) else [manifest]
        text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        kubectl(self.kubeconfig, "apply", "-f", "-", stdin=text)

    def service_url(self, namespace: str, name: str, port: int) -> str:
        """The Service's ClusterIP, reached from the host through kube-proxy's rules."""
        ip = self.kubectl("get", "svc", name, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}")
        return f"http://{ip}:{port}"


def _images() -> tuple[str, str]:
    result = subprocess.run(
        [str(ROOT / "hack" / "images"), "all"], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail("hack/images all failed (see its output above)")
    operator = result.stdout.strip().splitlines()[-1]
    standins = operator.replace("/match-list-change-detector:", "/mlcd-standins:")
    return operator, standins


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    try:
        local_node.preflight()
    except local_node.NodeError as exc:
        # A failure, never a skip: end-to-end tests that did not run have not passed.
        pytest.fail(f"make test-e2e: {exc}")
    already = local_node.NodeInfo.load()
    reuse = already is not None and local_node.healthy(already)
    started = time.monotonic()
    try:
        info = local_node.up()
    except (local_node.NodeError, local_cluster.ClusterError) as exc:
        pytest.fail(f"local node did not start: {exc}")
    if not reuse:
        figure("node bring-up (control plane + node, binaries cached)", time.monotonic() - started)
    started = time.monotonic()
    operator_image, standins_image = _images()
    figure("images built and loaded (base cached)", time.monotonic() - started)
    helm_bin = subprocess.run(
        [str(ROOT / "hack" / "tools"), "helm"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout.strip()
    env = {**os.environ, "KUBECONFIG": info.kubeconfig}
    handle = Node(info.kubeconfig, helm_bin, operator_image, standins_image, env)
    yield handle
    if not reuse and not os.environ.get("MLCD_E2E_KEEP"):
        local_node.down(quiet=True)
