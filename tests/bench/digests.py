"""`python -m tests.bench.digests [--watchers N]`: N quiet-hours digests due at one moment.

Issue 22: "10,000 referees ending their night at 07:00 never stampede FOGIS", and its budget of
~170 sends a second. The operator's own path, in one process: the real Dispatcher (its permits,
MLCD_MAX_CONCURRENT_RUNS), WatcherScheduler and WatcherRunner, each watcher's status holding
`notify.heldUntil` (one moment for all) and its "notified" ConfigMap the people's state
written by the real store (10-30 matches, 1-3 of them changed overnight: moved, cancelled or
new), its notify Secret one `json://` URL. The Kubernetes API is an in-memory stand-in (it
counts the calls; their latency is not in the figures), and every Apprise send goes to one
loopback receiver in a process of its own (its CPU is not the operator's), which also stands in
for FOGIS and counts what reaches it there (must be 0: the digest sends what was held).

Printed: wall time from the due moment to the last digest's Event, digests/s, sends/s, due ->
sent (the receiver has the message) and due -> done (its Event written) p50/p99, API calls per
digest by kind, peak RSS, FOGIS requests. Figures only, nothing asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from controller.adapters.kube import Kube, SecretData, StoredConfigMap
from controller.adapters.metrics import Metrics
from controller.adapters.peoplestore import ConfigMapPeople, KubeBacking
from controller.adapters.statefiles import merge_patch
from controller.core.config import Settings, load_settings
from controller.core.diff import Snapshot, normalise_all
from controller.core.errors import ConfigMapConflict, StatusConflict
from controller.core.model import WatcherRef
from controller.core.people import PeopleState, url_key
from controller.runtime.dispatcher import Dispatcher
from controller.runtime.heap import HeapKeeper
from controller.runtime.runner import WatcherRunner
from controller.runtime.scheduler import WatcherScheduler
from tests.bench.operator.figures import pct
from tests.bench.operator.harness import OUT_DIR
from tests.fakes.background import Answer, BackgroundServer
from tests.fakes.fogis.records import make_match
from tests.support.fake_process import LISTENING, FakeProcess

NAMESPACE = "digests"
ZONE = "Europe/Stockholm"
ARRIVALS = "/_arrivals"  # the receiver's record, read once at the end
ISSUE_SCALE = 10_000  # issue 22's "10,000 referees ending their night at 07:00"
FOGIS_PATH = "/fogis"  # the watchers' FOGIS base URL on the receiver: nothing may come here


class Receiver(BackgroundServer):
    """Answers 200 to everything; records when each path was first posted to (time.time(), the
    clock the due moment is in) and how many requests came for FOGIS."""

    thread_name = "digest-receiver"

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 0)
        self._lock = threading.Lock()
        self._arrived: dict[str, float] = {}
        self._fogis = 0

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        now = time.time()
        if target == ARRIVALS:
            with self._lock:
                record = {"sent": self._arrived, "fogis": self._fogis}
                return Answer(
                    200, (("Content-Type", "application/json"),), json.dumps(record).encode()
                )
        with self._lock:
            if target.startswith(FOGIS_PATH):
                self._fogis += 1
            else:
                self._arrived.setdefault(target, now)
        return Answer(200)


def serve_receiver() -> int:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with Receiver() as receiver:
        print(f"{LISTENING}http://{receiver.host}:{receiver.port}", flush=True)
        stopped.wait()
    return 0


class InMemoryApi:
    """The Kubernetes calls a digest makes (controller/adapters/kube.py's Kube, same signatures
    and compare-and-swap rules), kept in dicts and counted by kind. `done` gets each watcher's
    Event: the last thing its digest does."""

    def __init__(self, done: Callable[[WatcherRef, str], None]) -> None:
        self.calls: Counter[str] = Counter()
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.config_maps: dict[tuple[str, str], StoredConfigMap] = {}
        self.statuses: dict[str, tuple[dict[str, Any], int]] = {}  # by uid
        self._done = done
        self._version = 0

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    async def read_secret(self, namespace: str, name: str, *, purpose: str) -> SecretData:
        self.calls[f"read_secret({purpose})"] += 1
        return SecretData(dict(self.secrets[namespace, name]), "1", f"uid-{name}")

    async def read_config_map(self, namespace: str, name: str) -> StoredConfigMap | None:
        self.calls["read_config_map"] += 1
        return self.config_maps.get((namespace, name))

    async def write_config_map(
        self,
        ref: WatcherRef,
        name: str,
        binary_data: Mapping[str, bytes],
        labels: Mapping[str, str],
        resource_version: str | None,
    ) -> str:
        self.calls["write_config_map"] += 1
        stored = self.config_maps.get((ref.namespace, name))
        if resource_version != (None if stored is None else stored.resource_version):
            raise ConfigMapConflict(f"ConfigMap {name} changed meanwhile")
        version = self._next_version()
        self.config_maps[ref.namespace, name] = StoredConfigMap(
            dict(binary_data), (ref.uid,), version
        )
        return version

    async def patch_status(
        self, ref: WatcherRef, status: Mapping[str, Any], resource_version: str | None = None
    ) -> tuple[dict[str, Any], str]:
        self.calls["patch_status"] += 1
        current, version = self.statuses[ref.uid]
        if resource_version is not None and resource_version != str(version):
            raise StatusConflict(f"patching status of {ref.name}: the object changed meanwhile")
        new = int(self._next_version())
        self.statuses[ref.uid] = (merge_patch(current, status), new)
        return self.statuses[ref.uid][0], str(new)

    async def read_status(self, ref: WatcherRef) -> tuple[dict[str, Any], str]:
        self.calls["read_status"] += 1
        status, version = self.statuses[ref.uid]
        return status, str(version)

    async def post_event(self, ref: WatcherRef, type_: str, reason: str, message: str) -> None:
        self.calls["post_event"] += 1
        self._done(ref, reason)


def _matches(
    rng: random.Random, first_id: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """A referee's list as they were last told it and as FOGIS says it now: 10-30 matches, 1-3
    of them changed overnight (a kickoff moved, a match cancelled, a new assignment), and how
    many."""
    count = rng.randint(10, 30)
    told = [make_match(first_id + i) for i in range(count)]
    latest = [dict(match) for match in told]
    changed = rng.sample(range(count), rng.randint(1, 3))
    for index in changed:
        kind = rng.choice(("moved", "cancelled", "new"))
        if kind == "moved":
            latest[index] = make_match(first_id + index, avsparkstid="18:30")
        elif kind == "cancelled":
            latest[index] = make_match(first_id + index, installd=True)
        else:
            del told[index]  # not told yet: a new assignment
            told.insert(index, make_match(first_id + 10_000 + index))
    return told, latest, len(changed)


def _hhmm(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M")


async def _populate(
    api: InMemoryApi, settings: Settings, watchers: int, base_url: str, rng: random.Random
) -> list[dict[str, Any]]:
    """The watchers' objects, Secrets, statuses and people's states (heldUntil: see _hold)."""
    zone = ZoneInfo(ZONE)
    now = datetime.now(UTC)
    # Quiet hours that have ended (their digest is due), a daily slot half a day away (no run
    # of its own), created a minute ago (no slot missed since).
    quiet = {
        "start": _hhmm(now + timedelta(hours=2), zone),
        "end": _hhmm(now + timedelta(hours=3), zone),
    }
    schedule = f"0 {(now.astimezone(zone).hour + 12) % 24} * * *"
    created = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    key = settings.notify_key.encode()
    bodies = []
    for i in range(watchers):
        name, uid = f"referee-{i:05d}", f"uid-{i:05d}"
        ref = WatcherRef(NAMESPACE, name, uid)
        url = f"json://{base_url.removeprefix('http://')}/w/{i}"
        api.secrets[NAMESPACE, f"{name}-people"] = {"urls": url}
        told, latest, changed = _matches(rng, 100_000 + i * 100)
        held = Snapshot(normalise_all(told), revision=1)
        state = PeopleState(
            latest=Snapshot(normalise_all(latest), revision=2), cursors={url_key(url, key): held}
        )
        await ConfigMapPeople(cast(Kube, api), ref).save(state)
        status: dict[str, Any] = {"notify": {"heldChanges": changed}}
        api.statuses[uid] = (status, int(api._next_version()))
        bodies.append(
            {
                "metadata": {
                    "namespace": NAMESPACE,
                    "name": name,
                    "uid": uid,
                    "generation": 1,
                    "resourceVersion": str(api.statuses[uid][1]),
                    "creationTimestamp": created,
                },
                "spec": {
                    "schedule": schedule,
                    "timeZone": ZONE,
                    "source": {
                        "fogis": {
                            "baseUrl": f"{base_url}{FOGIS_PATH}",
                            "credentialsSecretRef": {"name": f"{name}-fogis"},
                        }
                    },
                    "notify": {"secretRef": {"name": f"{name}-people"}, "quietHours": quiet},
                },
                "status": status,
            }
        )
    return bodies


def _hold(api: InMemoryApi, bodies: Sequence[dict[str, Any]], due: datetime) -> None:
    """Every watcher's digest due at `due` (what its last run in quiet hours wrote)."""
    held = due.strftime("%Y-%m-%dT%H:%M:%SZ")
    for body in bodies:
        body["status"]["notify"]["heldUntil"] = held  # the stand-in's status is this dict


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench(watchers: int, base_url: str, lead: float) -> dict[str, Any]:
    settings = load_settings(os.environ)
    done: dict[str, tuple[float, str]] = {}
    all_done = asyncio.Event()

    def finished(ref: WatcherRef, reason: str) -> None:
        if ref.uid not in done:
            done[ref.uid] = (time.time(), reason)
            if len(done) == watchers:
                all_done.set()

    api = InMemoryApi(finished)
    bodies = await _populate(api, settings, watchers, base_url, random.Random(22))  # noqa: S311 - test data, not secrets
    start = time.monotonic()
    due = datetime.fromtimestamp(int(time.time() + lead) + 1, UTC)
    _hold(api, bodies, due)
    metrics = Metrics()
    runner = WatcherRunner(backing=KubeBacking(cast(Kube, api)), settings=settings, metrics=metrics)

    def make(ref: WatcherRef, body: Callable[[], Mapping[str, Any]]) -> WatcherScheduler:
        return WatcherScheduler(
            ref=ref,
            body=body,
            runner=runner,
            cluster=api,
            settings=settings,
            on_status=metrics.watcher_state,
        )

    async def release(ref: WatcherRef, deleted: bool) -> None:
        await runner.forget(ref)

    settled = asyncio.Event()
    keeper = HeapKeeper()

    def quiet() -> None:
        keeper.quiet()
        settled.set()

    dispatcher = Dispatcher(
        make=make, workers=settings.max_concurrent_runs, release=release, quiet=quiet
    )
    dispatcher.start()
    settled.clear()
    for body in bodies:
        await dispatcher.observe(body)
    await asyncio.sleep(max(0.0, due.timestamp() - time.time()))
    # Counted from the due moment; `late`: some watchers' first steps (to wait for it) came
    # after it, their setup mixed into the figures.
    late = not settled.is_set()
    setup = time.monotonic() - start
    api.calls.clear()
    rss_before, cpu = rss_mib(), time.process_time()
    # Bounded: a digest that never ends shows as missing in "done", not as a hang.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done.wait(), timeout=60 + watchers / 20)
    cpu = time.process_time() - cpu  # the loop's and every thread's, the receiver's not
    await dispatcher.stop(5)
    await runner.aclose()
    return {
        "cpu": cpu,
        "settings": settings,
        "due": due.timestamp(),
        "setup": setup,
        "late": late,
        "done": done,
        "calls": api.calls,
        "rss_before": rss_before,
        "rss_peak": rss_mib(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.digests", description=__doc__)
    parser.add_argument(
        "--watchers", type=int, default=2_000, help="digests due at once (10,000: ~6 minutes)"
    )
    parser.add_argument(
        "--lead", type=float, default=None, help="seconds from the setup to the due moment"
    )
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver:
        return serve_receiver()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    # Every watcher's first step (to wait for the due moment) comes before it: 1-3 ms each on
    # a busy 2-core machine.
    lead = args.lead if args.lead is not None else 3 + args.watchers / 200
    with FakeProcess("tests.bench.digests", ["--receiver"], OUT_DIR / "digests-receiver.log") as rx:
        figures = asyncio.run(bench(args.watchers, rx.url, lead))
        with urllib.request.urlopen(f"{rx.url}{ARRIVALS}", timeout=30) as answer:  # noqa: S310 - loopback
            record = json.load(answer)
    report(args.watchers, figures, record)
    return 0


def report(watchers: int, figures: Mapping[str, Any], record: Mapping[str, Any]) -> None:
    due = figures["due"]
    done: dict[str, tuple[float, str]] = figures["done"]
    sent = [at - due for at in record["sent"].values()]
    ended = [at - due for at, _ in done.values()]
    wall = max(ended, default=0.0)
    rate, send_rate = (len(done) / wall, len(sent) / wall) if wall else (0.0, 0.0)
    reasons = ", ".join(f"{r} {n}" for r, n in Counter(r for _, r in done.values()).items())
    calls: Counter[str] = figures["calls"]
    per = {kind: count / max(1, len(done)) for kind, count in sorted(calls.items())}
    api_calls = sum(per.values())
    late = figures["late"]
    settings: Settings = figures["settings"]
    print(
        f"digests: {watchers} watchers due at one moment, MLCD_MAX_CONCURRENT_RUNS="
        f"{settings.max_concurrent_runs}; lead {figures['setup']:.1f} s"
        + (" (the setup was not done by the due moment: raise --lead)" if late else "")
    )
    print(f"  done {len(done)}/{watchers} ({reasons or 'none'})")
    print(f"  wall {wall:.1f} s   {rate:.0f} digests/s   {send_rate:.0f} sends/s (budget ~170/s)")
    print(f"  due -> sent  p50 {_s(pct(sent, 0.5))}  p99 {_s(pct(sent, 0.99))}")
    print(f"  due -> done  p50 {_s(pct(ended, 0.5))}  p99 {_s(pct(ended, 0.99))}")
    print(
        f"  API calls per digest {api_calls:.2f}: "
        + ", ".join(f"{kind} {n:.2f}" for kind, n in per.items())
    )
    cpu_ms = 1000 * figures["cpu"] / max(1, len(done))
    print(
        f"  CPU {cpu_ms:.1f} ms per digest (this process, all its threads; the GIL lets them "
        f"use about one core: at most ~{1000 / cpu_ms if cpu_ms else 0:.0f} digests/s)"
    )
    if watchers < ISSUE_SCALE and rate:
        print(f"  at this rate {ISSUE_SCALE} digests would take ~{ISSUE_SCALE / rate:.0f} s")
    rss, before = figures["rss_peak"], figures["rss_before"]
    print(f"  peak RSS {rss:.0f} MiB ({before:.0f} MiB at the due moment)")
    print(f"  FOGIS requests {record['fogis']}")
    print(
        f"bench: digests={len(done)} wall_s={wall:.1f} digests_per_s={rate:.0f} "
        f"sends_per_s={send_rate:.0f} cpu_ms_per_digest={cpu_ms:.1f} "
        f"sent_p50_s={_s(pct(sent, 0.5))} sent_p99_s={_s(pct(sent, 0.99))} "
        f"api_calls_per_digest={api_calls:.2f} rss_mib={rss:.0f} fogis_requests={record['fogis']}",
        flush=True,
    )


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
