"""What the soak prints and keeps: the global and per-watcher timeline, the run lines parsed
from the operators' logs, the table, the failure explanation and the summary line."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.soak.invariants import Findings, RunLine, ServedState
from tests.soak.ledger import Delivery


@dataclass
class Timeline:
    """Everything that happened, per watcher ("*" = global), with wall-clock times; global
    entries are also printed as progress."""

    started: float = field(default_factory=time.time)
    entries: list[tuple[float, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, watcher: str, text: str) -> None:
        with self.lock:
            self.entries.append((time.time(), watcher, text))
        if watcher == "*":
            print(f"[{time.time() - self.started:7.1f}s] {text}", file=sys.stderr, flush=True)

    def of(self, watcher: str) -> list[tuple[float, str, str]]:
        with self.lock:
            return [e for e in self.entries if e[1] in (watcher, "*")]


# One line per run (controller/runtime/scheduler.py `_post`): `ns/name: schedule run (slot): ...`,
# or `ns/name: manual run failed: ...`, after kopf's `[date time,ms] logger [LEVEL]` prefix.
_RUN_LINE = re.compile(
    r"^\[(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\].*? "
    r"(?P<namespace>[\w-]+)/(?P<name>[\w-]+): (?P<trigger>schedule|manual) run"
    r"(?: \((?P<slot>[^)]+)\))?(?P<failed> failed)?:"
)


def parse_runs(paths: Sequence[Path]) -> Iterator[RunLine]:
    """The runs logged in each operator process's log (`operator-<replica>-<n>.log`)."""
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            match = _RUN_LINE.match(line)
            if match is None:
                continue
            at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            process = path.stem.removeprefix("operator-")
            yield RunLine(at, process, match["name"], match["slot"], match["failed"] is None)


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_rows(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows), flush=True)


def watcher_timeline(
    watcher: str,
    timeline: Timeline,
    served: Sequence[ServedState],
    deliveries: Sequence[Delivery],
    runs: Sequence[RunLine],
) -> list[str]:
    """Actions and faults, lists served, deliveries and runs of one watcher, in time order."""
    rows = [(t, f"{'*' if w == '*' else ' '} {text}") for t, w, text in timeline.of(watcher)]
    for state in served:
        rows.append((state.at, f"  served {len(state.views)} matches {sorted(state.views)[:6]}"))
    for d in deliveries:
        if d.watcher == watcher:
            changes = (d.payload or {}).get("changes") or []
            what = ", ".join(
                f"{c.get('type')} {c.get('matchId')} {c.get('categories')}" for c in changes
            )
            rows.append(
                (
                    d.at,
                    f"  delivery #{d.seq} {d.delivery_id[:8]} {d.answer} "
                    f"applied={d.applied}: {what}",
                )
            )
    for run in runs:
        if run.watcher == watcher:
            rows.append((run.at, f"  run {run.slot or 'manual'} in {run.process} ok={run.ok}"))
    return [f"{t - timeline.started:8.2f}s {text}" for t, text in sorted(rows, key=lambda r: r[0])]


def explain(
    *,
    seed: int,
    out: Path,
    findings: Findings,
    other_problems: Sequence[str],
    timelines: Mapping[str, list[str]],
) -> None:
    """The seed, every failing watcher's problems by kind, the first three in full with their
    timelines; each failing watcher's timeline is also kept in `out/timeline-<watcher>.txt`."""
    print(f"\nFAILED (seed {seed}; reproduce with SOAK_SEED={seed})", flush=True)
    for problem in other_problems:
        print(f"  {problem}")
    for watcher, problems in sorted(findings.problems.items()):
        kinds = Counter(p.partition(":")[0] for p in problems)
        print(f"  {watcher}: {', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}")
        if watcher in timelines:
            lines = [*problems, "", *timelines[watcher]]
            (out / f"timeline-{watcher}.txt").write_text("\n".join(lines) + "\n")
    for watcher, problems in list(findings.problems.items())[:3]:
        print(f"\n--- {watcher}: {len(problems)} problem(s)")
        for problem in problems[:15]:
            print(f"  {problem}")
        if watcher in timelines:
            print(f"--- timeline of {watcher} (all of it in {out}/timeline-{watcher}.txt)")
            for line in timelines[watcher][-80:]:
                print(f"  {line}")
    print(flush=True)
