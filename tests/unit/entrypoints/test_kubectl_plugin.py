"""`kubectl matchlist run --wait`: what it says when no outcome came in time."""

from __future__ import annotations

from typing import Any

import pytest

from controller.entrypoints.kubectl_plugin import _no_outcome

RECONCILING = {"type": "Reconciling", "status": "True", "reason": "Running", "message": "m"}


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ({}, "no run for t1 within 5s (is the operator running?)"),
        ({"lastClaimedTrigger": "t0"}, "no run for t1 within 5s (is the operator running?)"),
        (
            {"lastClaimedTrigger": "t1", "conditions": [RECONCILING]},
            "the run for t1 is still going after 5s",
        ),
        (
            {"lastClaimedTrigger": "t1"},
            "the run for t1 started but did not finish (its operator process died?): run again",
        ),
    ],
)
def test_no_outcome_says_how_far_the_run_came(status: dict[str, Any], said: str) -> None:
    assert _no_outcome("t1", status, 5) == said
