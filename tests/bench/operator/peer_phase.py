"""The peer (tests/bench/peer/daemon_peer.py) on the same watchers, after ours has stopped:
NEXT RUN shown, idle memory and CPU, and one slot for all (logins and fetches against the same
fake FOGIS) with its start lag read from the status the peer writes."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from controller.core.report import rfc3339
from tests.bench.operator.figures import fmt_s, pct, spread
from tests.bench.operator.harness import (
    OUT_DIR,
    PROBE_DIR,
    Run,
    operator_probe,
    patch_all,
    sleep_until,
    wall_to_monotonic,
)
from tests.bench.operator.procfs import Meter, Phase, mib, proc_status
from tests.bench.operator.scenario import fogis_peak
from tests.bench.peer.process import PeerOperator

LABELS = ("peer", "apiserver", "etcd", "fogis", "bench")


def peer_phase(run: Run, kubeconfig: str) -> None:
    report, observer, n = run.report, run.observer, run.options.watchers
    report.section(f"peer: the simplest kopf operator (a daemon per watcher), same {n} watchers")
    lead = 40 + 0.02 * n + run.options.idle_seconds
    slot = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=round(lead))
    expression = f"{slot.minute} {slot.hour} {slot.day} {slot.month} * {slot.second}"
    patch_all(run.cluster, run.namespace, run.names, {"spec": {"schedule": expression}})
    with observer.cond:
        observer.expect_next = rfc3339(slot)
        observer.seen = {}
    tasks_file = OUT_DIR / f"peer-tasks-{run.run_id}.json"
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROBE_DIR), os.environ.get("PYTHONPATH")])),
        "BENCH_TASKS_FILE": str(tasks_file),
    }
    log = OUT_DIR / f"peer-{run.run_id}.log"
    peer = PeerOperator(kubeconfig, run.namespace, log, env)
    report.add("peer log, slot", f"{log}, {rfc3339(slot)} ({expression!r})")
    began = time.monotonic()
    peer.start()
    try:
        pids = {k: v for k, v in run.meter.pids.items() if not k.startswith("operator")}
        meter = Meter({**pids, "peer": peer.pid})
        slot_mono = wall_to_monotonic(slot)
        shown = observer.wait(lambda: len(observer.seen) >= n, slot_mono - 5)
        with observer.cond:
            times = [t - began for t in observer.seen.values()]
        report.add(
            "NEXT RUN shown (from the start)",
            f"{len(times)} of {n}{'' if shown else ' (NOT ALL before the slot)'}; {spread(times)}",
        )
        observer.settle(3.0, max(0.0, slot_mono - time.monotonic() - 8))
        operator_probe(peer.pid, tasks_file, "pause")  # as for ours: not in the idle CPU
        idle = Phase("peer idle", meter.read())
        time.sleep(max(1.0, min(run.options.idle_seconds, slot_mono - time.monotonic() - 8)))
        idle.end = meter.read()
        operator_probe(peer.pid, tasks_file, "resume")
        time.sleep(max(0.0, min(5.0, slot_mono - time.monotonic() - 2)))
        report.cpu(idle, LABELS)
        run.summary["peer_idle_cpu_pct"] = 100 * idle.cpu("peer") / idle.wall
        status = proc_status(peer.pid)
        run.summary["peer_rss_mib"] = mib(status, "VmRSS")
        report.add(
            "peer memory while idle",
            f"RSS {mib(status, 'VmRSS'):.0f} MiB, threads {status.get('Threads')}",
        )
        document = operator_probe(peer.pid, tasks_file)
        if document is not None:
            report.add("asyncio tasks", str(document["total"]))
            run.loop_lag(document, "event-loop lag while idle", key="peer_loop_stall_max_ms")
        fogis_peak(run, reset=True)
        sleep_until(slot_mono - 0.5)
        storm = Phase("peer slot", meter.read())
        with observer.cond:
            landed = observer.landed.setdefault(rfc3339(slot), {})
        done = observer.wait(lambda: len(landed) >= n, slot_mono + 600)
        observer.settle(2.0, 60)
        storm.end = meter.read()
        slot_status(run, slot, done)
        report.add("FOGIS requests in flight at once (fake's peak)", str(fogis_peak(run)))
        report.cpu(storm, LABELS)
        status = proc_status(peer.pid)
        report.add(
            "peer memory after the slot",
            f"RSS {mib(status, 'VmRSS'):.0f} MiB, peak {mib(status, 'VmHWM'):.0f} MiB",
        )
        document = operator_probe(peer.pid, tasks_file)
        if document is not None:
            run.loop_lag(document, "event-loop lag in the slot", key="peer_loop_stall_max_ms")
    finally:
        peer.stop()


def slot_status(run: Run, slot: datetime, done: bool) -> None:
    """Start lag (lastExecutionTime, to the microsecond, minus the slot) and errors, as the
    peer wrote them."""
    with run.observer.cond:
        statuses = [dict(run.observer.status.get(name, {})) for name in run.names]
    mine = [s for s in statuses if s.get("lastScheduleTime") == rfc3339(slot)]
    lags = [
        (datetime.fromisoformat(s["lastExecutionTime"]) - slot).total_seconds()
        for s in mine
        if s.get("lastExecutionTime")
    ]
    failed = sum(bool(s.get("lastError")) for s in mine)
    report = run.report
    report.add(
        "runs of the slot",
        f"{len(mine)} of {run.options.watchers}{'' if done else ' (NOT ALL within 10 min)'}, "
        f"{failed} failed",
    )
    report.add("start lag (status)", spread(lags))
    p99 = pct(lags, 0.99)
    run.summary["peer_storm_lag_p99_s"] = p99
    if p99 is not None:
        report.add("slowest start", fmt_s(max(lags)))
