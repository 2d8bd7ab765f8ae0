"""The snapshot ConfigMap's decoding: what a hostile or broken ConfigMap does to a load."""

from __future__ import annotations

import gzip
import json
import secrets
import zlib
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.kube import StoredConfigMap
from controller.adapters.snapshots import (
    DATA_KEY,
    ConfigMapSnapshots,
    FileSnapshots,
    SnapshotConflict,
    SnapshotCorrupt,
    SnapshotTooLarge,
    parse_state,
)
from controller.core.diff import Snapshot, normalise_all
from controller.core.errors import MAX_MESSAGE_CHARS, ConfigMapConflict, clip
from controller.core.model import WatcherRef
from tests.fakes.fogis.records import make_match, sample_matches

REF = WatcherRef("referees", "anna", "uid-1")


class OneConfigMap:
    """Just enough of controller.adapters.kube.Kube for ConfigMapSnapshots.load."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read_config_map(self, namespace: str, name: str) -> StoredConfigMap:
        return StoredConfigMap(data={DATA_KEY: self.data}, owner_uids=(REF.uid,))


def _gzip_bomb(inflated: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(inflated // len(chunk))]
    return b"".join([*parts, compressor.flush()])


async def load(data: bytes) -> Snapshot | None:
    store = ConfigMapSnapshots(OneConfigMap(data), REF)  # type: ignore[arg-type]
    return await store.load()


async def test_a_stored_snapshot_loads() -> None:
    snapshot = Snapshot(normalise_all([make_match(1), make_match(2)]), revision=3)
    loaded = await load(gzip.compress(snapshot.to_json().encode()))
    assert loaded == snapshot


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"plain text", "not gzip-compressed JSON"),
        (gzip.compress(b'{"format": 1, "matches": {}}')[:-6], "truncated"),
        (gzip.compress(b"\xff\xfe"), "not gzip-compressed JSON"),
        (gzip.compress(b"[]"), "must be a JSON object"),
        # 200 MiB of zeros in about 200 KiB: refused after 64 MiB, never held whole in memory.
        (_gzip_bomb(200 * 1024 * 1024), "inflates beyond 64 MiB"),
    ],
)
async def test_broken_or_hostile_snapshots_fail_with_a_short_message(
    data: bytes, fragment: str
) -> None:
    with pytest.raises(SnapshotCorrupt) as caught:
        await load(data)
    assert fragment in caught.value.message
    assert "delete it to record a new baseline" in caught.value.message
    assert len(caught.value.message) <= MAX_MESSAGE_CHARS


async def test_a_huge_error_inside_a_snapshot_is_clipped() -> None:
    """A corrupt entry quoted in the error could be megabytes: status patches must stay small."""
    document = '{"format": 1, "matches": {"' + "x" * 5_000_000 + '": 1}}'
    with pytest.raises(SnapshotCorrupt) as caught:
        await load(gzip.compress(document.encode()))
    assert len(caught.value.message) <= 500
    assert "more characters cut)" in caught.value.message
    assert caught.value.message.endswith("delete it to record a new baseline")


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 1024, "short"),
        ("x" * 1024, 1024, "x" * 1024),
        ("x" * 1025, 1024, "x" * 964 + " ... (61 more characters cut)"),
        ("y" * 10**6, 100, "y" * 40 + " ... (999960 more characters cut)"),
    ],
)
def test_clip(text: str, limit: int, expected: Any) -> None:
    assert clip(text, limit) == expected
    assert len(clip(text, limit)) <= limit


async def test_a_snapshot_larger_than_a_config_map_is_refused_before_anything_is_sent() -> None:
    noisy = [make_match(i, lag1namn=secrets.token_urlsafe(300)) for i in range(1, 4001)]
    store = ConfigMapSnapshots(OneConfigMap(b""), REF)  # type: ignore[arg-type]
    with pytest.raises(SnapshotTooLarge, match=r"4000 matches.*narrow the window"):
        await store.check(Snapshot(normalise_all(noisy)))
    await store.check(Snapshot(normalise_all(noisy[:100])))  # a usual list fits


class VersionedConfigMaps:
    """One ConfigMap with a resourceVersion, refusing writes based on an outdated read."""

    def __init__(self) -> None:
        self.stored: StoredConfigMap | None = None
        self.version = 0

    async def read_config_map(self, namespace: str, name: str) -> StoredConfigMap | None:
        return self.stored

    async def write_config_map(
        self,
        ref: WatcherRef,
        name: str,
        binary_data: dict[str, bytes],
        labels: dict[str, str],
        resource_version: str | None,
    ) -> str:
        current = None if self.stored is None else self.stored.resource_version
        if resource_version != current:
            raise ConfigMapConflict(f"ConfigMap {name} changed meanwhile")
        self.version += 1
        self.stored = StoredConfigMap(dict(binary_data), (ref.uid,), str(self.version))
        return str(self.version)


def _store(kube: VersionedConfigMaps) -> ConfigMapSnapshots:
    return ConfigMapSnapshots(kube, REF)  # type: ignore[arg-type]


@pytest.mark.parametrize("existing", [False, True])
async def test_a_snapshot_written_meanwhile_is_never_overwritten(existing: bool) -> None:
    """Two writers (a leadership handover, a restart racing a slow write) read the same state; the
    second to write must not move the snapshot back to what it computed from that state."""
    kube = VersionedConfigMaps()
    if existing:
        await _store(kube).save(Snapshot(normalise_all([make_match(1)]), revision=1))
    first, second = _store(kube), _store(kube)
    await first.load()
    await second.load()
    newer = Snapshot(normalise_all([make_match(1), make_match(2)]), revision=2)
    await second.save(newer)
    with pytest.raises(SnapshotConflict, match="the next run compares against it"):
        await first.save(Snapshot(normalise_all([make_match(3)]), revision=2))
    assert await _store(kube).load() == newer


async def test_load_then_save_in_turn_works() -> None:
    kube = VersionedConfigMaps()
    store = _store(kube)
    for revision in range(1, 4):
        assert (await store.load()) is None or revision > 1
        await store.save(Snapshot(normalise_all([make_match(revision)]), revision=revision))
    assert kube.version == 3


# --- state files: ours, or the seed detector's previous_matches.json --------------------------


def test_a_seed_state_file_reads_as_the_list_it_holds() -> None:
    """The seed wrote the raw FOGIS match list (json.dump of the records) as its state."""
    records = sample_matches()
    snapshot = parse_state(json.dumps(records, indent=2), "previous_matches.json")
    assert snapshot == Snapshot(normalise_all(records))
    assert snapshot.revision == 0
    assert snapshot.in_doubt is None


def test_seed_records_without_a_match_id_are_skipped() -> None:
    records = [make_match(1), {"matchnr": "7"}, "noise", make_match(2)]
    assert set(parse_state(json.dumps(records), "f").matches) == {"1", "2"}


def test_our_own_document_still_reads() -> None:
    snapshot = Snapshot(normalise_all([make_match(1)]), revision=4)
    assert parse_state(snapshot.to_json(), "f") == snapshot


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[]", None),
        ('[{"matchnr": "7"}, 3]', "none of its 2 entries is a match with a matchid"),
        ("[{", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ("{}", "snapshot format None is not supported"),
        ('"text"', "must be a JSON object"),
        ("", "not valid JSON"),
    ],
)
def test_state_files_of_neither_format_are_corrupt(text: str, fragment: str | None) -> None:
    if fragment is None:  # a seed that had no matches: an empty list, not a corrupt file
        assert parse_state(text, "f") == Snapshot()
        return
    with pytest.raises(SnapshotCorrupt) as caught:
        parse_state(text, "/app/data/previous_matches.json")
    assert fragment in caught.value.message
    assert caught.value.message.startswith("snapshot in /app/data/previous_matches.json")
    assert caught.value.message.endswith("delete it to record a new baseline")


async def test_run_once_reads_a_seed_file_and_rewrites_it_in_our_format(tmp_path: Path) -> None:
    path = tmp_path / "previous_matches.json"
    path.write_text(json.dumps(sample_matches()), encoding="utf-8")
    store = FileSnapshots(path)
    loaded = await store.load()
    assert loaded is not None
    assert len(loaded.matches) == 4
    await store.save(Snapshot(loaded.matches, revision=1))
    assert json.loads(path.read_text(encoding="utf-8"))["revision"] == 1
    assert await store.load() == Snapshot(loaded.matches, revision=1)
