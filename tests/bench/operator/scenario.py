"""The phases of a run: create the watchers, two slots, manual triggers, idle."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.core.config import Settings
from controller.core.model import TRIGGER_ANNOTATION
from controller.core.schedule import parse_schedule
from controller.core.status import timestamp
from tests.bench.operator.figures import Histogram, fmt_s, pct, spread
from tests.bench.operator.harness import (
    OUT_DIR,
    SECRET,
    Run,
    config_map_versions,
    operator_probe,
    profiling,
    sleep_until,
    wall_to_monotonic,
)
from tests.bench.operator.observer import Observer
from tests.bench.operator.procfs import CLK_TCK, Phase
from tests.support.cluster import Cluster
from tests.support.metrics import metric_value
from tests.support.net import http, http_get
from tests.support.watchers import GROUP, PLURAL, VERSION, fogis_spec, ready


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


def runs(text: str, result: str) -> float:
    """Scheduled runs that ended with `result`, from the operator's counter."""
    labels = {"trigger": "schedule", "result": result}
    return metric_value(text, "matchwatcher_runs_total", labels) or 0.0


def run_durations(before: str, after: str, trigger: str) -> Histogram:
    """The operator's run-duration histogram of `trigger` runs between two /metrics texts."""
    name = "matchwatcher_run_duration_seconds"
    return Histogram.parse(after, name, trigger=trigger) - Histogram.parse(
        before, name, trigger=trigger
    )


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
    operator_probe(run.pid, run.tasks_file)  # so the GC and loop figures below are this slot's
    sleep_until(slot_mono - 0.5)
    fogis_peak(run, reset=True)
    storm = StormTriggers(run, index, slot_mono)
    storm.start()
    profile = OUT_DIR / f"profile-{run.run_id}-slot{index}.txt"
    with profiling(run.options.py_spy, run.pid, profile):
        phase = Phase(f"slot {index}", run.meter.read())
        with observer.cond:
            landed = observer.landed.setdefault(timestamp(slot) or "", {})
        if not observer.wait(lambda: len(landed) >= n, slot_mono + 600):
            report.add("WARNING", "not every status patch arrived within 10 minutes")
        observer.settle(2.0, 60)
        phase.end = run.meter.read()
    storm.join()
    if run.options.py_spy:
        report.add("py-spy profile (collapsed stacks)", str(profile))
    after = run.operator.metrics()

    lag = Histogram.parse(after, "matchwatcher_schedule_lag_seconds") - Histogram.parse(
        before, "matchwatcher_schedule_lag_seconds"
    )
    report.add(
        "start lag (histogram)",
        f"{lag.summary()}  slowest {lag.highest_bucket()}  (n={lag.count:.0f})",
    )
    storm_p99 = lag.quantile(0.99)
    if storm_p99 is not None:
        worst = run.summary.get("storm_lag_p99_s") or 0.0
        run.summary["storm_lag_p99_s"] = max(worst, storm_p99)
    within = lag.fraction_at_most(1.0)
    report.add(
        "runs started within 1 s of the slot",
        "-" if within is None else f"{100 * within:.1f}% ({lag.count * within:.0f})",
    )
    outcome = {
        result: runs(after, result) - runs(before, result) for result in ("success", "failure")
    }
    report.add(
        "scheduled runs (metric)",
        f"{outcome['success']:.0f} succeeded, {outcome['failure']:.0f} failed",
    )
    report.add("run duration (histogram)", run_durations(before, after, "schedule").summary())
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
    storm.report()
    peak = fogis_peak(run)
    report.add(
        "FOGIS requests in flight at once (fake's peak)",
        f"{peak} (operator's limit {Settings().fogis_max_concurrent_per_host}, "
        "MLCD_FOGIS_MAX_CONCURRENT_PER_HOST)",
    )
    run.phase_end(phase)


def fogis_peak(run: Run, *, reset: bool = False) -> int | None:
    """The fake FOGIS's most requests in flight at once since the last reset."""
    origin = run.fogis_url.removesuffix("/mdk")
    if reset:
        http("POST", f"{origin}/_control/peak")
    status, body = http("GET", f"{origin}/_control/state")
    return json.loads(body).get("peakInFlight") if status == 200 else None


class StormTriggers:
    """`kubectl annotate` triggers sent one by one (100 ms apart) while a slot's runs are under
    way: what a user waits for when asking for a run in the middle of the storm."""

    def __init__(self, run: Run, index: int, slot_mono: float) -> None:
        self.run = run
        k = min(run.options.storm_triggers, len(run.names))
        step = max(1, len(run.names) // max(1, k))
        # Other watchers than the trigger phase's samples (names[::step]).
        self.names = run.names[step // 3 :: step][:k] if step > 2 else run.names[:k]
        self.prefix = f"storm{index}"
        self.slot_mono = slot_mono
        self.sent: list[tuple[str, float]] = []
        self._thread = threading.Thread(target=self._send, name="storm-triggers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def _send(self) -> None:
        sleep_until(self.slot_mono + 0.2)  # the runs have begun
        for name in self.names:
            value = f"{self.prefix}-{name}"
            self.sent.append((value, annotate(self.run.cluster, self.run.namespace, name, value)))
            time.sleep(0.1)

    def report(self) -> None:
        if not self.names:
            return
        answered = [handled_after(self.run.observer, value, began) for value, began in self.sent]
        done = [x for x in answered if x is not None]
        self.run.report.add(f"triggers during the slot's runs ({len(self.sent)})", spread(done))
        if len(done) < len(self.sent):
            self.run.report.add(
                "WARNING", f"{len(self.sent) - len(done)} storm triggers unanswered"
            )
        key = "storm_trigger_p99_ms"
        p99 = pct(done, 0.99)
        if p99 is not None:
            self.run.summary[key] = max(self.run.summary.get(key) or 0.0, 1000 * p99)


def ready_reasons(statuses: Sequence[Mapping[str, Any]]) -> str:
    """Ready condition reasons, with the message of each failure kind."""
    reasons: Counter[tuple[str, str]] = Counter()
    for status in statuses:
        condition: Mapping[str, Any] = ready(status) or {}
        failed = condition.get("status") != "True"
        reasons[(condition.get("reason", "?"), condition.get("message", "") if failed else "")] += 1
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
    operator_probe(run.pid, run.tasks_file)  # the loop figures below are this phase's
    phase = Phase("triggers", run.meter.read())
    one_by_one: list[float | None] = []
    for name in names[::step][:k]:
        value = f"seq-{name}"
        began = annotate(run.cluster, run.namespace, name, value)
        one_by_one.append(handled_after(observer, value, began))
        if one_by_one[-3:] == [None, None, None]:
            report.add("WARNING", "3 triggers in a row not handled: the rest skipped")
            return
    handled = [x for x in one_by_one if x is not None]
    report.add("one at a time", spread(handled))
    for key, q in (("trigger_p50_ms", 0.5), ("trigger_p99_ms", 0.99)):
        seconds = pct(handled, q)
        run.summary[key] = None if seconds is None else 1000 * seconds
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
    manual = run_durations(before, after, "manual")
    report.add("manual run duration (histogram)", f"{manual.summary()}  (n={manual.count:.0f})")
    report.cpu(phase, run.labels)
    document = operator_probe(run.pid, run.tasks_file)
    if document is not None:
        run.loop_lag(document)


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
    # The loop-lag sleeper costs about as much CPU as the idle target: paused for the CPU figure,
    # then sampled for a few seconds of its own.
    operator_probe(run.pid, run.tasks_file, "pause")
    phase = Phase("idle", run.meter.read())
    time.sleep(run.options.idle_seconds)
    phase.end = run.meter.read()
    operator_probe(run.pid, run.tasks_file, "resume")
    time.sleep(5)
    with observer.cond:
        events_idle = observer.events - events_before
    report.cpu(phase, run.labels)
    report.add(
        "operator CPU while idle",
        f"{1000 * phase.cpu('operator') / phase.wall:.1f} ms per second "
        f"(resolution {1000 / CLK_TCK:.0f} ms, loop-lag sleeper paused); watch events "
        f"meanwhile: {events_idle}",
    )
    cpu = sum(phase.cpu(label) for label in run.labels if label.startswith("operator"))
    run.summary["idle_cpu_pct"] = 100 * cpu / phase.wall
    run.summary["rss_mib"] = run.memory()
    tasks = run.pools()
    if tasks is not None:
        run.collections(tasks)
        run.loop_lag(tasks)
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
