"""How long normalising and comparing two 10,000-match lists takes (target: compare < 50 ms).

    python -m tests.bench.bench_diff [--matches 10000] [--repeat 30]

Prints figures only; it asserts nothing, so a slow machine cannot fail a build with it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from controller.core.diff import Snapshot, compare, normalise_all, window_for
from tests.fakes.fogis.records import make_match, make_referee

TODAY = date(2026, 11, 28)


def _next_version(record: dict[str, Any], roll: float) -> dict[str, Any] | None:
    """The record one run later: mostly as it was, sometimes changed, rarely gone."""
    if roll < 0.005:
        return None
    if roll < 0.015:
        return {**record, "installd": True}
    if roll < 0.025:
        return {**record, "avsparkstid": "13:30", "tid": None}
    referees = record["domaruppdraglista"]
    if roll < 0.035:
        return {**record, "domaruppdraglista": [*referees[:2], make_referee(99_000, "Ny", "AD2")]}
    if roll < 0.085:  # no change to report: reordered referees, a result, a renamed venue
        return {
            **record,
            "domaruppdraglista": referees[::-1],
            "matchlag1mal": 2,
            "anlaggningnamn": "Nytt namn IP",
        }
    return record


def match_lists(count: int, seed: int = 7) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An old list and a new one with the mix a busy season produces between two runs."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not security
    old = [
        make_match(6_000_000 + i, on=TODAY + timedelta(days=rng.randrange(-7, 365)))
        for i in range(count)
    ]
    new = [r for r in (_next_version(record, rng.random()) for record in old) if r is not None]
    new += [
        make_match(7_000_000 + i, on=TODAY + timedelta(days=rng.randrange(0, 365)))
        for i in range(count // 200)
    ]
    return old, new


def timings(action: Callable[[], object], repeat: int) -> Sequence[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return sorted(samples)


def report(name: str, samples: Sequence[float]) -> None:
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    print(f"{name:<28} median {statistics.median(samples):8.2f} ms   p95 {p95:8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_diff")
    parser.add_argument("--matches", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    old_raw, new_raw = match_lists(args.matches)
    old, new = Snapshot(normalise_all(old_raw)), Snapshot(normalise_all(new_raw))
    window = window_for(TODAY, 7, 365)
    changes = compare(old, new, window)
    kinds = {kind: sum(c.type == kind for c in changes) for kind in ("new", "removed", "changed")}
    print(f"{len(old.matches)} -> {len(new.matches)} matches, changes: {kinds}")
    report("normalise_all", timings(lambda: normalise_all(new_raw), args.repeat))
    report("compare", timings(lambda: compare(old, new, window), args.repeat))
    text = new.to_json()
    print(f"snapshot JSON: {len(text.encode()) / 1024:.0f} KiB")
    report("Snapshot.to_json", timings(new.to_json, args.repeat))
    report("Snapshot.from_json", timings(lambda: Snapshot.from_json(text), args.repeat))
    report("digest (fresh snapshot)", timings(lambda: Snapshot(new.matches).digest, args.repeat))


if __name__ == "__main__":
    main()
