"""Shards: pinned values (the hash is a contract: changing it would move every watcher on an
upgrade), an even spread, and a count of 1 keeps everything."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from controller.core.sharding import shard_of

UIDS = [str(uuid.UUID(int=n * 7919 + 1)) for n in range(3000)]


@pytest.mark.parametrize(
    ("uid", "by_count"),
    [
        ("9f2c1c6e-2b1a-4f55-9d3e-0c8f0a1b2c3d", {1: 0, 2: 0, 3: 1, 7: 1}),
        ("00000000-0000-0000-0000-000000000001", {1: 0, 2: 1, 3: 0, 7: 2}),
    ],
)
def test_a_uid_lands_in_its_pinned_shard(uid: str, by_count: dict[int, int]) -> None:
    assert {count: shard_of(uid, count) for count in by_count} == by_count


@pytest.mark.parametrize("shards", [2, 3, 5])
def test_shards_share_the_watchers_evenly(shards: int) -> None:
    counts = Counter(shard_of(uid, shards) for uid in UIDS)
    assert set(counts) == set(range(shards))
    assert max(counts.values()) < 1.15 * len(UIDS) / shards
