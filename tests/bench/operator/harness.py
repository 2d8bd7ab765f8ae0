"""What one benchmark run works with: options, the operator and its probe, clocks, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from hack.local_cluster import ROOT
from tests.bench.operator.figures import fmt_s
from tests.bench.operator.observer import Observer
from tests.bench.operator.procfs import Meter, Phase, mib, proc_status
from tests.bench.operator.report import Report
from tests.support.cluster import Cluster
from tests.support.commands import end
from tests.support.operator_process import Operator
from tests.support.watchers import GROUP, PLURAL, VERSION

USERNAME, PASSWORD = "bench.user", "bench-Pa55word"
SECRET = "fogis"
# The fake FOGIS runs as a process of its own, so its CPU is not the operator's.
FOGIS_ARGS = ["--user", USERNAME, "--password", PASSWORD]
PROBE_DIR = Path(__file__).resolve().parent.parent / "taskprobe"
OUT_DIR = ROOT / ".cache" / "bench"


@dataclass
class Options:
    watchers: int
    triggers: int
    idle_seconds: float
    lead: float
    gap: float
    kube_workers: int | None
    create_threads: int
    py_spy: str | None
    tracemalloc: int
    hashed_minutes: int = 2
    storm_triggers: int = 20
    shards: int = 1
    peer: bool = True


@dataclass
class Run:
    """Everything one benchmark run works with."""

    cluster: Cluster
    namespace: str
    options: Options
    operator: Operator
    observer: Observer
    meter: Meter
    report: Report
    fogis_url: str
    tasks_file: Path
    names: list[str]
    run_id: str
    labels: tuple[str, ...] = ("operator", "apiserver", "etcd", "fogis", "bench")
    # More operator processes with --shards (MLCD_SHARD_INDEX 1..K-1); `operator` is shard 0
    # and the one whose metrics and probe the phases read.
    shards: list[Operator] = field(default_factory=list)
    # The fields of the final `bench:` line, filled in by the phases that measure them.
    summary: dict[str, float | None] = field(default_factory=dict)

    @property
    def operators(self) -> list[Operator]:
        return [self.operator, *self.shards]

    def loop_lag(
        self,
        document: Mapping[str, Any],
        label: str = "event-loop lag",
        key: str = "any_loop_stall_max_ms",
    ) -> None:
        """A process's loop lag since the previous probe answer (taskprobe's 20 ms sleeper);
        the largest of all phases goes into the summary under `key`."""
        lag = document.get("loopLag") or {}
        if not lag.get("samples"):
            self.report.add(label, "no samples")
            return
        self.report.add(
            label,
            f"p50 {lag['p50Ms']} ms  p99 {lag['p99Ms']} ms  max {lag['maxMs']} ms  "
            f"(n={lag['samples']} wake-ups of a 20 ms sleep)",
        )
        self.summary[key] = max(self.summary.get(key) or 0.0, float(lag["maxMs"]))
        now = time.time()
        for rank, slow in enumerate(document.get("slowCallbacks") or [], 1):
            if rank > 5:
                break
            self.report.add(
                f"  slow callback {rank}",
                f"{slow['ms']} ms (GC {slow['gcMs']} ms), {now - slow['at']:.0f} s ago: "
                f"{slow['where']}",
            )

    @property
    def pid(self) -> int:
        return self.operator.pid

    def pools(self) -> dict[str, Any] | None:
        """Report the operator's httpcore pools; returns the whole probe document."""
        document = operator_probe(self.pid, self.tasks_file)
        if document is None:
            self.report.add("operator probe", "did not answer")
            return None
        for name, pool in document.get("httpcorePools", {}).items():
            states = ", ".join(f"{k} {v}" for k, v in pool["connections"].items()) or "none"
            self.report.add(
                f"{name} httpcore pool (max {pool['maxConnections']})",
                f"connections: {states}; requests {pool['requests']} ({pool['queued']} queued)",
            )
        return document

    def collections(self, document: Mapping[str, Any], since: float | None = None) -> None:
        """Full garbage collections reported by the probe (since its previous answer)."""
        full = document.get("fullCollections", [])
        if since is not None:
            full = [c for c in full if c["at"] >= since]
        pauses = [c["seconds"] for c in full]
        slots = ", ".join(fmt_s(p) for p in sorted(pauses, reverse=True)[:5])
        self.report.add(
            "full GC collections (gen 2)",
            f"{len(pauses)}, total {fmt_s(sum(pauses))}, longest {slots or '-'}, "
            f"{sum(c['collected'] for c in full):,} objects collected; "
            f"heap {document.get('gcObjects', 0):,} objects",
        )
        census = document.get("gcByType") or {}
        if census:
            top = ", ".join(f"{name} {count:,}" for name, count in list(census.items())[:12])
            self.report.add(
                "tracked heap by type",
                f"{top}; generations {document.get('gcGenerations')}, "
                f"frozen {document.get('gcFrozen', 0):,}",
            )

    def phase_end(self, phase: Phase, stall_key: str | None = None) -> None:
        """What every slot phase reports last: CPU, memory, full collections, loop lag (its
        largest stall also under `stall_key` in the summary)."""
        self.report.cpu(phase, self.labels)
        self.memory()
        document = self.pools()
        if document is not None:
            self.collections(document)
            self.loop_lag(document)
            if stall_key is not None:
                self.summary[stall_key] = (document.get("loopLag") or {}).get("maxMs")

    def memory(self, label: str = "operator memory") -> float:
        """Report the RSS of the operator (of each shard and their sum); returns the sum."""
        total = 0.0
        for index, operator in enumerate(self.operators):
            status = proc_status(operator.pid)
            total += mib(status, "VmRSS")
            shard = f" (shard {index})" if self.shards else ""
            self.report.add(
                label + shard,
                f"RSS {mib(status, 'VmRSS'):.0f} MiB, peak {mib(status, 'VmHWM'):.0f} MiB, "
                f"threads {status.get('Threads')}",
            )
        if self.shards:
            self.report.add(f"{label} (sum of {len(self.operators)} shards)", f"{total:.0f} MiB")
        return total


def operator_probe(pid: int, path: Path, command: str = "") -> dict[str, Any] | None:
    """Ask the operator's probe (taskprobe/) for its asyncio tasks and httpcore pools (None when
    it does not answer); `command` "pause" or "resume" pauses its loop-lag sleeper or not."""
    path.unlink(missing_ok=True)
    if command:
        path.with_suffix(".cmd").write_text(command)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists():
            document: dict[str, Any] = json.loads(path.read_text())
            if "probeError" in document:
                raise AssertionError(f"operator probe (taskprobe): {document['probeError']}")
            return document
        time.sleep(0.05)
    return None


@contextmanager
def profiling(py_spy: str | None, pid: int, output: Path) -> Iterator[None]:
    """py-spy record of `pid` for the duration of the block (nothing without py-spy)."""
    if not py_spy:
        yield
        return
    command = [py_spy, "record", "--pid", str(pid), "--rate", "50", "--format", "raw"]
    command += ["--threads", "--nonblocking", "--output", str(output)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        end(proc, signal.SIGINT)  # py-spy writes its output on SIGINT


def wall_to_monotonic(moment: datetime) -> float:
    return moment.timestamp() - (time.time() - time.monotonic())


def sleep_until(mono: float) -> None:
    while (left := mono - time.monotonic()) > 0:
        time.sleep(min(left, 1.0))


def patch_all(
    cluster: Cluster,
    namespace: str,
    names: Sequence[str],
    body: Mapping[str, Any],
    *,
    status: bool = False,
) -> None:
    """The same merge patch on every watcher (its status with `status`), 16 calls at a time."""
    custom = cluster.custom
    patch = (
        custom.patch_namespaced_custom_object_status
        if status
        else custom.patch_namespaced_custom_object
    )

    def one(name: str) -> None:
        patch(GROUP, VERSION, namespace, PLURAL, name, dict(body))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, names))


def config_map_versions(cluster: Cluster, namespace: str) -> dict[str, str]:
    items = cluster.core.list_namespaced_config_map(
        namespace, label_selector="app.kubernetes.io/managed-by=match-list-change-detector"
    ).items
    return {cm.metadata.name: cm.metadata.resource_version for cm in items}


def delete_watchers(cluster: Cluster, namespace: str, observer: Observer, report: Report) -> None:
    """Delete the watchers while the operator runs: it removes its finalizers."""
    report.section("cleanup")
    began = time.monotonic()
    names = [item["metadata"]["name"] for item in cluster.watchers(namespace)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: cluster.delete_watcher(namespace, name), names))
    gone = observer.wait(lambda: not observer.names, began + 180)
    report.add(
        f"delete {len(names)} watchers until gone",
        f"{fmt_s(time.monotonic() - began)}{'' if gone else ' (TIMED OUT, forced later)'}",
    )


def delete_leftovers(cluster: Cluster, namespace: str) -> None:
    """With the operator stopped (so it writes nothing more): whatever is left, and the rest."""
    names = [item["metadata"]["name"] for item in cluster.watchers(namespace)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: cluster.force_delete_watcher(namespace, name), names))
    with suppress(ApiException):
        cluster.core.delete_collection_namespaced_config_map(
            namespace, label_selector="app.kubernetes.io/managed-by=match-list-change-detector"
        )
    with suppress(ApiException):
        cluster.core.delete_namespaced_secret(SECRET, namespace)
