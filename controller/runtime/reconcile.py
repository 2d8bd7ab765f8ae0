"""Dropping watchers that were deleted while the watch was down.

kopf re-lists when its watch cannot resume (after an API server restart, or a connection lost for
longer than the server keeps its history), and a listing sends no DELETED event for an object that
vanished meanwhile: its entry would be served for ever (a status patch answered 404, its series
exported, MatchWatcherSlotMissed firing for an object that does not exist). A re-listing shows as
a listing event for a watcher already held (handlers.py calls `relisted`); then, and once per
PERIOD_SECONDS besides, one metadata-only LIST (uids, in pages) says which of the watchers held
before it started no longer exist. A watcher that arrives while it runs is not judged by it: a
listing that began before it was created cannot show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Protocol

from controller.core.errors import DetectorError, Forbidden
from controller.core.logfields import about
from controller.core.model import WatcherRef

log = logging.getLogger(__name__)
# However many listing events a re-listing brings (one per watcher), at most one LIST per this.
GAP_SECONDS = 30.0
# For a re-listing whose events all went unseen (kopf processes only the latest of a burst of
# one object's events); a LIST of 10,000 objects' metadata an hour is cheap.
PERIOD_SECONDS = 3600.0


class Lister(Protocol):
    """controller/adapters/kube.py's Kube."""

    async def watcher_uids(self, namespace: str | None) -> set[str]: ...


class Followed(Protocol):
    """controller/runtime/dispatcher.py's Dispatcher."""

    def watchers(self) -> dict[str, WatcherRef]: ...

    async def vanished(self, uid: str) -> None: ...


class Reconciler:
    def __init__(
        self,
        followed: Followed,
        lister: Lister,
        *,
        period: float = PERIOD_SECONDS,
        gap: float = GAP_SECONDS,
    ) -> None:
        self._followed = followed
        self._lister = lister
        self._period = period
        self._gap = gap
        self._relisted = asyncio.Event()
        # Until the API server refuses it: a cluster-wide LIST (one request for every namespace).
        # The chart's watchNamespaces grants it per namespace only.
        self._cluster_wide = True

    def relisted(self) -> None:
        """kopf's watch re-listed: deletions may have gone unseen."""
        self._relisted.set()

    async def serve(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._period):
                    await self._relisted.wait()
            self._relisted.clear()
            try:
                await self.reconcile()
            except DetectorError as exc:  # the API server is away: try again after the gap
                log.warning("looking for watchers deleted unseen: %s", exc.message)
                self._relisted.set()
            await asyncio.sleep(self._gap)

    async def reconcile(self) -> list[WatcherRef]:
        """Drop every watcher held now that the API server no longer has; returns them."""
        held = self._followed.watchers()
        if not held:
            return []
        listed = await self._list({ref.namespace for ref in held.values()})
        gone = [ref for uid, ref in held.items() if uid not in listed]
        for ref in gone:
            log.info(
                "%s/%s: deleted while the watch was down; no longer served",
                ref.namespace,
                ref.name,
                extra=about(ref),
            )
            await self._followed.vanished(ref.uid)
        return gone

    async def _list(self, namespaces: Iterable[str]) -> set[str]:
        if self._cluster_wide:
            try:
                return await self._lister.watcher_uids(None)
            except Forbidden:
                self._cluster_wide = False
        uids: set[str] = set()
        for namespace in sorted(namespaces):
            uids |= await self._lister.watcher_uids(namespace)
        return uids
