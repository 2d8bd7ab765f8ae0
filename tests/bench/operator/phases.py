"""Issue 14's phases after the storms: hashed schedules for every watcher, then a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from controller.core.report import rfc3339
from tests.bench.operator.figures import Histogram, fmt_s, spread
from tests.bench.operator.harness import (
    Run,
    operator_probe,
    patch_all,
    sleep_until,
    wall_to_monotonic,
)
from tests.bench.operator.observer import Observer
from tests.bench.operator.procfs import Phase
from tests.support.metrics import samples

LAG = "matchwatcher_schedule_lag_seconds"


def hashed_phase(run: Run) -> None:
    """Every watcher on `H/M * * * *` (M = --hashed-minutes, 2 by default): production's
    `H * * * *` folded into M minutes, so each watcher runs once within the bench window
    instead of once an hour. Each watcher keeps a stable minute from its uid and all run at
    second 0, exactly as with `H * * * *`; only the slots are fuller: N/M watchers a slot instead
    of N/60, so the lag and loop figures here are an upper bound of production's (M = 60 is
    production's load, an hour long)."""
    report, observer, n = run.report, run.observer, run.options.watchers
    minutes = run.options.hashed_minutes
    expression = f"H/{minutes} * * * *"
    report.section(f"hashed schedules: {expression!r} for all {n} watchers")
    began = time.monotonic()
    patch_all(run.cluster, run.namespace, run.names, {"spec": {"schedule": expression}})
    report.add("schedule patched on every watcher", fmt_s(time.monotonic() - began))
    # The window: M whole minutes from the first minute at least 5 s away, so each watcher's
    # hashed minute falls in it exactly once.
    start = (datetime.now(UTC) + timedelta(seconds=65)).replace(second=0, microsecond=0)
    end = start + timedelta(minutes=minutes)
    sleep_until(wall_to_monotonic(start) - 1)
    before = run.operator.metrics()
    operator_probe(run.pid, run.tasks_file)
    phase = Phase("hashed", run.meter.read())

    first, last = rfc3339(start), rfc3339(end)

    def ran() -> int:
        """Watchers that ran in the window (each runs at most once in it). Called on every
        watch event, so it only looks at the window's slots."""
        return sum(len(landed) for slot, landed in observer.landed.items() if first <= slot < last)

    done = observer.wait(lambda: ran() >= n, wall_to_monotonic(end) + 60)
    observer.settle(2.0, 30)
    phase.end = run.meter.read()
    after = run.operator.metrics()
    with observer.cond:
        slots = {slot: len(landed) for slot, landed in observer.landed.items()}
        count = ran()
    inside = [v for k, v in sorted(slots.items()) if first <= k < last]
    report.add(
        f"watchers run in the window {rfc3339(start)} + {minutes} min",
        f"{count} of {n}{'' if done else ' (NOT ALL)'}; per slot {inside}",
    )
    lag = Histogram.parse(after, LAG) - Histogram.parse(before, LAG)
    report.add(
        "start lag (histogram)",
        f"{lag.summary()}  slowest {lag.highest_bucket()}  (n={lag.count:.0f})",
    )
    run.summary["lag_p99_s"] = lag.quantile(0.99)
    # The summary's stall is this phase's, as its start lag is: issue 14's target for both is
    # the hashed schedules' (storms stall longer, in full collections; the report shows each).
    run.phase_end(phase, stall_key="loop_stall_max_ms")


def poll(predicate: Callable[[], bool], observer: Observer, until: float) -> bool:
    """observer.wait for an O(N) predicate: twice a second, not on each of N watch events."""
    while time.monotonic() < until:
        with observer.cond:
            if predicate():
                return True
        time.sleep(0.5)
    return False


def restart(run: Run, while_down: Callable[[], None] = lambda: None) -> float:
    """Stop the operator(s), do `while_down`, start again; returns when the start began."""
    for operator in run.operators:
        operator.stop()
    while_down()
    began = time.monotonic()
    for operator in run.operators:
        operator.start()
    run.meter.pids["operator"] = run.pid
    for index, shard in enumerate(run.shards, start=1):
        run.meter.pids[f"operator{index}"] = shard.pid
    run.report.add("start to /healthz", fmt_s(time.monotonic() - began))
    return began


def next_runs_exported(run: Run) -> int:
    """Watchers whose next run the operator(s) export on /metrics."""
    return sum(
        len(list(samples(operator.metrics(), "matchwatcher_next_run_timestamp_seconds")))
        for operator in run.operators
    )


def restart_phase(run: Run) -> None:
    """Restart the operator twice. First as in production, every status intact: how long until
    its metrics export every watcher's next run again (it knows them all; the NEXT RUN column
    never went away). Then with every status.nextExecutionTime cleared while it is down (so
    "known again" is visible on the watch, and 10,000 status writes are needed): how long until
    every NEXT RUN is back. No slot runs twice (observer.doubled, over the whole benchmark),
    through the slots that follow."""
    report, observer, n = run.report, run.observer, run.options.watchers
    report.section(f"restart with {n} watchers")
    began = restart(run)
    while not (exported := next_runs_exported(run) >= n) and time.monotonic() < began + 180:
        time.sleep(0.5)
    took = run.summary["restart_exported_s"] = time.monotonic() - began
    report.add(
        "every next run exported again (status intact)",
        f"{fmt_s(took)}{'' if exported else ' (TIMED OUT)'}",
    )

    def cleared() -> None:
        patch_all(
            run.cluster,
            run.namespace,
            run.names,
            {"status": {"nextExecutionTime": None}},
            status=True,
        )
        poll(
            lambda: not any(observer.status.get(k, {}).get("nextExecutionTime") for k in run.names),
            observer,
            time.monotonic() + 60,
        )
        with observer.cond:
            observer.next_known = {}

    began = restart(run, while_down=cleared)
    known = observer.wait(lambda: len(observer.next_known or {}) >= n, began + 180)
    with observer.cond:
        times = [t - began for t in (observer.next_known or {}).values()]
        observer.next_known = None
    report.add(
        "every NEXT RUN known again (cleared first; from the start)",
        f"{len(times)} of {n}, the last {fmt_s(max(times, default=None))}"
        f"{'' if known else ' (TIMED OUT)'}; {spread(times)}",
    )
    run.summary["restart_next_known_s"] = max(times, default=None)
    # Through the next whole minute's slot and its runs: a slot re-run would show by now.
    next_minute = (datetime.now(UTC) + timedelta(seconds=60)).replace(second=0, microsecond=0)
    sleep_until(wall_to_monotonic(next_minute) + 5)
    observer.settle(2.0, 60)
    with observer.cond:
        doubled = dict(observer.doubled)
    report.add(
        "slots run twice (whole benchmark)",
        f"{sum(doubled.values())} on {len(doubled)} watchers"
        + (f": {', '.join(sorted(doubled)[:5])}" if doubled else ""),
    )
    run.summary["slots_run_twice"] = float(sum(doubled.values()))
