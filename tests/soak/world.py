"""Everything the soak borrows from the rest of the test tree, imported in this one place.

The generic helpers (free_port, wait_for, the kubectl wrapper, the Operator process wrapper,
metrics parsing) are moving out of tests/integration/harness.py into tests/support/; when they
do, only these imports change.
"""

from __future__ import annotations

from hack import local_cluster
from tests.fakes.background import BackgroundServer
from tests.fakes.fogis import FakeFogis, Served, make_match, make_referee
from tests.integration.harness import (
    GROUP,
    PLURAL,
    ROOT,
    VERSION,
    Cluster,
    Operator,
    free_port,
    http_get,
    wait_for,
)

__all__ = [
    "GROUP",
    "PLURAL",
    "ROOT",
    "VERSION",
    "BackgroundServer",
    "Cluster",
    "FakeFogis",
    "Operator",
    "Served",
    "free_port",
    "http_get",
    "local_cluster",
    "make_match",
    "make_referee",
    "wait_for",
]
