"""Polling with a deadline: tests wait for a condition, never for a fixed time."""

from __future__ import annotations

import asyncio
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


async def wait_for_async(what: str, probe: Callable[[], object], within: float = 20.0) -> None:
    """`wait_for` inside an event loop: yields to the loop between probes."""
    try:
        async with asyncio.timeout(within):
            while not probe():  # noqa: ASYNC110 - polls plain state, nothing to await
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out after {within}s waiting for {what}") from None
