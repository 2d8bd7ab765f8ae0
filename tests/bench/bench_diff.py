"""How long normalising and comparing two 10,000-match lists takes (target: compare < 50 ms),
and the longest event-loop stall while a whole pass compares, encodes, signs and stores a
20,000-match list with every match changed (target: < 50 ms).

    python -m tests.bench.bench_diff [--matches 10000] [--repeat 30] [--stall-matches 20000]

Prints figures only; it asserts nothing, so a slow machine cannot fail a build with it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from controller.adapters.snapshots import FileSnapshots
from controller.adapters.webhook import RetryPolicy, WebhookSender, resolve_target
from controller.core.diff import Snapshot, compare, normalise_all, window_for
from controller.core.model import WatcherRef, WebhookSpec
from controller.runtime.detection import Fetched, WebhookNotifier, detect
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


class LoopLag:
    """The longest the event loop went without running a 1 ms timer while it was sampled, and
    the longest garbage collection meanwhile (it holds the GIL, whichever thread runs it)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_gc = 0.0
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.longest_gc = max(self.longest_gc, time.perf_counter() - self._gc_started)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.001)
            self.longest = max(self.longest, loop.time() - before - 0.001)

    def __enter__(self) -> LoopLag:
        gc.callbacks.append(self._gc)
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        gc.callbacks.remove(self._gc)


async def _accept(address: str, port: int) -> list[str]:
    return [address]


async def pass_stalls(count: int, repeat: int) -> tuple[list[float], list[float]]:
    """Loop stalls and longest garbage collections (ms) of `repeat` passes, each finding every
    one of `count` matches changed (kick-off moved and cancelled, then back), delivered signed
    (HMAC and Standard Webhooks) to an in-process receiver and stored as run-once stores it.
    Each pass starts with the heap frozen, as the operator's are (controller/runtime/heap.py)."""
    rng = random.Random(11)  # noqa: S311 - reproducible data, not security
    lists = [
        make_match(6_000_000 + i, on=TODAY + timedelta(days=rng.randrange(0, 365)))
        for i in range(count)
    ]
    changed = [
        {**record, "avsparkstid": "13:30", "tid": None, "installd": True} for record in lists
    ]
    spec = WebhookSpec(url="http://127.0.0.1:9/hook", secret_name="hook", max_attempts=1)
    target = resolve_target(
        spec, {"hmacKey": "bench-key", "previousHmacKey": "old-key"}, source="/bench"
    )
    receiver = httpx.MockTransport(lambda request: httpx.Response(204))
    stalls: list[float] = []
    collections: list[float] = []
    async with httpx.AsyncClient(transport=receiver) as client:
        sender = WebhookSender(client, policy=RetryPolicy(), user_agent="bench", resolve=_accept)
        notifier = WebhookNotifier(sender, target, asyncio.Semaphore(1))
        with tempfile.TemporaryDirectory() as directory:
            store = FileSnapshots(Path(directory) / "snapshot.json")
            for index in range(repeat + 1):  # the first pass records the baseline
                gc.collect()
                gc.freeze()
                with LoopLag() as lag:
                    await detect(
                        watcher=WatcherRef("bench", "big", "uid-bench"),
                        zone=ZoneInfo("Europe/Stockholm"),
                        days=(7, 365),
                        trigger="schedule",
                        now=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
                        source=Fetched(changed if index % 2 else lists),
                        store=store,
                        notifier=notifier,
                    )
                if index:
                    stalls.append(lag.longest * 1000)
                    collections.append(lag.longest_gc * 1000)
    gc.unfreeze()
    return sorted(stalls), sorted(collections)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_diff")
    parser.add_argument("--matches", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--stall-matches", type=int, default=20_000)
    parser.add_argument("--stall-repeat", type=int, default=4)
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
    stalls, collections = asyncio.run(pass_stalls(args.stall_matches, args.stall_repeat))
    print(
        f"loop stall in a pass of {args.stall_matches} matches, all changed: "
        f"max {stalls[-1]:.0f} ms, median {statistics.median(stalls):.0f} ms "
        f"({args.stall_repeat} passes; longest garbage collection in one: "
        f"{collections[-1]:.0f} ms)"
    )


if __name__ == "__main__":
    main()
