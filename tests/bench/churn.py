"""`python -m tests.bench.churn [--cycles N]`: memory under watcher churn (`make bench`).

ARCHITECTURE.md section 9: "a watcher deleted and re-created 10,000 times leaves memory flat".
In one process, no API server: the operator's own objects for a watcher (the dispatcher's entry,
a real WatcherScheduler writing its first status to an in-memory stand-in, the runner's and the
metrics' per-watcher state) are created and deleted N times, with the heap frozen at every quiet
moment as controller/runtime/heap.py does it in production, and never thawed (a thaw comes every
6 hours). Printed: how many more objects the collector tracks (frozen ones included) per cycle,
and the growth of RSS, over the cycles after a warm-up. Flat is the target; before the cycle
between an entry and its scheduler was cut, 18 objects and ~3.7 MiB per 1,000 cycles stayed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from kubernetes import client

from controller.adapters.kube import Kube
from controller.adapters.metrics import Metrics
from controller.adapters.snapshots import KubeBacking
from controller.core.config import Settings
from controller.core.model import WatcherRef, WatcherSpec
from controller.core.outcome import Outcome
from controller.core.status import WatcherStatus
from controller.core.trigger import Trigger
from controller.runtime.dispatcher import Dispatcher
from controller.runtime.heap import HeapKeeper
from controller.runtime.runner import WatcherRunner
from controller.runtime.scheduler import WatcherScheduler
from tests.bench.operator.procfs import proc_status


class ApiServer:
    """Status writes land here; nothing is kept."""

    async def patch_status(
        self, ref: WatcherRef, status: Mapping[str, Any], resource_version: str | None = None
    ) -> tuple[dict[str, Any], str]:
        return dict(status), "2"

    async def read_status(self, ref: WatcherRef) -> tuple[dict[str, Any], str]:
        return {}, "2"

    async def post_event(self, ref: WatcherRef, type_: str, reason: str, message: str) -> None:
        pass


class NoRuns:
    async def run(
        self,
        ref: WatcherRef,
        spec: WatcherSpec,
        trigger: Trigger,
        *,
        previous: WatcherStatus,
        zone: ZoneInfo,
        started: datetime,
    ) -> Outcome:
        raise AssertionError("watchers created now have no run due")


def watcher(name: str, schedule: str = "@yearly") -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "churn",
            "name": name,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "resourceVersion": "1",
            "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "spec": {
            "schedule": schedule,
            "source": {"fogis": {"credentialsSecretRef": {"name": f"{name}-fogis"}}},
        },
        "status": {},
    }


def rss_mib() -> float:
    return int(proc_status(os.getpid()).get("VmRSS", "0 kB").split()[0]) / 1024


def tracked() -> int:
    """Objects the collector tracks, frozen ones included."""
    return len(gc.get_objects()) + gc.get_freeze_count()


async def churn(cycles: int, resident: int) -> dict[str, float]:
    settings, api, metrics = Settings(), ApiServer(), Metrics()
    kube_api = client.ApiClient()  # never called: the schedulers' cluster is `api`
    backing = KubeBacking(Kube(kube_api, kube_api, 1))
    runner = WatcherRunner(backing=backing, settings=settings, metrics=metrics)

    def make(ref: WatcherRef, body: Callable[[], Mapping[str, Any]]) -> WatcherScheduler:
        return WatcherScheduler(
            ref=ref,
            body=body,
            runner=NoRuns(),
            cluster=api,
            settings=settings,
            on_status=metrics.watcher_state,
        )

    async def release(ref: WatcherRef, deleted: bool) -> None:
        await runner.forget(ref)

    stepped = asyncio.Event()
    keeper = HeapKeeper(freeze_seconds=0.0)

    def quiet() -> None:
        keeper.quiet()
        stepped.set()

    dispatcher = Dispatcher(make=make, workers=4, release=release, quiet=quiet)
    dispatcher.start()

    async def settle() -> None:
        stepped.clear()
        await stepped.wait()

    # Watchers that stay, due before every deleted one (whose heap items wait below theirs).
    for i in range(resident):
        await dispatcher.observe(watcher(f"resident-{i}", "@daily"))
    await settle()
    # A warm-up round: caches, interned strings and pools reach their size first.
    for i in range(200):
        body = watcher(f"warm-{i}")
        await dispatcher.observe(body)
        await settle()
        await dispatcher.observe(body, deleted=True)  # released at once: nothing to settle
    before = {"tracked": tracked(), "rss": rss_mib()}
    for i in range(cycles):
        body = watcher(f"churn-{i % 50}")  # re-created under the same names, new uids
        await dispatcher.observe(body)
        await settle()
        await dispatcher.observe(body, deleted=True)
    after = {"tracked": tracked(), "rss": rss_mib()}
    await dispatcher.stop(5)
    return {
        "cycles": cycles,
        "tracked_per_cycle": (after["tracked"] - before["tracked"]) / cycles,
        "rss_growth_mib": after["rss"] - before["rss"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.churn", description=__doc__)
    parser.add_argument("--cycles", type=int, default=2000, help="create/delete cycles")
    parser.add_argument("--resident", type=int, default=100, help="watchers that stay")
    args = parser.parse_args(argv)
    figures = asyncio.run(churn(args.cycles, args.resident))
    print(
        "churn: "
        + " ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
