"""A monotonic clock for unit tests that moves only when told to, or when someone sleeps on it."""

from __future__ import annotations


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []  # every sleep asked for, in order

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
