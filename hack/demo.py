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
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hack import local_cluster
from hack.local_cluster import ROOT
from tests.fakes.fogis.records import make_match, make_referee
from tests.support.cluster import CRD, Cluster, trigger_args
from tests.support.fake_process import FakeProcess
from tests.support.net import http
from tests.support.operator_process import Operator
from tests.support.waiting import wait_for

STATE = ROOT / ".cache" / "demo"
NAMESPACE = "referees"
OPERATOR_NAMESPACE = "match-list-change-detector"
SERVICE_ACCOUNT = "match-list-change-detector"
# Demo-only credentials of the embedded FOGIS stand-in; never real ones.
USER, PASSWORD, HMAC_KEY = "anna.demo", "demo-password", "demo-hmac-key"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(cluster: Cluster, *args: str, stdin: str | None = None) -> str:
    """kubectl as a reader would type it, with its output."""
    print(f"$ kubectl {' '.join(args)}", flush=True)
    out = cluster.kubectl(*args, stdin=stdin)
    if out.strip():
        print(out.rstrip(), flush=True)
    return out


def demo_matches(today: date) -> list[dict[str, Any]]:
    return [
        make_match(6143001, on=today + timedelta(days=2), avsparkstid="18:30"),
        make_match(6143002, on=today + timedelta(days=5), avsparkstid="13:00"),
        make_match(6143003, on=today + timedelta(days=9)),
    ]


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


def trigger_and_wait(cluster: Cluster, value: str) -> dict[str, Any]:
    show(cluster, *trigger_args(NAMESPACE, "anna", value))
    return cluster.wait_status(
        NAMESPACE,
        "anna",
        f"the run for trigger {value}",
        lambda status: status.get("lastHandledTrigger") == value,
        timeout=30,
    )


class Demo:
    def __init__(self) -> None:
        self.today = datetime.now(UTC).date()
        self.matches_file = STATE / "matches.json"
        self.fogis = FakeProcess(
            "tests.fakes.fogis",
            ["--user", USER, "--password", PASSWORD, "--matches", str(self.matches_file)],
            STATE / "fogis.log",
            detach=True,  # KEEP=1 leaves it running
        )
        self.hook = FakeProcess(
            "tests.fakes.receiver", ["--hmac-key", HMAC_KEY], STATE / "webhook.log", detach=True
        )
        self.operator: Operator | None = None
        self.cluster: Cluster | None = None

    @property
    def control(self) -> str:
        return f"{self.fogis.url.removesuffix('/mdk')}/_control"

    def start_cluster(self) -> Cluster:
        say("Starting the local control plane (etcd + kube-apiserver on 127.0.0.1)")
        info = local_cluster.up()
        print(f"kube-apiserver {info.version} at {info.server}")
        self.cluster = cluster = Cluster.connect(info.kubeconfig)
        say("Installing the CRD, namespace and RBAC from deploy/ (rendered from the Helm chart)")
        for manifest in ("00-namespace.yaml", "01-crd-matchwatchers.yaml", "02-rbac.yaml"):
            show(cluster, "apply", "-f", str(ROOT / "deploy" / manifest))
        show(cluster, "wait", "--for=condition=Established", CRD, "--timeout=30s")
        return cluster

    def fakes(self) -> None:
        say("Starting the demo FOGIS and a webhook receiver on 127.0.0.1")
        self.matches_file.write_text(json.dumps(demo_matches(self.today)))
        self.fogis.start()
        self.hook.start()
        print(f"FOGIS stand-in: {self.fogis.url}\nwebhook receiver: {self.hook.url}")

    def start_operator(self, cluster: Cluster) -> Operator:
        say("Starting the operator as the chart's ServiceAccount (proves its RBAC is enough)")
        kubeconfig = cluster.service_account_kubeconfig(
            SERVICE_ACCOUNT, OPERATOR_NAMESPACE, STATE / "operator-kubeconfig", duration="2h"
        )
        log = STATE / "operator.log"
        log.unlink(missing_ok=True)
        # As users run it: every namespace, no test hooks, INFO logs; outlives us with KEEP=1.
        self.operator = Operator(kubeconfig, [], log, settings={}, verbose=False, detach=True)
        self.operator.start()
        print(f"operator log: {log}")
        return self.operator

    def scenario(self, cluster: Cluster) -> None:
        say("Creating a MatchWatcher and its Secrets")
        if not cluster.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found"):
            show(cluster, "create", "namespace", NAMESPACE)
        show(cluster, "apply", "-f", "-", stdin=watcher_yaml(self.fogis.url, self.hook.url))
        cluster.wait_status(
            NAMESPACE, "anna", "NEXT RUN", lambda s: s.get("nextExecutionTime"), timeout=30
        )
        show(cluster, "get", "mw", "-n", NAMESPACE)

        say("First run (manual trigger): records the baseline, notifies nobody")
        trigger_and_wait(cluster, "baseline")
        show(cluster, "get", "mw", "-n", NAMESPACE)

        say("The referee's list changes in FOGIS: one kick-off moves, one match is cancelled, "
            "an assistant referee is swapped, a new match is assigned")  # fmt: skip
        changed = demo_matches(self.today)
        changed[0]["avsparkstid"] = "19:45"
        changed[1]["installd"] = True
        changed[2]["domaruppdraglista"][1] = make_referee(7777, "Sara Ny", "AD1")
        changed.append(make_match(6143099, on=self.today + timedelta(days=12)))
        http("PUT", f"{self.control}/matches", changed)

        say("kubectl annotate: run now")
        status = trigger_and_wait(cluster, "after-change")
        wait_for("the delivery", lambda: "x-matchlist-delivery" in self.hook.log(), timeout=30)
        time.sleep(0.3)  # let the receiver finish printing the body

        say("What the webhook received (signature checked with the hmacKey)")
        print(self.hook.log().split("\n", 1)[-1])
        say("The watcher's status now")
        print(json.dumps(status, indent=2))
        show(cluster, "get", "mw", "-n", NAMESPACE)
        show(cluster, "get", "events", "-n", NAMESPACE, "--field-selector",
             "involvedObject.name=anna")  # fmt: skip

    def keep(self, cluster: Cluster, operator: Operator) -> None:
        say("Left running (KEEP=1). Try:")
        print(f"""  export KUBECONFIG={cluster.kubeconfig}
  kubectl get mw -A
  kubectl annotate mw anna -n {NAMESPACE} matchlist.io/trigger="$(date -u +%FT%TZ)" --overwrite
  curl -s -X PUT {self.control}/matches -d @{self.matches_file}   # change the served list
  curl -s -X POST {self.control}/fail -d '{{"kind": "500"}}'    # make FOGIS fail once
  curl -s {operator.metrics_url} | grep ^matchwatcher
  tail -f {STATE}/webhook.log {STATE}/operator.log
Stop everything with: make demo-down""")
        pids = (operator.pid, self.fogis.pid, self.hook.pid)
        (STATE / "pids").write_text(" ".join(map(str, pids)))

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop(timeout=30)
        self.fogis.stop()
        self.hook.stop()

    def cleanup(self, cluster: Cluster, cluster_was_running: bool) -> None:
        say("Cleaning up (KEEP=1 leaves it running)")
        show(cluster, "delete", "mw", "anna", "-n", NAMESPACE, "--wait=true", "--timeout=30s")
        self.stop()
        cluster.api.close()
        if not cluster_was_running:
            local_cluster.down()


def main() -> int:
    keep = os.environ.get("KEEP", "") not in ("", "0")
    STATE.mkdir(parents=True, exist_ok=True)
    previous = local_cluster.ClusterInfo.load()
    was_running = previous is not None and local_cluster.healthy(previous)
    demo = Demo()
    cluster = demo.start_cluster()
    try:
        demo.fakes()
        operator = demo.start_operator(cluster)
        demo.scenario(cluster)
    except BaseException:
        print(f"\ndemo failed; logs in {STATE}", file=sys.stderr)
        demo.stop()
        raise
    if keep:
        demo.keep(cluster, operator)
    else:
        demo.cleanup(cluster, was_running)
    return 0


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
