"""The people's state in the "notified" ConfigMap: its format, the releases before per-URL
cursors (migration and downgrade), and what a broken or foreign ConfigMap does to a load."""

from __future__ import annotations

import gzip
import json
import secrets
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.adapters.peoplestore import (  # the pure halves, for hypothesis
    PEOPLE_KEY,
    ConfigMapPeople,
    _decode_state,
    _encode_state,
)
from controller.adapters.snapshots import (
    DATA_KEY,
    SnapshotConflict,
    SnapshotCorrupt,
    SnapshotTooLarge,
    config_map_name,
    decode_snapshot,
)
from controller.core.diff import Snapshot, normalise_all
from controller.core.errors import MAX_MESSAGE_CHARS
from controller.core.model import WatcherRef
from controller.core.people import PeopleState
from tests.fakes.fogis.records import make_match
from tests.unit.fake_kube import FakeKube

REF = WatcherRef("referees", "anna", "uid-1")
NAME = config_map_name(REF.name, "notified")


def snapshot(*ids: int, revision: int = 1, **overrides: Any) -> Snapshot:
    return Snapshot(normalise_all([make_match(i, **overrides) for i in ids]), revision=revision)


def _store(kube: FakeKube) -> ConfigMapPeople:
    return ConfigMapPeople(kube, REF)  # type: ignore[arg-type]


def _stored(kube: FakeKube) -> dict[str, bytes]:
    return kube.config_maps[REF.namespace, NAME].data


async def _round_trip(state: PeopleState) -> tuple[PeopleState | None, dict[str, bytes]]:
    kube = FakeKube()
    await _store(kube).save(state)
    return await _store(kube).load(), _stored(kube)


LATEST = snapshot(1, 2, 3, revision=7)
BEHIND = snapshot(1, 2, revision=2)
# Match 3 at another time than the latest list says.
MOVED_BACK = Snapshot({**snapshot(1, 2).matches, **snapshot(3, avsparkstid="20:00").matches})
IN_DOUBT = BEHIND.attempt(LATEST.digest, {"3": LATEST.matches["3"]})


@pytest.mark.parametrize(
    ("cursors", "stored_once"),
    [
        ({}, 0),
        ({"a": LATEST}, 1),
        # Usually every URL is at the same place: that cursor is stored once.
        ({"a": LATEST, "b": LATEST, "c": LATEST}, 1),
        ({"a": LATEST, "b": BEHIND, "c": LATEST, "d": IN_DOUBT}, 3),
    ],
)
async def test_the_state_round_trips_with_equal_cursors_stored_once(
    cursors: dict[str, Snapshot], stored_once: int
) -> None:
    state = PeopleState(latest=LATEST, cursors=cursors)
    loaded, data = await _round_trip(state)
    assert loaded == state
    document = json.loads(gzip.decompress(data[PEOPLE_KEY]))
    assert len(document["told"]) == stored_once
    assert set(document["cursors"]) == set(cursors)


@given(
    st.dictionaries(
        st.text("0123456789abcdef", min_size=32, max_size=32),
        st.sampled_from([LATEST, BEHIND, IN_DOUBT, snapshot(revision=0)]),
        max_size=5,
    )
)
def test_any_set_of_cursors_round_trips(cursors: dict[str, Snapshot]) -> None:
    state = PeopleState(latest=LATEST, cursors=cursors)
    assert _decode_state(_encode_state(state), "here") == state


async def test_a_release_before_per_url_cursors_is_every_urls_cursor() -> None:
    """Migrated from (or downgraded to and back from) a release with one "notified" snapshot:
    every URL starts from what it says people were told, not from the latest list."""
    kube = FakeKube()
    kube.put_config_map(
        REF.namespace, NAME, {DATA_KEY: gzip.compress(BEHIND.to_json().encode())}, REF.uid
    )
    loaded = await _store(kube).load()
    assert loaded == PeopleState(latest=BEHIND, cursors={}, fresh=BEHIND)
    assert loaded.for_urls(["a", "b"]) == {"a": BEHIND, "b": BEHIND}


async def test_a_config_map_without_either_key_is_no_state() -> None:
    kube = FakeKube()
    kube.put_config_map(REF.namespace, NAME, {}, REF.uid)
    assert await _store(kube).load() is None


@pytest.mark.parametrize(
    ("cursors", "expected"),
    [
        ({}, LATEST),
        ({"a": LATEST, "b": LATEST}, LATEST),
        ({"a": IN_DOUBT}, IN_DOUBT),
        # Several: every match as a URL that was not told it last heard it, and every doubt.
        ({"a": LATEST, "b": BEHIND}, replace(BEHIND, revision=LATEST.revision)),
        # A match some URL was not told is gone is kept for the old release to tell.
        ({"a": LATEST, "b": snapshot(1, 2, 3, 4)}, snapshot(1, 2, 3, 4, revision=7)),
        ({"a": IN_DOUBT, "b": LATEST}, replace(IN_DOUBT, revision=7, attempted=None)),
        (
            {"a": snapshot(1, 2, 3, revision=9), "b": replace(MOVED_BACK, revision=4)},
            replace(MOVED_BACK, revision=9),
        ),
        # A URL added later starts at the latest list's revision, however far behind it falls.
        (
            {"old": snapshot(1, 2, 3, revision=3), "late": snapshot(1, 2, revision=40)},
            snapshot(1, 2, revision=40),
        ),
    ],
)
async def test_what_no_url_is_ahead_of_is_kept_in_the_old_format(
    cursors: dict[str, Snapshot], expected: Snapshot
) -> None:
    """A release before per-URL cursors reads snapshot.json.gz as its "notified" snapshot and
    tells everyone the same: after a downgrade people may be told a change again, never miss
    one."""
    _, data = await _round_trip(PeopleState(latest=LATEST, cursors=cursors))
    assert Snapshot.from_json(gzip.decompress(data[DATA_KEY]).decode()) == expected
    assert decode_snapshot(data[DATA_KEY], "here") == expected


# What a cursor may hold for each of LATEST's matches (and one LATEST lacks): nothing, the
# latest value, or another one.
_VALUES = {
    str(i): [None, *snapshot(i, avsparkstid="20:00").matches.values(),
             *snapshot(i, installd=True).matches.values()]
    for i in (1, 2, 3, 4)
}  # fmt: skip
for _i in ("1", "2", "3"):
    _VALUES[_i].append(LATEST.matches[_i])


@st.composite
def cursors(draw: st.DrawFn) -> Snapshot:
    matches = {}
    for match_id, values in _VALUES.items():
        value = draw(st.sampled_from(values))
        if value is not None:
            matches[match_id] = value
    doubt = draw(st.dictionaries(st.sampled_from(sorted(_VALUES)), st.sampled_from(["1", "2"])))
    in_doubt = {m: (_VALUES[m][int(v)],) for m, v in doubt.items()}
    return Snapshot(matches, revision=draw(st.integers(0, 50)), in_doubt=in_doubt or None)


@given(st.lists(cursors(), max_size=4))
def test_no_url_is_ahead_of_what_a_downgrade_reads(told: list[Snapshot]) -> None:
    """Every match some URL was not told its latest value of is one the old release tells (it
    differs from the latest list there too), and every in-doubt value is kept."""
    state = PeopleState(latest=LATEST, cursors={str(i): c for i, c in enumerate(told)})
    notified = decode_snapshot(_encode_state(state)[DATA_KEY], "here")
    for cursor in told:
        for match_id in cursor.matches.keys() | LATEST.matches.keys():
            if cursor.matches.get(match_id) != LATEST.matches.get(match_id):
                assert notified.matches.get(match_id) != LATEST.matches.get(match_id)
        for match_id, values in (cursor.in_doubt or {}).items():
            assert all(v in (notified.in_doubt or {})[match_id] for v in values)
    if all(cursor.matches == LATEST.matches for cursor in told):
        assert notified.matches == LATEST.matches


def _gz(value: Any) -> bytes:
    return gzip.compress((value if isinstance(value, str) else json.dumps(value)).encode())


def _document(**changes: Any) -> dict[str, Any]:
    return {"format": 1, "latest": LATEST.to_json(), "told": [LATEST.to_json()],
            "cursors": {"a": 0}, **changes}  # fmt: skip


CORRUPT = {
    "not gzip": (b"plain text", "unreadable"),
    "not UTF-8": (gzip.compress(b"\xff\xfe"), "unreadable"),
    "not JSON": (_gz("{not json"), "unreadable"),
    "a list": (_gz([]), "not a JSON object"),
    "null": (_gz("null"), "not a JSON object"),
    "a later format": (_gz(_document(format=2)), "format 2 is not 1"),
    "no told": (_gz({"format": 1}), "told is not a list"),
    "told not a list": (_gz(_document(told="x")), "told is not a list"),
    "a cursor not text": (_gz(_document(told=[1])), "a snapshot is not text"),
    "a corrupt cursor": (_gz(_document(told=["{}"])), "snapshot format"),
    "cursors not an object": (_gz(_document(cursors=[])), "cursors is not an object"),
    "a dangling cursor": (_gz(_document(cursors={"a": 1})), "cursor 'a' refers to nothing"),
    "a negative cursor": (_gz(_document(cursors={"a": -1})), "cursor 'a' refers to nothing"),
    "a boolean cursor": (_gz(_document(cursors={"a": True})), "cursor 'a' refers to nothing"),
    "no latest": (_gz(_document(latest=None)), "a snapshot is not text"),
    # A corrupt entry quoted in the error could be megabytes: status patches stay small.
    "a huge bad key": (
        _gz(_document(latest='{"format": 1, "matches": {"' + "x" * 5_000_000 + '": 1}}')),
        "more characters cut",
    ),
}


@pytest.mark.parametrize(("data", "fragment"), CORRUPT.values(), ids=CORRUPT.keys())
async def test_a_corrupt_people_state_fails_with_a_clear_short_message(
    data: bytes, fragment: str
) -> None:
    kube = FakeKube()
    old = gzip.compress(BEHIND.to_json().encode())
    kube.put_config_map(REF.namespace, NAME, {PEOPLE_KEY: data, DATA_KEY: old}, REF.uid)
    with pytest.raises(SnapshotCorrupt) as caught:
        await _store(kube).load()
    message = caught.value.message
    assert fragment in message
    assert f"ConfigMap {REF.namespace}/{NAME}" in message
    assert message.endswith(f"delete its {PEOPLE_KEY} key to start people from its {DATA_KEY}")
    assert len(message) <= MAX_MESSAGE_CHARS


async def test_a_foreign_config_map_is_no_state_and_is_noted() -> None:
    """A deleted namesake's (or a restored one's): this watcher records its own baseline."""
    kube = FakeKube()
    _, data = await _round_trip(PeopleState(latest=LATEST, cursors={"a": LATEST}))
    kube.put_config_map(REF.namespace, NAME, data, "uid-of-a-deleted-namesake")
    store = _store(kube)
    assert await store.load() is None
    assert store.foreign_owner
    await store.save(PeopleState(latest=BEHIND, cursors={}))  # replaces the version it read
    mine = _store(kube)
    assert await mine.load() == PeopleState(latest=BEHIND, cursors={})
    assert not mine.foreign_owner


async def test_no_config_map_is_no_state() -> None:
    store = _store(FakeKube())
    assert await store.load() is None
    assert not store.foreign_owner


async def test_a_state_larger_than_a_config_map_is_refused() -> None:
    noisy = [make_match(i, lag1namn=secrets.token_urlsafe(300)) for i in range(1, 4001)]
    big = Snapshot(normalise_all(noisy), revision=1)
    kube = FakeKube()
    with pytest.raises(SnapshotTooLarge, match=r"4000 matches, 2 URLs.*narrow the window"):
        await _store(kube).save(PeopleState(latest=big, cursors={"a": big, "b": LATEST}))
    assert not kube.config_maps


async def test_a_state_written_meanwhile_is_never_overwritten() -> None:
    kube = FakeKube()
    await _store(kube).save(PeopleState(latest=BEHIND, cursors={"a": BEHIND}))
    first, second = _store(kube), _store(kube)
    await first.load()
    await second.load()
    newer = PeopleState(latest=LATEST, cursors={"a": LATEST})
    await second.save(newer)
    with pytest.raises(SnapshotConflict, match="another replica"):
        await first.save(PeopleState(latest=LATEST, cursors={"a": BEHIND}))
    assert await _store(kube).load() == newer


async def test_a_write_ahead_then_its_final_save_chain() -> None:
    """The people's pass saves twice in one run (write-ahead, then told): its own first write's
    version is the one the second replaces."""
    kube = FakeKube()
    store = _store(kube)
    assert await store.load() is None
    await store.save(PeopleState(latest=LATEST, cursors={"a": IN_DOUBT}))
    await store.save(PeopleState(latest=LATEST, cursors={"a": LATEST}))
    assert await _store(kube).load() == PeopleState(latest=LATEST, cursors={"a": LATEST})
