"""`make demo`: the whole job on an embedded default, on this machine, in about a minute.

Starts the local control plane (building it the first time), installs the CRD and the chart's
RBAC from deploy/, starts a FOGIS-compatible demo source and a webhook receiver on 127.0.0.1,
runs the operator *as the chart's ServiceAccount* (so the demo also proves RBAC is enough),
creates a MatchWatcher with its Secrets, records a baseline with `kubectl annotate`, changes a
match in the demo source, triggers again, and prints the delivery and the new status.
Then it cleans up, or with KEEP=1 leaves everything running and says how to play with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from hack import local_cluster
from tests.fakes.fogis.records import make_match, make_referee

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".cache" / "demo"
NAMESPACE = "referees"
OPERATOR_NAMESPACE = "match-list-change-detector"
SERVICE_ACCOUNT = "match-list-change-detector"
# Demo-only credentials of the embedded FOGIS stand-in; never real ones.
USER, PASSWORD, HMAC_KEY = "anna.demo", "demo-password", "demo-hmac-key"
T = TypeVar("T")


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def kubectl(*args: str, kubeconfig: str, stdin: str | None = None, echo: bool = True) -> str:
    if echo:
        print(f"$ kubectl {' '.join(args)}", flush=True)
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"demo: kubectl {' '.join(args)} failed:\n{result.stderr}")
    if echo and result.stdout.strip():
        print(result.stdout.rstrip(), flush=True)
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"demo: timed out waiting for {what}; logs are in {STATE}")


def http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    return json.loads(text) if text else None


def spawn(name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = (STATE / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def demo_matches(today: date) -> list[dict[str, Any]]:
    return [
        make_match(6143001, on=today + timedelta(days=2), avsparkstid="18:30"),
        make_match(6143002, on=today + timedelta(days=5), avsparkstid="13:00"),
        make_match(6143003, on=today + timedelta(days=9)),
    ]


def service_account_kubeconfig(admin: str, server: str) -> Path:
    """A kubeconfig holding a token of the chart's ServiceAccount (TokenRequest API)."""
    token = kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=2h",
        kubeconfig=admin, echo=False,
    ).strip()  # fmt: skip
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": server,
                    "certificate-authority": str(ROOT / ".cache/local-cluster/certs/apiserver.crt"),
                },
            }
        ],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": SERVICE_ACCOUNT}}],
        "current-context": "sa",
    }
    path = STATE / "operator-kubeconfig"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def watcher_yaml(fogis_url: str, hook_url: str) -> str:
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: anna-fogis, namespace: {NAMESPACE}}}
stringData: {{username: {USER}, password: {PASSWORD}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: anna-hook, namespace: {NAMESPACE}}}
stringData:
  hmacKey: {HMAC_KEY}
  headers: "X-Team: referees"
---
apiVersion: matchlist.io/v1alpha1
kind: MatchWatcher
metadata: {{name: anna, namespace: {NAMESPACE}}}
spec:
  schedule: "0 * * * *"
  timeZone: Europe/Stockholm
  startingDeadlineSeconds: 600
  source:
    fogis:
      baseUrl: {fogis_url}
      credentialsSecretRef: {{name: anna-fogis}}
  webhook:
    url: {hook_url}
    secretRef: {{name: anna-hook}}
"""


def trigger_and_wait(kubeconfig: str, value: str) -> dict[str, Any]:
    kubectl(
        "annotate", "mw", "anna", "-n", NAMESPACE, f"matchlist.io/trigger={value}", "--overwrite",
        kubeconfig=kubeconfig,
    )  # fmt: skip

    def handled() -> dict[str, Any] | None:
        out = kubectl("get", "mw", "anna", "-n", NAMESPACE, "-o", "json",
                      kubeconfig=kubeconfig, echo=False)  # fmt: skip
        status: dict[str, Any] = json.loads(out).get("status") or {}
        return status if status.get("lastHandledTrigger") == value else None

    return wait_for(f"the run for trigger {value}", handled)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


class Demo:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.today = datetime.now(UTC).date()
        self.fogis_port, self.hook_port, self.health_port, self.metrics_port = (
            free_port() for _ in range(4)
        )
        self.fogis_url = f"http://127.0.0.1:{self.fogis_port}/mdk"
        self.hook_url = f"http://127.0.0.1:{self.hook_port}/webhook"
        self.control = f"http://127.0.0.1:{self.fogis_port}/_control"
        self.matches_file = STATE / "matches.json"
        self.admin = ""

    def cluster(self) -> local_cluster.ClusterInfo:
        say("Starting the local control plane (etcd + kube-apiserver on 127.0.0.1)")
        info = local_cluster.up()
        self.admin = info.kubeconfig
        print(f"kube-apiserver {info.version} at {info.server}")
        say("Installing the CRD, namespace and RBAC from deploy/ (rendered from the Helm chart)")
        for manifest in ("00-namespace.yaml", "01-crd-matchwatchers.yaml", "02-rbac.yaml"):
            kubectl("apply", "-f", str(ROOT / "deploy" / manifest), kubeconfig=self.admin)
        kubectl("wait", "--for=condition=Established", "crd/matchwatchers.matchlist.io",
                "--timeout=30s", kubeconfig=self.admin)  # fmt: skip
        return info

    def fakes(self) -> None:
        say("Starting the demo FOGIS and a webhook receiver on 127.0.0.1")
        self.matches_file.write_text(json.dumps(demo_matches(self.today)))
        self.procs.append(spawn("fogis", [
            "-m", "tests.fakes.fogis", "--port", str(self.fogis_port), "--user", USER,
            "--password", PASSWORD, "--matches", str(self.matches_file),
        ]))  # fmt: skip
        self.procs.append(spawn("webhook", [
            "-m", "tests.fakes.receiver", "--port", str(self.hook_port), "--hmac-key", HMAC_KEY,
        ]))  # fmt: skip
        wait_for("the demo FOGIS", lambda: _answers(f"{self.control}/state"))
        wait_for("the webhook receiver", lambda: "listening" in _log("webhook"))
        print(f"FOGIS stand-in: {self.fogis_url}\nwebhook receiver: {self.hook_url}")

    def operator(self, info: local_cluster.ClusterInfo) -> None:
        say("Starting the operator as the chart's ServiceAccount (proves its RBAC is enough)")
        sa_config = service_account_kubeconfig(self.admin, info.server)
        self.procs.append(
            spawn(
                "operator",
                ["-m", "controller", "operator", "--all-namespaces"],
                env={
                    "KUBECONFIG": str(sa_config),
                    "MLCD_HEALTH_HOST": "127.0.0.1",
                    "MLCD_HEALTH_PORT": str(self.health_port),
                    "MLCD_METRICS_HOST": "127.0.0.1",
                    "MLCD_METRICS_PORT": str(self.metrics_port),
                },
            )
        )
        health = f"http://127.0.0.1:{self.health_port}/healthz"
        wait_for("the operator's /healthz", lambda: _answers(health))
        print(f"operator log: {STATE / 'operator.log'}")

    def scenario(self) -> None:
        admin = self.admin
        say("Creating a MatchWatcher and its Secrets")
        if not _exists(admin, "namespace", NAMESPACE):
            kubectl("create", "namespace", NAMESPACE, kubeconfig=admin)
        kubectl("apply", "-f", "-", kubeconfig=admin,
                stdin=watcher_yaml(self.fogis_url, self.hook_url))  # fmt: skip
        wait_for("NEXT RUN", lambda: _status(admin).get("nextExecutionTime"))
        kubectl("get", "mw", "-n", NAMESPACE, kubeconfig=admin)

        say("First run (manual trigger): records the baseline, notifies nobody")
        trigger_and_wait(admin, "baseline")
        kubectl("get", "mw", "-n", NAMESPACE, kubeconfig=admin)

        say("The referee's list changes in FOGIS: one kick-off moves, one match is cancelled, "
            "an assistant referee is swapped, a new match is assigned")  # fmt: skip
        changed = demo_matches(self.today)
        changed[0]["avsparkstid"] = "19:45"
        changed[1]["installd"] = True
        changed[2]["domaruppdraglista"][1] = make_referee(7777, "Sara Ny", "AD1")
        changed.append(make_match(6143099, on=self.today + timedelta(days=12)))
        http("PUT", f"{self.control}/matches", changed)

        say("kubectl annotate: run now")
        status = trigger_and_wait(admin, "after-change")
        wait_for("the delivery", lambda: "x-matchlist-delivery" in _log("webhook"))
        time.sleep(0.3)  # let the receiver finish printing the body

        say("What the webhook received (signature checked with the hmacKey)")
        print(_log("webhook").split("\n", 1)[-1])
        say("The watcher's status now")
        print(json.dumps(status, indent=2))
        kubectl("get", "mw", "-n", NAMESPACE, kubeconfig=admin)
        kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                "involvedObject.name=anna", kubeconfig=admin)  # fmt: skip

    def keep(self) -> None:
        say("Left running (KEEP=1). Try:")
        print(f"""  export KUBECONFIG={self.admin}
  kubectl get mw -A
  kubectl annotate mw anna -n {NAMESPACE} matchlist.io/trigger="$(date -u +%FT%TZ)" --overwrite
  curl -s -X PUT {self.control}/matches -d @{self.matches_file}   # change the served list
  curl -s -X POST {self.control}/fail -d '{{"kind": "500"}}'    # make FOGIS fail once
  curl -s http://127.0.0.1:{self.metrics_port}/metrics | grep ^matchwatcher
  tail -f {STATE}/webhook.log {STATE}/operator.log
Stop everything with: make demo-down""")
        (STATE / "pids").write_text(" ".join(str(p.pid) for p in self.procs))

    def cleanup(self, cluster_was_running: bool) -> None:
        say("Cleaning up (KEEP=1 leaves it running)")
        kubectl("delete", "mw", "anna", "-n", NAMESPACE, "--wait=true", "--timeout=30s",
                kubeconfig=self.admin)  # fmt: skip
        stop(self.procs)
        if not cluster_was_running:
            local_cluster.down()


def main() -> int:
    keep = os.environ.get("KEEP", "") not in ("", "0")
    STATE.mkdir(parents=True, exist_ok=True)
    previous = local_cluster.ClusterInfo.load()
    was_running = previous is not None and local_cluster.healthy(previous)
    demo = Demo()
    info = demo.cluster()
    try:
        demo.fakes()
        demo.operator(info)
        demo.scenario()
    except BaseException:
        print(f"\ndemo failed; logs in {STATE}", file=sys.stderr)
        stop(demo.procs)
        raise
    if keep:
        demo.keep()
    else:
        demo.cleanup(was_running)
    return 0


def _log(name: str) -> str:
    path = STATE / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
            return True
    except OSError:
        return False


def _exists(kubeconfig: str, kind: str, name: str) -> bool:
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "get", kind, name],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _status(kubeconfig: str) -> dict[str, Any]:
    out = kubectl("get", "mw", "anna", "-n", NAMESPACE, "-o", "json", kubeconfig=kubeconfig,
                  echo=False)  # fmt: skip
    status: dict[str, Any] = json.loads(out).get("status") or {}
    return status


def down() -> int:
    """`make demo-down`: stop what KEEP=1 left running, and the control plane."""
    pids = STATE / "pids"
    if pids.exists():
        for pid in pids.read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.killpg(int(pid), signal.SIGTERM)
        pids.unlink()
    local_cluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(down() if sys.argv[1:] == ["down"] else main())
