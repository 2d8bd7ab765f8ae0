"""The operator at scale, against the real local control plane (ARCHITECTURE.md section 9).

    python -m tests.bench.bench_operator [--watchers 1000] [--triggers 50] [--idle-seconds 20]
    make bench BENCH_WATCHERS=1000        # make bench alone runs 300 (about 2.5 minutes)

N MatchWatchers on one operator process, all on the same two slots (a 6-field cron with seconds,
the MLCD_ALLOW_SECONDS_SCHEDULES test hook): the first slot is every watcher's baseline run (FOGIS
login, snapshot created), the second a steady-state run (session reused, snapshot unchanged).
Then manual triggers, one at a time and as a burst, and an idle stretch. FOGIS is the fake, in a
process of its own so its CPU is not the benchmark's; the operator is `python -m controller
operator` as in the integration tests, at INFO like production.

Where the figures come from:
- start lag: the operator's histogram matchwatcher_schedule_lag_seconds (run start minus slot,
  observed before the run's first I/O); quantiles are interpolated inside buckets, like
  Prometheus' histogram_quantile, so read them to the bucket bounds (..., 0.5, 1, 2, 5 s).
- "status landed": when this process saw the run's status patch on a watch of the watchers.
- trigger latency: annotation patch sent (the `kubectl annotate` equivalent) until the watch
  shows status.lastHandledTrigger = the value. That includes the whole run (session reuse: one
  FOGIS request, Secret and ConfigMap reads) and the status patch; the operator's own
  run-duration histogram for manual runs is printed next to it to tell the two apart.
- CPU and memory: /proc/<pid>/stat and /proc/<pid>/status of each process.
- asyncio tasks, the httpcore pools' connections and full GC pauses: a SIGUSR1 hook loaded into
  the operator through PYTHONPATH (taskprobe/sitecustomize.py); nothing in controller/ knows it.
- the fake FOGIS runs in its own process, so its CPU is not the operator's.
- slow figures come with their cause: --py-spy profiles each slot, --tracemalloc traces what the
  watchers keep alive (both slow the operator down: diagnostic runs, not measurements).

Prints figures only; it asserts nothing about time, so a slow machine cannot fail a build. It
starts the local control plane when none runs (and stops it again), else reuses it, and removes
what it created except the empty namespace (no namespace controller runs to finalise it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from controller.model import TRIGGER_ANNOTATION
from controller.schedule import parse_schedule
from controller.status import timestamp
from hack import local_cluster
from hack.local_cluster import ROOT
from tests.support.cluster import Cluster
from tests.support.net import http_get
from tests.support.operator_process import Operator
from tests.support.watchers import GROUP, PLURAL, VERSION, fogis_spec

USERNAME, PASSWORD = "bench.user", "bench-Pa55word"
SECRET = "fogis"
PROBE_DIR = Path(__file__).resolve().parent / "taskprobe"
OUT_DIR = ROOT / ".cache" / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


# --- /proc ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def proc_status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def mib(status: Mapping[str, str], key: str) -> float:
    value = status.get(key, "0 kB").split()[0]
    return int(value) / 1024


def listen_drops() -> int:
    """TcpExt ListenOverflows + ListenDrops: SYNs dropped because an accept queue was full."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0)) + int(table.get("ListenDrops", 0))
    return 0


class Meter:
    """CPU seconds of the processes that share the machine during a phase."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)

    def read(self) -> dict[str, float]:
        values = {label: cpu_seconds(pid) for label, pid in self.pids.items()}
        values["bench"] = time.process_time()
        values["wall"] = time.monotonic()
        return values


@dataclass
class Phase:
    name: str
    start: dict[str, float]
    end: dict[str, float] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return self.end["wall"] - self.start["wall"]

    def cpu(self, label: str) -> float:
        return self.end[label] - self.start[label]


# --- Prometheus text -----------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            yield dict(_LABEL.findall(match.group(2) or "")), float(match.group(3))


def total(text: str, name: str, **labels: str) -> float:
    return sum(v for ls, v in samples(text, name) if all(ls.get(k) == w for k, w in labels.items()))


@dataclass(frozen=True)
class Histogram:
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last
    sum: float
    count: float

    @classmethod
    def parse(cls, text: str, name: str, **labels: str) -> Histogram:
        cumulative: dict[float, float] = {}
        for ls, value in samples(text, f"{name}_bucket"):
            if all(ls.get(k) == v for k, v in labels.items()):
                le = float(ls["le"])
                cumulative[le] = cumulative.get(le, 0.0) + value
        return cls(
            tuple(sorted(cumulative.items())),
            total(text, f"{name}_sum", **labels),
            total(text, f"{name}_count", **labels),
        )

    def __sub__(self, other: Histogram) -> Histogram:
        before = dict(other.buckets)
        return Histogram(
            tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
            self.sum - other.sum,
            self.count - other.count,
        )

    def quantile(self, q: float) -> float | None:
        """histogram_quantile: linear inside the bucket holding the rank."""
        if not self.buckets or self.count <= 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le, n in self.buckets:
            if n >= rank:
                if math.isinf(le):
                    return lower  # beyond the last finite bound: that bound is all we know
                if n == below:
                    return le
                return lower + (le - lower) * (rank - below) / (n - below)
            lower, below = le, n
        return lower

    def fraction_at_most(self, bound: float) -> float | None:
        if self.count <= 0:
            return None
        return dict(self.buckets).get(bound, math.nan) / self.count

    def highest_bucket(self) -> str:
        """The upper bound of the bucket holding the slowest observation."""
        previous = 0.0
        for le, n in self.buckets:
            if n >= self.count:
                return "+Inf" if math.isinf(le) else f"<= {fmt_s(le)} (> {fmt_s(previous)})"
            previous = le
        return "?"


# --- a watch on the watchers ---------------------------------------------------------------------


class Observer:
    """Every event of the namespace's MatchWatchers, timestamped on arrival (monotonic)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.cond = threading.Condition()
        self.expect_next: str | None = None  # the nextExecutionTime that means "seen"
        self.seen: dict[str, float] = {}  # name -> when NEXT RUN first showed expect_next
        self.landed: dict[str, dict[str, float]] = {}  # lastScheduleTime -> name -> when
        self.triggers: dict[str, float] = {}  # lastHandledTrigger value -> when
        self.status: dict[str, dict[str, Any]] = {}
        self.modified: Counter[str] = Counter()  # MODIFIED events per watcher
        self.names: set[str] = set()
        self.events = 0
        self.last_event = time.monotonic()
        self._rv = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)

    def start(self) -> None:
        listing = self._custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        self._rv = listing["metadata"]["resourceVersion"]
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=self._rv,
                    timeout_seconds=30,
                    deserialize=False,
                ):
                    self._handle(event)
                    if self._stopping.is_set():
                        stream.stop()
                        break
            except ApiException as exc:
                if exc.status == 410:  # too old: start again from a fresh listing
                    self._rv = self._custom.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL
                    )["metadata"]["resourceVersion"]
                else:
                    time.sleep(0.2)
            except (HTTPError, OSError):
                time.sleep(0.2)

    def _handle(self, event: Mapping[str, Any]) -> None:
        now = time.monotonic()
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        self._rv = meta.get("resourceVersion") or self._rv
        if event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
            return
        name = meta.get("name", "")
        status = obj.get("status") or {}
        with self.cond:
            self.events += 1
            self.last_event = now
            if event["type"] == "DELETED":
                self.names.discard(name)
            else:
                self.names.add(name)
                self.status[name] = status
            if event["type"] == "MODIFIED":
                self.modified[name] += 1
            if name not in self.seen and status.get("nextExecutionTime") == self.expect_next:
                self.seen[name] = now
            slot = status.get("lastScheduleTime")
            if slot:
                self.landed.setdefault(slot, {}).setdefault(name, now)
            trigger = status.get("lastHandledTrigger")
            if trigger:
                self.triggers.setdefault(trigger, now)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], until: float) -> bool:
        """Wait until `predicate()` (called under the lock) holds or monotonic `until` passes."""
        with self.cond:
            while not predicate():
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 1.0))
            return True

    def settle(self, quiet: float, timeout: float) -> bool:
        """Wait for `quiet` seconds without an event (at most `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cond:
                idle = time.monotonic() - self.last_event
            if idle >= quiet:
                return True
            time.sleep(min(quiet - idle + 0.05, max(0.0, deadline - time.monotonic())))
        return False


# --- the fake FOGIS in its own process -----------------------------------------------------------


@contextmanager
def fake_fogis(log_path: Path) -> Iterator[tuple[str, int]]:
    """`python -m tests.fakes.fogis` with one user; yields (base URL, pid)."""
    args = ["--user", USERNAME, "--password", PASSWORD]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.fogis", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log_path.open("ab"),
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"fake FOGIS did not start: {line!r} (see {log_path})")
        yield line.removeprefix("listening on "), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- helpers -------------------------------------------------------------------------------------


def fmt_s(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    if abs(seconds) < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of raw samples."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return (
        f"p50 {fmt_s(pct(values, 0.5))}  p99 {fmt_s(pct(values, 0.99))}  "
        f"max {fmt_s(max(values))}  (n={len(values)})"
    )


def wall_to_monotonic(moment: datetime) -> float:
    return moment.timestamp() - (time.time() - time.monotonic())


def sleep_until(mono: float) -> None:
    while (left := mono - time.monotonic()) > 0:
        time.sleep(min(left, 1.0))


def schedule_for(first: datetime, second: datetime) -> str:
    """A 6-field cron (seconds last, croniter's format) firing at `first` and `second`, which are
    whole minutes apart at the same second. Other slots of the cross product are checked to lie
    outside the benchmark by the caller."""
    minutes = sorted({first.minute, second.minute})
    hours = sorted({first.hour, second.hour})
    days = sorted({first.day, second.day})
    return (
        f"{','.join(map(str, minutes))} {','.join(map(str, hours))} "
        f"{','.join(map(str, days))} * * {first.second}"
    )


def operator_probe(pid: int, path: Path) -> dict[str, Any] | None:
    """Ask the operator's probe (taskprobe/) for its asyncio tasks and httpcore pools (None when
    it does not answer)."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists():
            document: dict[str, Any] = json.loads(path.read_text())
            return document
        time.sleep(0.05)
    return None


def list_items(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )["items"]
    return items


def config_map_versions(cluster: Cluster, namespace: str) -> dict[str, str]:
    items = cluster.core.list_namespaced_config_map(
        namespace, label_selector="app.kubernetes.io/managed-by=match-list-change-detector"
    ).items
    return {cm.metadata.name: cm.metadata.resource_version for cm in items}


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def section(self, title: str) -> None:
        self.rows.append((f"-- {title}", ""))

    def add(self, label: str, value: str) -> None:
        self.rows.append((label, value))
        log(f"{label}: {value}")

    def cpu(self, phase: Phase, labels: Sequence[str]) -> None:
        parts = [
            f"{label} {phase.cpu(label):.1f} s ({100 * phase.cpu(label) / phase.wall:.0f}%)"
            for label in labels
        ]
        self.add(f"CPU over {phase.wall:.1f} s", ", ".join(parts))

    def print(self) -> None:
        width = max(len(label) for label, _ in self.rows if not label.startswith("-- "))
        print()
        for label, value in self.rows:
            if label.startswith("-- "):
                print(f"\n{label[3:]}")
            else:
                print(f"  {label:<{width}}  {value}")


# --- the benchmark -------------------------------------------------------------------------------


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


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_operator",
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
    )


def connect(kubeconfig: str, threads: int) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = threads
    return client.ApiClient(configuration)


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
    api = connect(info.kubeconfig, options.create_threads + 2)
    cluster = Cluster(api, info.kubeconfig)
    try:
        cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "crds"))
        cluster.kubectl(
            "wait", "--for=condition=Established", "crd/matchwatchers.matchlist.io", "--timeout=30s"
        )
        report = bench(cluster, info, options)
        report.print()
    finally:
        api.close()
        if not reuse:
            local_cluster.down(quiet=True)


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

    @property
    def pid(self) -> int:
        assert self.operator.proc is not None
        return self.operator.proc.pid

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
            f"{len(pauses)}, total {fmt_s(sum(pauses))}, longest {slots or '-'}; "
            f"heap {document.get('gcObjects', 0):,} objects",
        )

    def memory(self, label: str = "operator memory") -> None:
        status = proc_status(self.pid)
        self.report.add(
            label,
            f"RSS {mib(status, 'VmRSS'):.0f} MiB, peak {mib(status, 'VmHWM'):.0f} MiB, "
            f"threads {status.get('Threads')}",
        )


def bench(cluster: Cluster, info: local_cluster.ClusterInfo, options: Options) -> Report:
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
    operator = Operator(info.kubeconfig, [namespace], op_log, env=env)
    try:
        with fake_fogis(fogis_log) as (fogis_url, fogis_pid):
            started = time.monotonic()
            operator.start()
            report.add("operator start to /healthz", fmt_s(time.monotonic() - started))
            assert operator.proc is not None
            pids = {"operator": operator.proc.pid, "fogis": fogis_pid}
            pids |= {"apiserver": info.apiserver_pid, "etcd": info.etcd_pid}
            run = Run(
                cluster=cluster,
                namespace=namespace,
                options=options,
                operator=operator,
                observer=observer,
                meter=Meter(pids),
                report=report,
                fogis_url=fogis_url,
                tasks_file=tasks_file,
                names=[f"w{i:05d}" for i in range(n)],
                run_id=run_id,
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
            finally:
                delete_watchers(cluster, namespace, observer, report)
    finally:
        operator.stop()  # also when it never became healthy
        observer.stop()
        delete_leftovers(cluster, namespace)
    report.add("SYNs dropped, full accept queues", str(listen_drops() - drops_before))
    return report


def create_phase(run: Run) -> tuple[datetime, datetime]:
    """Create the watchers on two slots: whole seconds, `lead` after now, whole minutes apart
    (so one cron expression holds both). Returns the slots."""
    options, report, observer = run.options, run.report, run.observer
    n = options.watchers
    now = datetime.now(UTC).replace(microsecond=0)
    slot1 = now + timedelta(seconds=math.ceil(options.lead))
    slot2 = slot1 + timedelta(minutes=math.ceil(options.gap / 60))
    expression = schedule_for(slot1, slot2)
    schedule = parse_schedule(expression, "UTC", allow_seconds=True)
    fires = [schedule.next_after(now)]
    while len(fires) < 3:
        fires.append(schedule.next_after(fires[-1]))
    if fires[:2] != [slot1, slot2] or fires[2] < slot2 + timedelta(minutes=30):
        raise RuntimeError(f"schedule {expression!r} fires at {fires}, not just {slot1}, {slot2}")
    observer.expect_next = timestamp(slot1)
    report.section(
        f"create {n} watchers, schedule {expression!r} (UTC): slots {timestamp(slot1)} and "
        f"{timestamp(slot2)}"
    )
    phase = Phase("create", run.meter.read())
    spec = fogis_spec(run.fogis_url, SECRET, schedule=expression)
    calls = create_all(run.cluster, run.namespace, run.names, spec, options.create_threads)
    created = time.monotonic() - phase.start["wall"]
    report.add(
        f"create calls ({options.create_threads} threads)",
        f"{created:.1f} s ({n / created:.0f}/s); per call {spread(calls)}",
    )
    slot1_mono = wall_to_monotonic(slot1)
    all_seen = observer.wait(lambda: len(observer.seen) >= n, slot1_mono + 120)
    phase.end = run.meter.read()
    with observer.cond:
        seen_after = [t - phase.start["wall"] for t in observer.seen.values()]
    report.add(
        "all watchers seen (NEXT RUN in status)",
        f"{len(seen_after)} of {n}, the last {fmt_s(max(seen_after, default=None))} after the "
        f"first create call{'' if all_seen else ' (TIMED OUT)'}; {spread(seen_after)}",
    )
    if max(seen_after, default=0) > options.lead:
        report.add("WARNING", "creation ran past the first slot: raise --lead")
    report.cpu(phase, run.labels)
    run.memory(f"operator with {n} watchers")
    observer.settle(2.0, max(0.0, slot1_mono - time.monotonic() - 3))
    return slot1, slot2


def create_all(
    cluster: Cluster, namespace: str, names: Sequence[str], spec: Mapping[str, Any], threads: int
) -> list[float]:
    """Create the watchers concurrently; returns each create call's duration."""

    def create(name: str) -> float:
        began = time.monotonic()
        cluster.create_watcher(namespace, name, spec)
        return time.monotonic() - began

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(create, names))


def slot_phase(run: Run, index: int, slot: datetime) -> None:
    report, observer, n = run.report, run.observer, run.options.watchers
    kind = "baseline runs: login, snapshot created" if index == 1 else "steady state"
    report.section(f"slot {index} at {timestamp(slot)} ({kind})")
    slot_mono = wall_to_monotonic(slot)
    before = run.operator.metrics()
    with observer.cond:
        modified_before = Counter(observer.modified)
    versions_before = config_map_versions(run.cluster, run.namespace)
    if time.monotonic() > slot_mono - 0.5:
        report.add("WARNING", f"slot {index} came before the previous phase settled")
    operator_probe(run.pid, run.tasks_file)  # so the GC figures below are this slot's
    sleep_until(slot_mono - 0.5)
    profile = OUT_DIR / f"profile-{run.run_id}-slot{index}.txt"
    with profiling(run.options.py_spy, run.pid, profile):
        phase = Phase(f"slot {index}", run.meter.read())
        with observer.cond:
            landed = observer.landed.setdefault(timestamp(slot) or "", {})
        if not observer.wait(lambda: len(landed) >= n, slot_mono + 600):
            report.add("WARNING", "not every status patch arrived within 10 minutes")
        observer.settle(2.0, 60)
        phase.end = run.meter.read()
    if run.options.py_spy:
        report.add("py-spy profile (collapsed stacks)", str(profile))
    after = run.operator.metrics()

    lag = Histogram.parse(after, "matchwatcher_schedule_lag_seconds") - Histogram.parse(
        before, "matchwatcher_schedule_lag_seconds"
    )
    report.add(
        "start lag (histogram)",
        f"p50 {fmt_s(lag.quantile(0.5))}  p99 {fmt_s(lag.quantile(0.99))}  "
        f"mean {fmt_s(lag.sum / lag.count if lag.count else None)}  "
        f"slowest {lag.highest_bucket()}  (n={lag.count:.0f})",
    )
    within = lag.fraction_at_most(1.0)
    report.add(
        "runs started within 1 s of the slot",
        "-" if within is None else f"{100 * within:.1f}% ({lag.count * within:.0f})",
    )
    outcome = {
        result: total(after, "matchwatcher_runs_total", trigger="schedule", result=result)
        - total(before, "matchwatcher_runs_total", trigger="schedule", result=result)
        for result in ("success", "failure")
    }
    report.add(
        "scheduled runs (metric)",
        f"{outcome['success']:.0f} succeeded, {outcome['failure']:.0f} failed",
    )
    duration = Histogram.parse(
        after, "matchwatcher_run_duration_seconds", trigger="schedule"
    ) - Histogram.parse(before, "matchwatcher_run_duration_seconds", trigger="schedule")
    report.add(
        "run duration (histogram)",
        f"p50 {fmt_s(duration.quantile(0.5))}  p99 {fmt_s(duration.quantile(0.99))}  "
        f"mean {fmt_s(duration.sum / duration.count if duration.count else None)}",
    )
    with observer.cond:
        times = [t - slot_mono for t in landed.values()]
        statuses = [dict(observer.status.get(name, {})) for name in run.names]
        patches = Counter(observer.modified[name] - modified_before[name] for name in run.names)
    report.add(
        "status patch seen on the watch (from the slot)",
        f"{len(times)} of {n}; first {fmt_s(min(times, default=None))}, {spread(times)}",
    )
    late = sum(
        datetime.fromisoformat(s["lastExecutionTime"])
        - datetime.fromisoformat(s["lastScheduleTime"])
        > timedelta(seconds=1)
        for s in statuses
        if s.get("lastScheduleTime") == timestamp(slot) and s.get("lastExecutionTime")
    )
    report.add("status: start - slot > 1 s (to the second)", str(late))
    report.add("Ready reasons", ready_reasons(statuses))
    report.add(
        "watch MODIFIED events per watcher",
        ", ".join(f"{count} event(s): {watchers}" for count, watchers in sorted(patches.items())),
    )
    versions_after = config_map_versions(run.cluster, run.namespace)
    rewritten = sum(versions_before.get(k) != v for k, v in versions_after.items())
    report.add("snapshot ConfigMaps written", f"{rewritten} (of {len(versions_after)})")
    report.cpu(phase, run.labels)
    run.memory()
    document = run.pools()
    if document is not None:
        run.collections(document)


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
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ready_reasons(statuses: Sequence[Mapping[str, Any]]) -> str:
    """Ready condition reasons, with the message of each failure kind."""
    reasons: Counter[tuple[str, str]] = Counter()
    for status in statuses:
        ready: Mapping[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
        )
        failed = ready.get("status") != "True"
        reasons[(ready.get("reason", "?"), ready.get("message", "") if failed else "")] += 1
    return "; ".join(
        f"{reason}{f' ({message})' if message else ''}: {count}"
        for (reason, message), count in reasons.most_common()
    )


def trigger_phase(run: Run) -> None:
    """Annotate a sample one at a time, then another sample all at once."""
    report, observer, names = run.report, run.observer, run.names
    k = run.options.triggers
    report.section(f"manual triggers: annotate -> status.lastHandledTrigger, {k} watchers")
    step = max(1, len(names) // k)
    before = run.operator.metrics()
    phase = Phase("triggers", run.meter.read())
    one_by_one: list[float | None] = []
    for name in names[::step][:k]:
        value = f"seq-{name}"
        began = annotate(run.cluster, run.namespace, name, value)
        one_by_one.append(handled_after(observer, value, began))
        if one_by_one[-3:] == [None, None, None]:
            report.add("WARNING", "3 triggers in a row not handled: the rest skipped")
            return
    report.add("one at a time", spread([x for x in one_by_one if x is not None]))
    burst_sample = names[step // 2 :: step][:k] if step > 1 else names[:k]

    def send(name: str) -> tuple[str, float]:
        return f"burst-{name}", annotate(run.cluster, run.namespace, name, f"burst-{name}")

    with ThreadPoolExecutor(16) as pool:  # as fast as 16 client threads send them
        sent = list(pool.map(send, burst_sample))
    burst = [handled_after(observer, value, began) for value, began in sent]
    report.add(f"burst of {len(sent)} at once", spread([x for x in burst if x is not None]))
    missing = sum(x is None for x in [*one_by_one, *burst])
    if missing:
        report.add("WARNING", f"{missing} triggers not handled within 45 s")
    observer.settle(2.0, 60)
    phase.end = run.meter.read()
    after = run.operator.metrics()
    manual = Histogram.parse(
        after, "matchwatcher_run_duration_seconds", trigger="manual"
    ) - Histogram.parse(before, "matchwatcher_run_duration_seconds", trigger="manual")
    report.add(
        "manual run duration (histogram)",
        f"p50 {fmt_s(manual.quantile(0.5))}  p99 {fmt_s(manual.quantile(0.99))}  "
        f"mean {fmt_s(manual.sum / manual.count if manual.count else None)}  "
        f"(n={manual.count:.0f})",
    )
    report.cpu(phase, run.labels)


def annotate(cluster: Cluster, namespace: str, name: str, value: str) -> float:
    """The `kubectl annotate ... matchlist.io/trigger=VALUE --overwrite` patch; returns when it
    was sent (monotonic)."""
    began = time.monotonic()
    cluster.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        {"metadata": {"annotations": {TRIGGER_ANNOTATION: value}}},
    )
    return began


def handled_after(observer: Observer, value: str, began: float) -> float | None:
    """Seconds from `began` until the watch showed status.lastHandledTrigger = value."""
    if not observer.wait(lambda: value in observer.triggers, began + 45):
        return None
    with observer.cond:
        return observer.triggers[value] - began


def idle_phase(run: Run) -> None:
    report, observer = run.report, run.observer
    report.section(f"idle, {run.options.watchers} watchers")
    observer.settle(3.0, 60)
    time.sleep(6)  # kopf's per-object workers exit after 5 s without events
    with observer.cond:
        events_before = observer.events
    phase = Phase("idle", run.meter.read())
    time.sleep(run.options.idle_seconds)
    phase.end = run.meter.read()
    with observer.cond:
        events_idle = observer.events - events_before
    report.cpu(phase, run.labels)
    report.add(
        "operator CPU while idle",
        f"{1000 * phase.cpu('operator') / phase.wall:.1f} ms per second "
        f"(resolution {1000 / CLK_TCK:.0f} ms); watch events meanwhile: {events_idle}",
    )
    run.memory()
    tasks = run.pools()
    if tasks is not None:
        run.collections(tasks)
        top = ", ".join(f"{name} {count}" for name, count in list(tasks["byCoroutine"].items())[:6])
        report.add("asyncio tasks", f"{tasks['total']} ({top})")
        if "allocations" in tasks:
            allocations = OUT_DIR / f"allocations-{run.run_id}.json"
            allocations.write_text(json.dumps(tasks["allocations"], indent=1))
            report.add("traced allocations", f"{tasks['allocations']['tracedMiB']} MiB")
            for line in tasks["allocations"]["byFile"][:12]:
                report.add("  by file", line)
            report.add("  by traceback", str(allocations))
    health = http_get(run.operator.health_url)
    if health:
        report.add("/healthz", health.strip())
    state = http_get(f"{run.fogis_url.removesuffix('/mdk')}/_control/state")
    if state:
        document = json.loads(state)
        report.add(
            "fake FOGIS", f"logins {document['logins']}, match lists served {document['fetches']}"
        )


def delete_watchers(cluster: Cluster, namespace: str, observer: Observer, report: Report) -> None:
    """Delete the watchers while the operator runs: it removes its finalizers."""
    report.section("cleanup")
    began = time.monotonic()
    names = [item["metadata"]["name"] for item in list_items(cluster, namespace)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: cluster.delete_watcher(namespace, name), names))
    gone = observer.wait(lambda: not observer.names, began + 180)
    report.add(
        f"delete {len(names)} watchers until gone",
        f"{fmt_s(time.monotonic() - began)}{'' if gone else ' (TIMED OUT, forced later)'}",
    )


def delete_leftovers(cluster: Cluster, namespace: str) -> None:
    """With the operator stopped (so it writes nothing more): whatever is left, and the rest."""
    for item in list_items(cluster, namespace):
        cluster.force_delete_watcher(namespace, item["metadata"]["name"])
    with suppress(ApiException):
        cluster.core.delete_collection_namespaced_config_map(
            namespace, label_selector="app.kubernetes.io/managed-by=match-list-change-detector"
        )
    with suppress(ApiException):
        cluster.core.delete_namespaced_secret(SECRET, namespace)


if __name__ == "__main__":
    main()
