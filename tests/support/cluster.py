"""`Cluster`: the API server as the tests, the benchmark and the demo touch it."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from hack.local_cluster import ROOT
from tests.support.commands import kubectl
from tests.support.waiting import wait_for
from tests.support.watchers import GROUP, PLURAL, VERSION

CRD = "crd/matchwatchers.matchlist.io"


class Cluster:
    """Typed access to the objects the tests touch."""

    def __init__(self, api: client.ApiClient, kubeconfig: str) -> None:
        self.api = api
        self.kubeconfig = kubeconfig
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    def connect(cls, kubeconfig: str, pool_size: int | None = None) -> Cluster:
        """A client of the kubeconfig's cluster; `pool_size` connections for threaded callers.
        Close it with `cluster.api.close()`."""
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        if pool_size is not None:
            configuration.connection_pool_maxsize = pool_size
        return cls(client.ApiClient(configuration), kubeconfig)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return kubectl(self.kubeconfig, *args, stdin=stdin, check=check)

    def install_crd(self) -> None:
        """The CRD from deploy/ applied for real, and established."""
        self.kubectl("apply", "-f", str(ROOT / "deploy" / "crds"))
        self.kubectl("wait", "--for=condition=Established", CRD, "--timeout=30s")

    def service_account_kubeconfig(
        self, account: str, namespace: str, path: Path, duration: str = "1h"
    ) -> str:
        """A copy of this kubeconfig that authenticates as the ServiceAccount (TokenRequest)."""
        token = self.kubectl(
            "create", "token", account, "-n", namespace, f"--duration={duration}"
        ).strip()
        document = json.loads(Path(self.kubeconfig).read_text())  # hack/local_cluster writes JSON
        (cluster,) = document["clusters"]
        document["users"] = [{"name": account, "user": {"token": token}}]
        document["contexts"] = [
            {"name": "sa", "context": {"cluster": cluster["name"], "user": account}}
        ]
        document["current-context"] = "sa"
        path.write_text(json.dumps(document))
        path.chmod(0o600)
        return str(path)

    def new_namespace(self, prefix: str = "t") -> str:
        # Namespaces are never deleted: without kube-controller-manager they would only hang in
        # Terminating. The whole control plane is thrown away after the session instead.
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": name}})
        return name

    def create_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        body = {"metadata": {"name": name}, "stringData": dict(data)}
        try:
            self.core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(name, namespace, body)

    def create_watcher(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MatchWatcher",
            "metadata": {"name": name},
            "spec": dict(spec),
        }
        obj: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )
        return obj

    def watchers(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL
        )["items"]
        return items

    def watcher(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        return obj

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.watcher(namespace, name).get("status") or {}
        return status

    def wait_status(
        self,
        namespace: str,
        name: str,
        what: str,
        predicate: Callable[[dict[str, Any]], object],
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        """Poll the watcher's status until `predicate(status)` holds; return that status."""

        def probe() -> dict[str, Any] | None:
            status = self.status(namespace, name)
            return status if predicate(status) else None

        found: dict[str, Any] | None = wait_for(f"{namespace}/{name}: {what}", probe, timeout)
        assert found is not None
        return found

    def patch_spec(self, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": dict(spec)}
        )

    def trigger(self, namespace: str, name: str, value: str) -> None:
        self.kubectl(*trigger_args(namespace, name, value))

    def events(self, namespace: str, name: str) -> list[Any]:
        items = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return sorted(items, key=lambda e: (e.last_timestamp or e.event_time or 0, e.metadata.name))

    def event_reasons(self, namespace: str, name: str) -> list[str]:
        return [e.reason for e in self.events(namespace, name)]

    def exists(self, namespace: str, name: str) -> bool:
        try:
            self.watcher(namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def wait_event(self, namespace: str, name: str, reason: str, timeout: float = 10.0) -> Any:
        """Events are posted asynchronously (after the status patch): wait for one."""

        def probe() -> Any:
            return next((e for e in self.events(namespace, name) if e.reason == reason), None)

        return wait_for(f"{reason} event of {namespace}/{name}", probe, timeout)

    def delete_watcher(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def force_delete_watcher(self, namespace: str, name: str) -> None:
        """Delete without the operator: strip the finalizer so the object goes away."""
        with contextlib.suppress(ApiException):
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"finalizers": None}}
            )
        self.delete_watcher(namespace, name)


def trigger_args(namespace: str, name: str, value: str) -> tuple[str, ...]:
    """`kubectl annotate` arguments of a manual run, as the README shows them."""
    return ("annotate", "mw", name, "-n", namespace, f"matchlist.io/trigger={value}", "--overwrite")
