"""Leader election on a real API server when a Lease call hangs (tests/fakes/lease_stall.py
holds the leader's renewals back in an admission webhook, from outside the operator)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.fogis.server import FakeFogis
from tests.fakes.lease_stall import LeaseStall
from tests.support.cluster import Cluster
from tests.support.metrics import metric_value
from tests.support.operator_process import Operator, running
from tests.support.waiting import wait_for
from tests.support.watchers import fogis_spec


def served(operator: Operator) -> float | None:
    """The watchers the replica serves now (its `matchwatcher_watchers` gauge, read live;
    /healthz's probe is cached for 10 s)."""
    return metric_value(operator.metrics(), "matchwatcher_watchers", {})


@pytest.fixture
def stall(cluster: Cluster, namespace: str) -> Iterator[LeaseStall]:
    with LeaseStall() as webhook:
        webhook.register(cluster.api, namespace)
        try:
            yield webhook
        finally:
            webhook.unregister(cluster.api, namespace)


def test_a_leader_whose_renewal_hangs_has_stepped_down_before_a_standby_takes_over(
    cluster: Cluster,
    namespace: str,
    fogis: FakeFogis,
    credentials: str,
    stall: LeaseStall,
    tmp_path: Path,
) -> None:
    """Issue: the renew deadline was checked only after a Lease call failed, so a renewal
    that hung kept the old leader serving after a standby took over (two leaders). Checked at
    the takeover itself: the webhook asks the old leader what it serves before admitting it."""
    env = {"MLCD_LEASE_NAME": "stall", "MLCD_LEASE_NAMESPACE": namespace}
    first = Operator(cluster.kubeconfig, [namespace], tmp_path / "first.log", env)
    second = Operator(cluster.kubeconfig, [namespace], tmp_path / "second.log", env)
    at_takeover: list[float | None] = []

    def takeover(old: str | None, new: str) -> None:
        if stall.holding:
            at_takeover.append(served(first))

    stall.on_takeover = takeover
    with running(first):
        cluster.create_watcher(namespace, "led", fogis_spec(fogis.base_url, credentials))
        wait_for("the first replica to lead", lambda: served(first) == 1, timeout=30)
        with running(second):
            reviews = stall.reviews
            wait_for("a renewal through the webhook", lambda: stall.reviews > reviews, 15)
            stall.hold()
            wait_for("the take-over", lambda: served(second) == 1, timeout=60)
            stall.release()
            assert stall.held >= 1
            assert at_takeover == [0]
            assert served(first) == 0
            cluster.delete_watcher(namespace, "led")
