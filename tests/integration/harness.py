"""Helpers for tests against the real local control plane: the operator as a subprocess,
MatchWatchers and Secrets through the real API, and polling with deadlines (no fixed sleeps
where a condition can be awaited)."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "matchlist.io", "v1alpha1", "matchwatchers"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T], timeout: float = 20.0, interval: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Cluster:
    """Typed access to the objects the tests touch."""

    def __init__(self, api: client.ApiClient, kubeconfig: str) -> None:
        self.api = api
        self.kubeconfig = kubeconfig
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def kubectl(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

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
        self.kubectl(
            "annotate",
            "-n",
            namespace,
            f"mw/{name}",
            f"matchlist.io/trigger={value}",
            "--overwrite",
        )

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


def ready(status: Mapping[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)


def http_get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            text: str = response.read().decode()
            return text
    except OSError:
        return None


class Operator:
    """`python -m controller operator` as a subprocess, scoped to the given namespaces."""

    def __init__(
        self,
        kubeconfig: str,
        namespaces: list[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log_path = log_path
        self.extra_env = dict(env or {})
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    def start(self) -> Operator:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MLCD_")},
            "KUBECONFIG": self.kubeconfig,
            "MLCD_HEALTH_HOST": "127.0.0.1",
            "MLCD_HEALTH_PORT": str(self.health_port),
            "MLCD_METRICS_HOST": "127.0.0.1",
            "MLCD_METRICS_PORT": str(self.metrics_port),
            # Test hook (documented in README): 6-field cron with seconds, so runs come fast.
            "MLCD_ALLOW_SECONDS_SCHEDULES": "true",
            "MLCD_WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
            "MLCD_WEBHOOK_BACKOFF_MAX_SECONDS": "0.2",
            "MLCD_FOGIS_TIMEOUT_SECONDS": "5",
            "MLCD_SHUTDOWN_TIMEOUT_SECONDS": "20",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        args = [f"--namespace={ns}" for ns in self.namespaces]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "operator", "--verbose", *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for("operator /healthz", self._healthy, timeout=30)
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"operator exited with {self.proc.returncode}:\n{self.logs()[-3000:]}"
            )
        return http_get(self.health_url) is not None

    def health(self) -> dict[str, Any]:
        text = http_get(self.health_url)
        assert text is not None, "no /healthz answer"
        document: dict[str, Any] = json.loads(text)
        return document

    def metrics(self) -> str:
        return http_get(self.metrics_url) or ""

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def metric_value(text: str, name: str, labels: Mapping[str, str]) -> float | None:
    """The value of one series in Prometheus text format, or None when it is absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return None


@contextlib.contextmanager
def running(operator: Operator) -> Iterator[Operator]:
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def fogis_spec(
    base_url: str, secret: str, schedule: str = "@yearly", **extra: object
) -> dict[str, object]:
    """A MatchWatcher spec pointing at a (fake) FOGIS."""
    return {
        "schedule": schedule,
        "source": {"fogis": {"baseUrl": base_url, "credentialsSecretRef": {"name": secret}}},
        **extra,
    }


# --- manual runs, snapshot ConfigMaps and Events (detection and webhook tests) ---------------

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


def events_with(cluster: Cluster, namespace: str, name: str, reason: str) -> list[Any]:
    return [e for e in cluster.events(namespace, name) if e.reason == reason]
