"""`python -m tests.bench.operator`: set up, run the phases, print the report."""

from __future__ import annotations

import argparse
import os
import signal
import time
import uuid
from collections.abc import Sequence

from hack import local_cluster
from tests.bench.operator.figures import fmt_s
from tests.bench.operator.harness import (
    FOGIS_ARGS,
    OUT_DIR,
    PASSWORD,
    PROBE_DIR,
    SECRET,
    USERNAME,
    Options,
    Run,
    delete_leftovers,
    delete_watchers,
    operator_probe,
)
from tests.bench.operator.observer import Observer
from tests.bench.operator.peer_phase import peer_phase
from tests.bench.operator.phases import hashed_phase, restart_phase
from tests.bench.operator.procfs import Meter, listen_drops
from tests.bench.operator.report import Report, log
from tests.bench.operator.scenario import create_phase, idle_phase, slot_phase, trigger_phase
from tests.bench.operator.summary import add_ratios, summary_line
from tests.support.cluster import Cluster
from tests.support.fake_process import FakeProcess
from tests.support.operator_process import Operator


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.operator",
        description="Operator figures at scale (ARCHITECTURE.md section 9); no thresholds.",
    )
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--triggers", type=int, default=50, help="watchers triggered by hand")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument(
        "--lead",
        type=float,
        default=None,
        help="seconds from the start of creation to the first slot (default 15 + 0.03 s a watcher)",
    )
    parser.add_argument(
        "--gap",
        type=float,
        default=None,
        help="seconds between the two slots, rounded up to whole minutes (default 60, or "
        "0.12 s a watcher if more)",
    )
    parser.add_argument(
        "--kube-workers", type=int, default=None, help="MLCD_KUBE_WORKERS (default: the operator's)"
    )
    parser.add_argument("--create-threads", type=int, default=16)
    parser.add_argument(
        "--hashed-minutes",
        type=int,
        default=2,
        help="M of the hashed phase's `H/M * * * *` (60: production's `H * * * *` load, an hour)",
    )
    parser.add_argument(
        "--storm-triggers", type=int, default=20, help="triggers sent during each slot's runs"
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="operator processes, each with MLCD_SHARDS=K and MLCD_SHARD_INDEX=i",
    )
    parser.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="afterwards, the simplest kopf operator (tests/bench/peer/) on the same watchers",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="py-spy executable: profile the operator during each slot into .cache/bench/ "
        "(collapsed stacks for flamegraph tools; it costs the operator some CPU)",
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace the operator's allocations from the first watcher on (FRAMES deep) and print "
        "the biggest live sites when idle; slows the operator down, so its timings are no figures",
    )
    args = parser.parse_args(argv)
    n = args.watchers
    return Options(
        watchers=n,
        triggers=min(args.triggers, n),
        idle_seconds=args.idle_seconds,
        lead=args.lead if args.lead is not None else 15 + 0.03 * n,
        gap=args.gap if args.gap is not None else max(60.0, 0.12 * n),
        kube_workers=args.kube_workers,
        create_threads=args.create_threads,
        py_spy=args.py_spy,
        tracemalloc=args.tracemalloc,
        hashed_minutes=args.hashed_minutes,
        storm_triggers=args.storm_triggers,
        shards=max(1, args.shards),
        peer=args.peer,
    )


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    # Stopped by a signal, still clean up (a shell's background job ignores SIGINT otherwise).
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    already = local_cluster.ClusterInfo.load()
    reuse = already is not None and local_cluster.healthy(already)
    info = local_cluster.up()
    log(f"control plane {'reused' if reuse else 'started'} at {info.server}")
    cluster = Cluster.connect(info.kubeconfig, pool_size=options.create_threads + 2)
    try:
        cluster.install_crd()
        report, summary = bench(cluster, info, options)
        add_ratios(report, options.watchers, summary)
        report.print()
        print(summary_line(options.watchers, summary), flush=True)
    finally:
        cluster.api.close()
        if not reuse:
            local_cluster.down(quiet=True)


def sharded(operator: Operator, shards: int, index: int) -> Operator:
    if shards > 1:
        operator.extra_env |= {"MLCD_SHARDS": str(shards), "MLCD_SHARD_INDEX": str(index)}
    return operator


def start_all(operators: list[Operator]) -> None:
    for operator in operators:
        operator.start()


def bench(
    cluster: Cluster, info: local_cluster.ClusterInfo, options: Options
) -> tuple[Report, dict[str, float | None]]:
    n = options.watchers
    report = Report()
    namespace = cluster.new_namespace("bench")
    cluster.create_secret(namespace, SECRET, {"username": USERNAME, "password": PASSWORD})
    run_id = f"{n}-{uuid.uuid4().hex[:6]}"
    tasks_file = OUT_DIR / f"tasks-{run_id}.json"
    op_log = OUT_DIR / f"operator-{run_id}.log"
    env = {
        "MLCD_LOG_LEVEL": "INFO",  # production's level (the harness passes --verbose)
        "MLCD_FOGIS_TIMEOUT_SECONDS": "30",  # the default (the harness shortens it to 5)
        # Logins at FOGIS's default pace (5 a second) would make the first storm of 10,000 new
        # sessions last 33 minutes, by design; the fake takes any pace, the scheduler is measured.
        "MLCD_FOGIS_LOGINS_PER_SECOND": "1000",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROBE_DIR), os.environ.get("PYTHONPATH")])),
        "BENCH_TASKS_FILE": str(tasks_file),
    }
    if options.kube_workers is not None:
        env["MLCD_KUBE_WORKERS"] = str(options.kube_workers)
    if options.tracemalloc:
        env["BENCH_TRACEMALLOC"] = str(options.tracemalloc)
    report.section(
        f"setup: {n} watchers, kube workers {options.kube_workers or 'default (16)'}, "
        f"{os.cpu_count()} CPUs"
    )
    report.add("namespace, operator log", f"{namespace}, {op_log}")
    observer = Observer(cluster.api, namespace)
    observer.start()
    drops_before = listen_drops()
    fogis_log = OUT_DIR / f"fogis-{run_id}.log"
    operator = sharded(Operator(info.kubeconfig, [namespace], op_log, env=env), options.shards, 0)
    shards = [
        sharded(
            Operator(
                info.kubeconfig,
                [namespace],
                OUT_DIR / f"operator-{run_id}-shard{i}.log",
                env={**env, "BENCH_TASKS_FILE": str(OUT_DIR / f"tasks-{run_id}-shard{i}.json")},
            ),
            options.shards,
            i,
        )
        for i in range(1, options.shards)
    ]
    summary: dict[str, float | None] = {}
    try:
        with FakeProcess("tests.fakes.fogis", FOGIS_ARGS, fogis_log) as fogis:
            started = time.monotonic()
            start_all([operator, *shards])
            report.add("operator start to /healthz", fmt_s(time.monotonic() - started))
            pids = {"operator": operator.pid, "fogis": fogis.pid}
            pids |= {f"operator{i}": shard.pid for i, shard in enumerate(shards, start=1)}
            pids |= {"apiserver": info.apiserver_pid, "etcd": info.etcd_pid}
            run = Run(
                cluster=cluster,
                namespace=namespace,
                options=options,
                operator=operator,
                observer=observer,
                meter=Meter(pids),
                report=report,
                fogis_url=fogis.url,
                tasks_file=tasks_file,
                names=[f"w{i:05d}" for i in range(n)],
                run_id=run_id,
                labels=(
                    "operator",
                    *(f"operator{i}" for i in range(1, options.shards)),
                    "apiserver",
                    "etcd",
                    "fogis",
                    "bench",
                ),
                shards=shards,
                summary=summary,
            )
            time.sleep(2)
            run.memory("operator with 0 watchers")
            if options.tracemalloc:
                os.kill(run.pid, signal.SIGUSR2)  # the probe starts tracing: watchers from here on
            try:
                slots = create_phase(run)
                for index, slot in enumerate(slots, start=1):
                    slot_phase(run, index, slot)
                if options.triggers:
                    trigger_phase(run)
                idle_phase(run)
                hashed_phase(run)
                thaw(run)
                restart_phase(run)
                if options.peer:
                    for each in run.operators:
                        each.stop()  # the peer alone serves the watchers now
                    peer_phase(run, info.kubeconfig)
            finally:
                if operator.proc is not None:  # else delete_leftovers strips our finalizers
                    delete_watchers(cluster, namespace, observer, report)
    finally:
        for each in [operator, *shards]:
            each.stop()  # also when it never became healthy
        observer.stop()
        delete_leftovers(cluster, namespace)
    report.section("machine")
    report.add("SYNs dropped, full accept queues", str(listen_drops() - drops_before))
    return report, summary


def thaw(run: Run) -> None:
    """What the operator's periodic thaw (controller/runtime/heap.py) would reclaim after the
    phases so far: the cycles that died while frozen, i.e. what freezing leaked until then."""
    document = operator_probe(run.pid, run.tasks_file, "thaw")
    thawed = (document or {}).get("thaw")
    if thawed:
        run.report.add(
            "heap thaw (unfreeze + full collection)",
            f"{thawed['collected']:,} objects reclaimed of {thawed['frozenBefore']:,} frozen, "
            f"took {fmt_s(thawed['seconds'])}",
        )


if __name__ == "__main__":
    main()
