"""Watchers deleted while the watch was down are dropped after a re-listing, and only they."""

from __future__ import annotations

import asyncio

from controller.core.errors import Forbidden
from controller.core.model import WatcherRef
from controller.runtime.reconcile import Reconciler
from tests.support.waiting import wait_for_async


def ref(namespace: str, name: str) -> WatcherRef:
    return WatcherRef(namespace, name, f"uid-{name}")


class Followed:
    def __init__(self, *refs: WatcherRef) -> None:
        self.held = {r.uid: r for r in refs}
        self.vanished_uids: list[str] = []

    def watchers(self) -> dict[str, WatcherRef]:
        return dict(self.held)

    async def vanished(self, uid: str) -> None:
        self.vanished_uids.append(uid)
        self.held.pop(uid, None)


class ApiServer:
    def __init__(self, *refs: WatcherRef, namespaced_only: bool = False) -> None:
        self.refs = list(refs)
        self.namespaced_only = namespaced_only
        self.lists: list[str | None] = []
        self.during_list: list[WatcherRef] = []  # created while a LIST is under way
        self.followed: Followed | None = None

    async def watcher_uids(self, namespace: str | None) -> set[str]:
        self.lists.append(namespace)
        if namespace is None and self.namespaced_only:
            raise Forbidden("listing MatchWatchers in all namespaces: not allowed (RBAC)")
        listed = {r.uid for r in self.refs if namespace in (None, r.namespace)}
        for late in self.during_list:  # created after the snapshot was read: not in it
            self.refs.append(late)
            if self.followed is not None:
                self.followed.held[late.uid] = late
        return listed


async def test_watchers_held_before_the_listing_and_missing_from_it_are_dropped() -> None:
    anna, bo, deleted = ref("a", "anna"), ref("b", "bo"), ref("a", "deleted")
    followed = Followed(anna, bo, deleted)
    api = ApiServer(anna, bo)
    api.followed, api.during_list = followed, [ref("a", "new")]
    assert await Reconciler(followed, api).reconcile() == [deleted]
    assert followed.vanished_uids == ["uid-deleted"]
    assert set(followed.held) == {"uid-anna", "uid-bo", "uid-new"}  # new: not judged
    assert api.lists == [None]  # one cluster-wide LIST


async def test_without_rbac_for_all_namespaces_it_lists_those_of_the_watchers_held() -> None:
    anna, bo, deleted = ref("a", "anna"), ref("b", "bo"), ref("c", "deleted")
    followed = Followed(anna, bo, deleted)
    api = ApiServer(anna, bo, namespaced_only=True)
    reconciler = Reconciler(followed, api)
    assert await reconciler.reconcile() == [deleted]
    assert api.lists == [None, "a", "b", "c"]
    followed.held[deleted.uid] = deleted
    await reconciler.reconcile()
    assert api.lists[4:] == ["a", "b", "c"]  # not asked again


async def test_a_relisting_starts_a_reconciliation_and_the_period_one_besides() -> None:
    deleted = ref("a", "deleted")
    followed = Followed(ref("a", "anna"), deleted)
    api = ApiServer(ref("a", "anna"))
    reconciler = Reconciler(followed, api, period=3600, gap=0)
    task = asyncio.create_task(reconciler.serve())
    try:
        await asyncio.sleep(0.05)
        assert api.lists == []  # nothing until a re-listing (or an hour)
        reconciler.relisted()
        await wait_for_async("the LIST", lambda: followed.vanished_uids == ["uid-deleted"], 5)
    finally:
        task.cancel()
    periodic = Reconciler(Followed(deleted), api, period=0.01, gap=0)
    task = asyncio.create_task(periodic.serve())
    try:
        await wait_for_async("a periodic LIST", lambda: len(api.lists) >= 2, 5)
    finally:
        task.cancel()
