"""When the heap keeper collects, freezes and thaws: a recorder for the gc module, a fake clock."""

from __future__ import annotations

import pytest

from controller.runtime.heap import HeapKeeper


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def collect(self, generation: int = 2) -> int:
        self.calls.append(f"collect({generation})")
        return 0

    def freeze(self) -> None:
        self.calls.append("freeze")

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")


FREEZE = ["collect(2)", "freeze"]
THAW = ["unfreeze", *FREEZE]


@pytest.mark.parametrize(
    ("quiet_at", "expected"),
    [
        ([], []),
        ([5.0], []),  # too soon after the start
        ([10.0], FREEZE),
        ([10.0, 15.0, 19.9], FREEZE),  # at most once every 10 s
        ([10.0, 20.0], FREEZE * 2),
        ([10.0, 100.0], [*FREEZE, *THAW]),  # the thaw is due: collect everything once
        ([10.0, 100.0, 105.0, 110.0], [*FREEZE, *THAW, *FREEZE]),
    ],
)
def test_freezes_at_most_every_period_and_thaws_first_when_that_is_due(
    quiet_at: list[float], expected: list[str]
) -> None:
    now = [0.0]
    recorder = Recorder()
    keeper = HeapKeeper(
        collector=recorder, clock=lambda: now[0], freeze_seconds=10.0, thaw_seconds=90.0
    )
    for moment in quiet_at:
        now[0] = moment
        keeper.quiet()
    assert recorder.calls == expected
