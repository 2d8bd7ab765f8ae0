"""Which shard serves a watcher: a stable hash of its uid, so every process agrees without
talking to the others, and a watcher moves only when the shard count changes."""

from __future__ import annotations

import hashlib


def shard_of(uid: str, shards: int) -> int:
    """0 .. shards-1; the same for a uid in every process and Python version (not hash())."""
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards
