"""Everything the soak borrows from the rest of the test tree, imported in this one place.

The generic helpers (free_port, wait_for, the kubectl wrapper in Cluster, the Operator process
wrapper, HTTP probes) live in tests/support/ and hack/local_cluster.py; the fakes in tests/fakes/.
"""

from __future__ import annotations

from hack import local_cluster
from hack.local_cluster import ROOT, free_port
from tests.fakes.background import BackgroundServer
from tests.fakes.fogis.records import make_match, make_referee
from tests.fakes.fogis.server import FakeFogis, Served
from tests.fakes.lease_stall import HOLD_SECONDS, LeaseStall
from tests.support.cluster import Cluster
from tests.support.metrics import metric_value
from tests.support.net import http_get
from tests.support.operator_process import Operator
from tests.support.waiting import wait_for
from tests.support.watchers import GROUP, PLURAL, VERSION

__all__ = [
    "GROUP",
    "HOLD_SECONDS",
    "PLURAL",
    "ROOT",
    "VERSION",
    "BackgroundServer",
    "Cluster",
    "FakeFogis",
    "LeaseStall",
    "Operator",
    "Served",
    "free_port",
    "http_get",
    "local_cluster",
    "make_match",
    "make_referee",
    "metric_value",
    "wait_for",
]
