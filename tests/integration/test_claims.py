"""Claims on the real status subresource: two replicas' schedulers (in this process, with the
operator's Kube adapter) that both saw one manual trigger, as two replicas that both believe
they lead do. The compare-and-swap is the API server's: only one of them runs it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.adapters.kube import Kube
from controller.core.config import Settings
from controller.core.model import WatcherRef, WatcherSpec
from controller.core.outcome import Outcome
from controller.core.status import WatcherStatus
from controller.core.trigger import Manual, Trigger
from controller.runtime.scheduler import WatcherScheduler
from tests.support.cluster import Cluster
from tests.support.watchers import GROUP, PLURAL, VERSION, fogis_spec


class Started(Exception):
    """Raised by the runner: the test needs to know a run started, not what it found."""


class Runner:
    def __init__(self) -> None:
        self.runs: list[Trigger] = []

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
        self.runs.append(trigger)
        raise Started


@pytest.fixture
def kube(cluster: Cluster) -> Iterator[Kube]:
    adapter = Kube.from_configuration(copy.deepcopy(cluster.api.configuration), workers=2)
    yield adapter
    adapter.close()


async def test_a_trigger_two_replicas_saw_runs_once(
    cluster: Cluster, namespace: str, kube: Kube
) -> None:
    cluster.create_watcher(namespace, "twice", fogis_spec("http://127.0.0.1:9", "fogis"))
    cluster.trigger(namespace, "twice", "t1")
    seen: dict[str, Any] = cluster.custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "twice"
    )
    ref = WatcherRef(namespace, "twice", seen["metadata"]["uid"])
    replicas = [Runner(), Runner()]
    schedulers = [
        WatcherScheduler(
            ref=ref, body=lambda: seen, runner=runner, cluster=kube, settings=Settings()
        )
        for runner in replicas
    ]
    with pytest.raises(Started):
        await schedulers[0]._step(lambda: False)
    assert await schedulers[1]._step(lambda: False) == 0  # stood down
    assert [runner.runs for runner in replicas] == [[Manual("t1")], []]
    status = cluster.status(namespace, "twice")
    assert status["lastClaimedTrigger"] == "t1"
    cluster.force_delete_watcher(namespace, "twice")
