"""Shards: changing their number moves watchers between processes while slots are due, and no
slot runs twice and no pending change is lost (slot claims are compare-and-swap writes; pending
changes live in each watcher's snapshot ConfigMap). The processes overlap the way a rolling
update overlaps old and new pods."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from controller.core.sharding import shard_of
from tests.fakes.fogis.records import make_match, sample_matches
from tests.fakes.fogis.server import FakeFogis
from tests.fakes.receiver import WebhookReceiver
from tests.soak.report import parse_runs
from tests.support.cluster import Cluster
from tests.support.operator_process import Operator
from tests.support.payloads import delivery_check
from tests.support.waiting import wait_for
from tests.support.watchers import fogis_spec

EVERY_2S = "* * * * * */2"
WATCHERS = [f"w{n:02d}" for n in range(12)]
KEY = "shard-K3y"


def _shard(cluster: Cluster, namespace: str, log: Path, index: int, count: int) -> Operator:
    env = {"MLCD_SHARDS": str(count), "MLCD_SHARD_INDEX": str(index)}
    return Operator(cluster.kubeconfig, [namespace], log, env).start()


def _delivered(receiver: WebhookReceiver, match_id: int) -> set[str]:
    """Watchers that delivered a change of `match_id`."""
    found: set[str] = set()
    for request in receiver.requests:
        payload = request.payload
        if any(change["matchId"] == str(match_id) for change in payload["changes"]):
            found.add(payload["watcher"]["name"])
    return found


def _runs(cluster: Cluster, namespace: str) -> dict[str, int]:
    return {
        w["metadata"]["name"]: (w.get("status") or {}).get("executionCount", 0)
        for w in cluster.watchers(namespace)
    }


def _all_ran_since(cluster: Cluster, namespace: str, before: dict[str, int]) -> Callable[[], bool]:
    return lambda: all(n >= before[name] + 2 for name, n in _runs(cluster, namespace).items())


def test_resharding_1_to_3_and_back_runs_no_slot_twice_and_loses_no_change(
    cluster: Cluster, namespace: str, fogis: FakeFogis, credentials: str, tmp_path: Path
) -> None:
    with WebhookReceiver(hmac_key=KEY, check=delivery_check(KEY)) as receiver:
        cluster.create_secret(namespace, "hook", {"hmacKey": KEY})
        webhook = {"url": receiver.url, "secretRef": {"name": "hook"}, "timeoutSeconds": 2}
        spec = fogis_spec(fogis.base_url, credentials, EVERY_2S, webhook=webhook)
        started: list[Operator] = []

        def shard(index: int, count: int) -> Operator:
            # operator-<n>-<count>x<index>.log: parse_runs names the process by the part after
            # "operator-".
            log = tmp_path / f"operator-{len(started)}-{count}x{index}.log"
            started.append(_shard(cluster, namespace, log, index, count))
            return started[-1]

        try:
            one = shard(0, 1)
            uids = {
                name: cluster.create_watcher(namespace, name, spec)["metadata"]["uid"]
                for name in WATCHERS
            }
            wait_for("baselines", lambda: min(_runs(cluster, namespace).values()) >= 1, 60)

            # 1 -> 3: the three start while the one still runs, then the one stops.
            fogis.set_matches([*sample_matches(), make_match(7001)])
            three = [shard(i, 3) for i in range(3)]
            one.stop()
            before = _runs(cluster, namespace)
            wait_for("runs on three shards", _all_ran_since(cluster, namespace, before), 60)
            wait_for("7001 delivered", lambda: _delivered(receiver, 7001) == set(WATCHERS), 30)

            # 3 -> 1 the same way, with another change pending across the hand-over.
            fogis.set_matches([*sample_matches(), make_match(7001), make_match(7002)])
            shard(0, 1)
            for process in three:
                process.stop()
            before = _runs(cluster, namespace)
            wait_for("runs on one again", _all_ran_since(cluster, namespace, before), 60)
            wait_for("7002 delivered", lambda: _delivered(receiver, 7002) == set(WATCHERS), 30)
            for watcher in WATCHERS:
                cluster.delete_watcher(namespace, watcher)
        finally:
            for process in started:
                process.stop()

    runs = list(parse_runs(sorted(tmp_path.glob("operator-*.log"))))
    slots = Counter((run.watcher, run.slot) for run in runs if run.slot is not None)
    assert [key for key, times in slots.items() if times > 1] == []
    # While three shards ran alone, each ran only its own watchers.
    for run in runs:
        count, index = (int(n) for n in run.process.split("-")[1].split("x"))
        assert shard_of(uids[run.watcher], count) == index, f"{run.watcher} ran in {run.process}"
