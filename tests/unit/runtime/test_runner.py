"""The runner's per-watcher state belongs to one object (uid), not to a name."""

from __future__ import annotations

from kubernetes import client

from controller.adapters.kube import Kube
from controller.adapters.metrics import Metrics
from controller.adapters.snapshots import KubeBacking
from controller.core.config import Settings
from controller.core.model import WatcherRef
from controller.runtime.runner import WatcherRunner

BASE = "https://fogis.test/mdk"


async def test_a_deleted_watcher_is_forgotten_without_the_one_recreated_under_its_name() -> None:
    """Deleted during a run, the old object is released when its run ends: the new object of
    the same name has logged in and held back a drop by then (its login backoff is in its own
    status, tests/unit/core/test_loginguard.py)."""
    api = client.ApiClient()
    kube = Kube(api, api, 1)  # never called: no run here
    runner = WatcherRunner(backing=KubeBacking(kube), settings=Settings(), metrics=Metrics())
    old, new = WatcherRef("ns", "anna", "uid-old"), WatcherRef("ns", "anna", "uid-new")
    for ref in (old, new):
        runner._sessions.get(ref.uid, BASE)
        runner._held_back[ref.uid] = f"digest of {ref.uid}"
    session = runner._sessions.get(new.uid, BASE)

    await runner.forget(old)

    assert runner._sessions.get(new.uid, BASE) is session
    assert runner._held_back == {new.uid: "digest of uid-new"}
    await runner.aclose()
    kube.close()
