"""Leader election on a coordination.k8s.io Lease, the way client-go's leaderelection does it.

Replicas of one Deployment (one shard) share a Lease; the holder serves the watchers, the others
follow the watch and take over when the holder stops renewing. Expiry is judged by this process's
own clock from when it last saw the record change (never by comparing clocks across nodes), and
a leader that cannot renew steps down after RENEW_DEADLINE, well before others may take over at
LEASE_SECONDS: also when a Lease call hangs, since each round's calls are bounded by that
deadline (client-go's renew context). Slot and manual-trigger claims are compare-and-swap writes
besides, so even two replicas that both believe they lead cannot run one twice.

`next_record` is the pure rule (controller/core/lease.py, table-tested); `Leadership` carries it out
against the API server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from controller.core.errors import DetectorError, LeaseConflict
from controller.core.lease import LeaseRecord, next_record, released

log = logging.getLogger(__name__)

# client-go's defaults, with controller/core/lease.py's LEASE_SECONDS (15 s).
RENEW_DEADLINE = timedelta(seconds=10)
RETRY_SECONDS = 2.0


class LeaseStore(Protocol):
    """The Lease calls (controller/adapters/kube.py's Kube)."""

    async def read_lease(self, namespace: str, name: str) -> tuple[LeaseRecord, str] | None: ...

    async def write_lease(
        self, namespace: str, name: str, record: LeaseRecord, version: str | None
    ) -> str: ...


class Leadership:
    """Runs the election for one Lease and tells `on_change` when leadership is won or lost."""

    def __init__(
        self,
        store: LeaseStore,
        *,
        namespace: str,
        name: str,
        identity: str,
        on_change: Callable[[bool], Awaitable[None]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._namespace, self._name = namespace, name
        self.identity = identity
        self._on_change = on_change
        self._clock = clock
        self.leading = False
        self._seen: tuple[LeaseRecord | None, datetime] | None = None
        self._version: str | None = None
        self._record: LeaseRecord | None = None
        self._renewed: datetime | None = None  # when this process last wrote its own renewal

    async def serve(self) -> None:
        while True:
            await self._round()
            await asyncio.sleep(RETRY_SECONDS)

    async def release(self) -> None:
        """Give the Lease up (shutdown, after the runs in progress ended)."""
        if not self.leading or self._record is None:
            return
        self.leading = False
        try:
            await self._store.write_lease(
                self._namespace,
                self._name,
                released(self._record, self._clock()),
                self._version,
            )
        except DetectorError as exc:  # it expires by itself then
            log.warning("releasing Lease %s/%s: %s", self._namespace, self._name, exc.message)

    async def _round(self) -> None:
        now = self._clock()
        # A round may take until the renew deadline: a leader's counts from its last renewal,
        # a standby's from now (the renewal time it would write). A call still hanging then is
        # abandoned (controller/adapters/kube.py bounds its thread too) and the leader steps
        # down, before a standby may take over at LEASE_SECONDS.
        renewed = self._renewed if self.leading and self._renewed is not None else now
        deadline = renewed + RENEW_DEADLINE
        try:
            async with asyncio.timeout(max(0.0, (deadline - now).total_seconds())):
                leading = await self._try(now)
        except TimeoutError:
            log.warning("Lease %s/%s: no answer by the renew deadline", self._namespace, self._name)
            leading = False
        except DetectorError as exc:
            log.warning("Lease %s/%s: %s", self._namespace, self._name, exc.message)
            # A leader that cannot renew keeps serving until its renew deadline only, judged
            # when the call failed: that may be long after it was sent.
            leading = self.leading and self._clock() < deadline
        if leading != self.leading:
            self.leading = leading
            log.info(
                "%s leadership of Lease %s/%s as %s",
                "won" if leading else "lost",
                self._namespace,
                self._name,
                self.identity,
            )
            await self._on_change(leading)

    async def _try(self, now: datetime) -> bool:
        found = await self._store.read_lease(self._namespace, self._name)
        current, version = found if found is not None else (None, None)
        if self._seen is None or self._seen[0] != current:
            self._seen = (current, now)
        wanted = next_record(current, seen_since=self._seen[1], me=self.identity, now=now)
        if wanted is None:
            return False
        try:
            self._version = await self._store.write_lease(
                self._namespace, self._name, wanted, version
            )
        except LeaseConflict:
            return False  # another replica wrote first: read again at the next round
        self._record, self._renewed = wanted, now
        self._seen = (wanted, now)
        return True
