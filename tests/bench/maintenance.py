"""`python -m tests.bench.maintenance`: trigger latency behind receivers in maintenance.

`--maintained` watchers (as many as MLCD_MAX_CONCURRENT_RUNS, `--permits`, by default) have a
change to deliver to a receiver answering `503 Retry-After: 120`, so each of their runs waits
out its Retry-After; meanwhile `--triggers` healthy watchers are annotated one at a time, and
each trigger's latency (annotate -> status.lastHandledTrigger, seen on a watch) is printed. A run
that held its worker through the wait made that 14.1 s (4 permits, 4 receivers), against ~0.1 s
with nobody waiting. Figures only, nothing asserted; a few dozen watchers, whatever
BENCH_WATCHERS says, so `make bench` stays cheap.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from hack import local_cluster
from tests.bench.operator.figures import pct, spread
from tests.bench.operator.harness import OUT_DIR, PASSWORD, SECRET, USERNAME, delete_leftovers
from tests.bench.operator.observer import Observer
from tests.bench.operator.scenario import annotate, handled_after
from tests.fakes.fogis.records import make_match, sample_matches
from tests.fakes.fogis.server import FakeFogis
from tests.fakes.receiver import Reply, WebhookReceiver
from tests.support.cluster import Cluster
from tests.support.operator_process import Operator
from tests.support.watchers import fogis_spec

RETRY_AFTER = "120"  # the operator's default cap (MLCD_WEBHOOK_MAX_RETRY_AFTER_SECONDS)


class InMaintenance(WebhookReceiver):
    """Answers every delivery `503 Retry-After: 120`, as a receiver behind a maintenance page."""

    def _record(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        super()._record(method, path, headers, body)
        return Reply(503, headers={"Retry-After": RETRY_AFTER})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.maintenance", description=__doc__)
    parser.add_argument("--permits", type=int, default=4, help="MLCD_MAX_CONCURRENT_RUNS")
    parser.add_argument("--maintained", type=int, default=None, help="default: --permits")
    parser.add_argument("--triggers", type=int, default=20, help="healthy watchers triggered")
    args = parser.parse_args(argv)
    maintained = args.permits if args.maintained is None else args.maintained
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    already = local_cluster.ClusterInfo.load()
    reuse = already is not None and local_cluster.healthy(already)
    info = local_cluster.up()
    cluster = Cluster.connect(info.kubeconfig)
    try:
        cluster.install_crd()
        latencies = bench(cluster, info.kubeconfig, args.permits, maintained, args.triggers)
    finally:
        cluster.api.close()
        if not reuse:
            local_cluster.down(quiet=True)
    print(
        f"maintenance: {maintained} receivers answering 503 Retry-After: {RETRY_AFTER}, "
        f"{args.permits} permits; healthy triggers {spread(latencies)}"
    )
    p50, p99 = pct(latencies, 0.5), pct(latencies, 0.99)
    print(
        f"bench: maintenance_trigger_p50_ms={_ms(p50)} maintenance_trigger_p99_ms={_ms(p99)} "
        f"handled={len(latencies)}/{args.triggers}",
        flush=True,
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.1f}"


def bench(
    cluster: Cluster, kubeconfig: str, permits: int, maintained: int, triggers: int
) -> list[float]:
    namespace = cluster.new_namespace("maint")
    cluster.create_secret(namespace, SECRET, {"username": USERNAME, "password": PASSWORD})
    observer = Observer(cluster.api, namespace)
    observer.start()
    settings = {
        "MLCD_MAX_CONCURRENT_RUNS": str(permits),
        "MLCD_SHUTDOWN_TIMEOUT_SECONDS": "2",  # the waiting runs are cut at the end
        "MLCD_LOG_LEVEL": "INFO",
    }
    operator = Operator(kubeconfig, [namespace], OUT_DIR / "maintenance-operator.log", env=settings)
    try:
        with (
            FakeFogis(users={USERNAME: PASSWORD}, matches=sample_matches()) as fogis,
            InMaintenance() as receiver,
        ):
            operator.start()
            waiting = [f"maint{i:03d}" for i in range(maintained)]
            healthy = [f"ok{i:03d}" for i in range(triggers)]
            hook = {"url": receiver.url, "maxAttempts": 2}
            for name in waiting:
                cluster.create_watcher(
                    namespace, name, fogis_spec(fogis.base_url, SECRET, webhook=hook)
                )
            for name in healthy:
                cluster.create_watcher(namespace, name, fogis_spec(fogis.base_url, SECRET))
            # The baselines (a first run sends nothing), then a change for the waiting ones.
            for name in [*waiting, *healthy]:
                handled_after(
                    observer, f"base-{name}", annotate(cluster, namespace, name, f"base-{name}")
                )
            fogis.set_matches([*sample_matches(), make_match(7001)])
            for name in waiting:
                annotate(cluster, namespace, name, f"wait-{name}")
            receiver.wait_for(maintained, timeout=60)  # every one of them now waits 120 s
            latencies: list[float] = []
            for name in healthy:
                value = f"go-{name}"
                seconds = handled_after(observer, value, annotate(cluster, namespace, name, value))
                if seconds is not None:
                    latencies.append(seconds)
            operator.stop()
    finally:
        operator.stop()
        observer.stop()
        delete_leftovers(cluster, namespace)
    return latencies


if __name__ == "__main__":
    main()
