"""`kubectl matchlist` (the kubectl-matchlist console script) against the real API server and a
running operator: run and wait for that very run, history, list, import of a seed state file,
and failures with exit codes."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from controller.adapters.snapshots import DATA_KEY
from controller.core.diff import Snapshot
from hack.local_cluster import ROOT
from tests.fakes.fogis.records import make_match, sample_matches
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
        # This checkout's code: the shared virtualenv's editable install may point at another.
        "PYTHONPATH": str(ROOT),
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


def _seed_file(path: Path) -> Path:
    """The seed service's previous_matches.json: the raw FOGIS list as a JSON array."""
    path.write_text(json.dumps(sample_matches()))
    return path


def _stored(cluster: Cluster, namespace: str, name: str) -> tuple[Snapshot, str, dict[str, str]]:
    """A snapshot ConfigMap's snapshot, owner uid and labels."""
    cm = cluster.core.read_namespaced_config_map(name, namespace)
    (owner,) = cm.metadata.owner_references
    text = gzip.decompress(base64.b64decode(cm.binary_data[DATA_KEY])).decode()
    return Snapshot.from_json(text), owner.uid, cm.metadata.labels


def test_import_of_a_seed_file_makes_the_first_run_report_what_changed_since(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    credentials: str,
    operator: Operator,
    tmp_path: Path,
) -> None:
    seed = _seed_file(tmp_path / "previous_matches.json")
    # After the seed's last run, one match moved (13:00 to 15:00).
    moved = make_match(6143002, on=date.today() + timedelta(days=5), avsparkstid="15:00")
    fogis.set_matches([moved if m["matchid"] == 6143002 else m for m in sample_matches()])
    spec = fogis_spec(fogis.base_url, credentials, "0 0 1 1 *", suspend=True)
    uid = cluster.create_watcher(namespace, "seeded", spec)["metadata"]["uid"]

    imported = kubectl_matchlist(cluster, "import", "seeded", "-n", namespace, "--file", str(seed))
    assert imported.returncode == 0, imported.stderr
    assert f"imported {seed} into {namespace}/seeded: 4 matches" in imported.stdout
    assert "revision 0" in imported.stdout
    assert "unsuspend it" in imported.stdout
    snapshot, owner, _ = _stored(cluster, namespace, "seeded-matchlist-snapshot")
    assert (len(snapshot.matches), owner) == (4, uid)

    cluster.patch_spec(namespace, "seeded", {"suspend": False})
    run = kubectl_matchlist(cluster, "run", "seeded", "-n", namespace, "--wait")
    assert run.returncode == 0, run.stderr
    assert "1 changes (0 new, 0 removed, 1 changed)" in run.stdout
    reasons = cluster.event_reasons(namespace, "seeded")
    assert "Baseline" not in reasons
    assert "BaselineReset" not in reasons


def test_import_refuses_an_existing_snapshot_unless_forced_and_seeds_the_peoples_too(
    cluster: Cluster, namespace: str, credentials: str, tmp_path: Path
) -> None:
    seed = _seed_file(tmp_path / "previous_matches.json")
    spec = fogis_spec(
        "http://127.0.0.1:9", credentials, suspend=True, notify={"secretRef": {"name": "people"}}
    )
    uid = cluster.create_watcher(namespace, "both", spec)["metadata"]["uid"]
    args = ("import", "both", "-n", namespace, "--file", str(seed))

    first = kubectl_matchlist(cluster, *args)
    assert first.returncode == 0, first.stderr
    webhook = _stored(cluster, namespace, "both-matchlist-snapshot")
    people = _stored(cluster, namespace, "both-matchlist-notified")
    # Owned and labelled as the operator's own saves are, so its first run takes them as its own.
    labels = {"app.kubernetes.io/managed-by": "match-list-change-detector",
              "matchlist.io/watcher": "both"}  # fmt: skip
    assert webhook[1:] == people[1:] == (uid, labels)
    assert webhook[0].matches == people[0].matches
    assert len(webhook[0].matches) == 4

    refused = kubectl_matchlist(cluster, *args)
    assert refused.returncode == 1
    assert f"{namespace}/both has a snapshot already" in refused.stderr
    assert "4 matches" in refused.stderr
    assert "--force" in refused.stderr

    # The service's two files: the people's state may lag behind the webhook's.
    seed.write_text(json.dumps(sample_matches()[:1]))
    notified = tmp_path / "previous_matches.notified.json"
    notified.write_text(json.dumps(sample_matches()[:2]))
    forced = kubectl_matchlist(cluster, *args, "--notified-file", str(notified), "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"replacing ConfigMap {namespace}/both-matchlist-snapshot (4 matches" in forced.stdout
    assert f"replacing ConfigMap {namespace}/both-matchlist-notified (4 matches" in forced.stdout
    assert f"into {namespace}/both: 1 matches" in forced.stdout
    assert f"people: ConfigMap both-matchlist-notified, {notified}: 2 matches" in forced.stdout
    assert len(_stored(cluster, namespace, "both-matchlist-snapshot")[0].matches) == 1
    assert len(_stored(cluster, namespace, "both-matchlist-notified")[0].matches) == 2


def test_import_refuses_a_file_it_cannot_use_and_writes_nothing(
    cluster: Cluster, namespace: str, credentials: str, tmp_path: Path
) -> None:
    cluster.create_watcher(namespace, "nofile", fogis_spec("http://127.0.0.1:9", credentials))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    cases = {
        tmp_path / "missing.json": "cannot read",
        garbage: "cannot import",
        binary: "not UTF-8 text",
        tmp_path: "cannot read",  # a directory
    }
    for path, expected in cases.items():
        result = kubectl_matchlist(
            cluster, "import", "nofile", "-n", namespace, "--file", str(path)
        )
        assert result.returncode == 1, (path, result.stderr)
        (line,) = result.stderr.splitlines()  # one line, no traceback
        assert expected in line, line
        assert str(path) in line, line
        assert "delete it" not in line, line  # the stored snapshot's advice, not the file's
    seed = _seed_file(tmp_path / "previous_matches.json")
    no_notify = kubectl_matchlist(
        cluster, "import", "nofile", "-n", namespace, "--file", str(seed),
        "--notified-file", str(seed),
    )  # fmt: skip
    assert no_notify.returncode == 1
    assert f"--notified-file: {namespace}/nofile has no spec.notify" in no_notify.stderr
    written = cluster.core.list_namespaced_config_map(
        namespace, label_selector="matchlist.io/watcher"
    )
    assert not written.items


def test_import_needs_only_the_rbac_its_help_names(
    cluster: Cluster, namespace: str, credentials: str, tmp_path: Path
) -> None:
    seed = _seed_file(tmp_path / "previous_matches.json")
    cluster.create_watcher(namespace, "rbac", fogis_spec("http://127.0.0.1:9", credentials))
    rules = {
        "importer": [
            {"apiGroups": ["matchlist.io"], "resources": ["matchwatchers"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]},
        ],
        "reader": [
            {"apiGroups": ["matchlist.io"], "resources": ["matchwatchers"], "verbs": ["get"]}
        ],
    }
    for account, role in rules.items():
        cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
        manifest = {"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": account, "namespace": namespace}, "rules": role},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": account, "namespace": namespace},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
             "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]},
        ]}  # fmt: skip
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))

    def import_as(account: str) -> subprocess.CompletedProcess[str]:
        kubeconfig = cluster.service_account_kubeconfig(
            account, namespace, tmp_path / f"{account}.json"
        )
        return kubectl_matchlist(
            cluster, "--kubeconfig", kubeconfig, "import", "rbac", "-n", namespace,
            "--file", str(seed),
        )  # fmt: skip

    denied = import_as("reader")
    assert denied.returncode == 2
    (line,) = denied.stderr.splitlines()
    assert f"ConfigMap {namespace}/rbac-matchlist-snapshot: 403 Forbidden" in line, line
    allowed = import_as("importer")
    assert allowed.returncode == 0, allowed.stderr
    assert f"into {namespace}/rbac: 4 matches" in allowed.stdout
