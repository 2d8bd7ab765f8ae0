"""Keeping the garbage collector's full passes short while every watcher's state stays in memory.

CPython's full collection scans every object it tracks, holding the GIL, so on the event loop:
with 10,000 watchers that is a few hundred thousand objects and tenths of a second during which
no trigger is answered and no slot starts. Almost all of them are long-lived (each watcher's
latest object, its scheduler, its session); the collector's own heuristics promote them to the
oldest generation and then scan them again at every full pass.

So at a quiet moment (no step running: nothing in flight that could still turn into garbage) and
at most every FREEZE_SECONDS, a collection clears what already died and `gc.freeze()` moves every
survivor to the permanent generation, which collections skip. That collection, like every full
pass after it, scans only what is not frozen yet: a few seconds' worth. (The first one, after the
initial listing, scans every watcher once.)

The price: a reference cycle that becomes garbage after it was frozen is not reclaimed (objects
freed by reference counting, nearly all of them, still are). So every THAW_SECONDS, again at a
quiet moment, everything is unfrozen and collected once, at the cost of one full pass.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Protocol

FREEZE_SECONDS = 10.0
THAW_SECONDS = 6 * 3600.0


class Collector(Protocol):
    """The parts of the `gc` module used here (tests pass a recorder)."""

    def collect(self, generation: int = 2) -> int: ...

    def freeze(self) -> None: ...

    def unfreeze(self) -> None: ...


class HeapKeeper:
    def __init__(
        self,
        *,
        collector: Collector = gc,
        clock: Callable[[], float] = time.monotonic,
        freeze_seconds: float = FREEZE_SECONDS,
        thaw_seconds: float = THAW_SECONDS,
    ) -> None:
        self._gc = collector
        self._clock = clock
        self._freeze_seconds = freeze_seconds
        self._thaw_seconds = thaw_seconds
        self._frozen = self._thawed = clock()

    def quiet(self) -> None:
        """Nothing is in flight now: collect and freeze the survivors when due (thawing all
        first when that is due)."""
        now = self._clock()
        if now - self._frozen < self._freeze_seconds:
            return
        if now - self._thawed >= self._thaw_seconds:
            self._gc.unfreeze()
            self._thawed = now
        self._gc.collect()
        self._gc.freeze()
        self._frozen = now
