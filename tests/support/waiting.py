"""Polling with a deadline: tests wait for a condition, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeVar

T = TypeVar("T")


def wait_for(
    what: str,
    probe: Callable[[], T | Literal[False] | None],
    timeout: float = 20.0,
    interval: float = 0.1,
) -> T:
    """Poll `probe` until it returns something truthy, and return that; fail with `what` after
    `timeout`. None and False mean "not yet", so `x and y` and `y if x else None` probes type."""
    deadline = time.monotonic() + timeout
    last: T | Literal[False] | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
