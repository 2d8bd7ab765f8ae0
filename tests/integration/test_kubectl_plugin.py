"""`kubectl matchlist` (the kubectl-matchlist console script) against the real API server and a
running operator: run and wait for that very run, history, list, and failures with exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hack.local_cluster import ROOT
from tests.fakes.fogis.records import sample_matches
from tests.fakes.fogis.server import FakeFogis
from tests.support.cluster import Cluster
from tests.support.operator_process import Operator
from tests.support.watchers import fogis_spec

PLUGIN = Path(sys.executable).parent / "kubectl-matchlist"


def kubectl_matchlist(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """Through kubectl itself: it finds kubectl-matchlist on PATH, as it will for users."""
    env = {
        **os.environ,
        "KUBECONFIG": cluster.kubeconfig,
        "PATH": f"{PLUGIN.parent}:{os.environ['PATH']}",
    }
    return subprocess.run(
        ["kubectl", "matchlist", *args], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=120, check=False,
    )  # fmt: skip


def test_run_waits_for_its_own_run_and_history_lists_change_sets(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    cluster.create_watcher(namespace, "plug", fogis_spec(fogis.base_url, credentials, "0 0 1 1 *"))

    first = kubectl_matchlist(cluster, "run", "plug", "-n", namespace, "--wait", "--timeout", "60")
    assert first.returncode == 0, first.stderr
    assert "recorded a baseline" in first.stdout

    fogis.set_matches(sample_matches()[1:])  # one match gone: a change set
    second = kubectl_matchlist(cluster, "run", "plug", "-n", namespace, "--wait")
    assert second.returncode == 0, second.stderr
    assert "1 changes (0 new, 1 removed, 0 changed)" in second.stdout

    history = kubectl_matchlist(cluster, "history", "plug", "-n", namespace)
    assert history.returncode == 0, history.stderr
    header, row = history.stdout.splitlines()
    assert header.split()[:3] == ["TIME", "TRIGGER", "NEW"]
    assert row.split()[1:6] == ["manual", "0", "1", "0", "yes"]
    assert "removed" in row

    listing = kubectl_matchlist(cluster, "list", "-n", namespace)
    assert listing.returncode == 0, listing.stderr
    assert any(line.split()[:4] == [namespace, "plug", "True", "Succeeded"]
               for line in listing.stdout.splitlines())  # fmt: skip


def test_a_failed_run_exits_1_and_a_missing_watcher_2(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    cluster.create_watcher(namespace, "broken", fogis_spec(fogis.base_url, "no-such-secret"))
    failed = kubectl_matchlist(cluster, "run", "broken", "-n", namespace, "--wait")
    assert failed.returncode == 1
    assert "Failed: SecretNotFound" in failed.stdout

    missing = kubectl_matchlist(cluster, "run", "nobody", "-n", namespace, "--wait")
    assert missing.returncode == 2
    assert f"MatchWatcher {namespace}/nobody: not found" in missing.stderr


def test_a_trigger_on_an_invalid_schedule_exits_1_with_the_reason(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, operator: Operator
) -> None:
    cluster.create_watcher(
        namespace, "hour25", fogis_spec(fogis.base_url, credentials, "0 25 * * *")
    )
    # Twice: the first trigger may come with the spec's first sight, the second comes after
    # the problem was reported; each is answered with the reason, nothing runs.
    for _ in range(2):
        failed = kubectl_matchlist(
            cluster, "run", "hour25", "-n", namespace, "--wait", "--timeout", "30"
        )
        assert failed.returncode == 1, failed.stderr
        assert (
            "Failed: InvalidSchedule: schedule '0 25 * * *' is not a valid cron expression"
            in failed.stdout
        )
    status = cluster.status(namespace, "hour25")
    assert "executionCount" not in status
