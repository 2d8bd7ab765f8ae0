"""The rules of serving calendar feeds (controller/core/feed.py): paths, tokens, ETags, the
per-token rate limit and the byte-bounded body cache."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.feed import (
    BodyCache,
    BodyKey,
    FeedPath,
    Rendered,
    TokenBuckets,
    etag_matches,
    feed_view,
    parse_path,
    token_key,
    token_matches,
)

TOKEN = "Qm9vbXNoYWthbGFrYS1ib29tc2hha2FsYWthLTEy"  # 40 URL-safe characters


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/calendar/referees/anna/{TOKEN}.ics", FeedPath("referees", "anna", TOKEN)),
        (f"/calendar/r/a.b-c/{TOKEN}.ics", FeedPath("r", "a.b-c", TOKEN)),
        (f"/calendar/{'n' * 63}/{'a' * 253}/{TOKEN}.ics", FeedPath("n" * 63, "a" * 253, TOKEN)),
        (f"/calendar/{'n' * 64}/anna/{TOKEN}.ics", None),  # a namespace is at most 63
        (f"/calendar/referees/{'a' * 254}/{TOKEN}.ics", None),  # a name at most 253
        (f"/calendar/referees/anna/{TOKEN}", None),  # no .ics
        (f"/calendar/referees/anna/{TOKEN}.ics/", None),
        (f"/calendar/referees/anna/x/{TOKEN}.ics", None),  # one part too many
        (f"/calendar/referees/{TOKEN}.ics", None),  # one too few
        (f"/calendar/Referees/anna/{TOKEN}.ics", None),  # names are lower case
        (f"/calendar/referees/-anna/{TOKEN}.ics", None),
        (f"/calendar/../anna/{TOKEN}.ics", None),
        ("/calendar/referees/anna/short.ics", None),  # shorter than any token made
        (f"/calendar/referees/anna/{'t' * 129}.ics", None),  # longer than any token
        (f"/calendar/referees/anna/{TOKEN[:-1]}=.ics", None),  # not URL-safe base64
        (f"/calendar/referees/anna/{TOKEN}%00.ics", None),
        (f"/calendars/referees/anna/{TOKEN}.ics", None),
        ("/", None),
        ("", None),
        ("/calendar/" + "a/" * 300 + ".ics", None),
    ],
)
def test_paths(path: str, expected: FeedPath | None) -> None:
    assert parse_path(path) == expected


@given(st.text(max_size=600))
def test_no_path_breaks_the_parser(path: str) -> None:
    parsed = parse_path(path)
    assert parsed is None or path.endswith(f"/{parsed.token}.ics")


def test_a_feed_path_never_shows_its_token() -> None:
    parsed = parse_path(f"/calendar/referees/anna/{TOKEN}.ics")
    assert parsed is not None
    assert TOKEN not in repr(parsed)
    assert TOKEN not in str(parsed)


@pytest.mark.parametrize(
    ("presented", "stored", "matches"),
    [
        (TOKEN, TOKEN, True),
        (TOKEN, TOKEN[:-1] + "x", False),
        (TOKEN, TOKEN + "x", False),
        (TOKEN, None, False),  # no Secret
        (TOKEN, "", False),  # a Secret without the key
        ("", "", False),
    ],
)
def test_tokens(presented: str, stored: str | None, matches: bool) -> None:
    assert token_matches(presented, stored) is matches


def test_the_rate_limit_keys_a_token_by_a_digest() -> None:
    assert TOKEN not in token_key(TOKEN)
    assert token_key(TOKEN) == token_key(TOKEN) != token_key(TOKEN + "x")


@pytest.mark.parametrize(
    ("condition", "matches"),
    [
        ('"abc"', True),
        ('W/"abc"', True),  # If-None-Match compares weakly
        ('"x", "abc"', True),
        ('"x",W/"abc" ', True),
        ("*", True),
        ('"abcd"', False),
        ("abc", False),  # unquoted: not that ETag
        ("", False),
        (",,,", False),
    ],
)
def test_if_none_match(condition: str, matches: bool) -> None:
    assert etag_matches(condition, '"abc"') is matches


def test_a_token_bucket_allows_a_burst_then_one_per_interval() -> None:
    buckets = TokenBuckets(burst=3, interval=10.0, keys=100)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(10.0)
    assert buckets.take("b", 0.0) == 0.0  # another token has its own budget
    assert buckets.take("a", 4.0) == pytest.approx(6.0)  # a refused request costs nothing
    assert buckets.take("a", 10.0) == 0.0
    assert buckets.take("a", 10.0) > 0
    assert buckets.take("a", 1000.0) == 0.0  # refilled, to the burst at most
    assert [buckets.take("a", 1000.0) for _ in range(3)][-1] > 0


def test_token_buckets_keep_at_most_their_number_of_keys() -> None:
    buckets = TokenBuckets(burst=1, interval=60.0, keys=2)
    buckets.take("a", 0.0)
    buckets.take("b", 0.0)
    buckets.take("c", 0.0)  # "a" is forgotten: it starts again with a full bucket
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("c", 0.0) > 0


def key(uid: str, revision: int | None = 1, **changes: Any) -> BodyKey:
    fields: dict[str, Any] = {
        "language": "sv",
        "duration_minutes": 120,
        "include_contacts": False,
        **changes,
    }
    return BodyKey(uid=uid, revision=revision, **fields)


def test_the_body_cache_is_bounded_by_bytes_least_recently_used_first() -> None:
    cache = BodyCache(max_bytes=250)
    for uid in "abc":
        cache.put(key(uid), Rendered(b"x" * 100, f'"{uid}"'))
    assert cache.size <= 250
    assert len(cache) == 2
    assert cache.get(key("a")) is None
    assert cache.get(key("c")) is not None
    # A dropped body's ETag is still known: a 304 needs no body.
    assert cache.etag(key("a")) == '"a"'
    cache.put(key("d"), Rendered(b"y" * 1000, '"d"'))  # bigger than the cache: never kept
    assert cache.get(key("d")) is None
    assert cache.etag(key("d")) == '"d"'
    assert cache.size <= 250


def test_a_new_revision_replaces_the_watchers_body() -> None:
    cache = BodyCache(max_bytes=1000)
    cache.put(key("a", 1), Rendered(b"one", '"1"'))
    cache.put(key("a", 2), Rendered(b"two", '"2"'))
    assert cache.get(key("a", 1)) is None
    assert cache.etag(key("a", 1)) is None
    assert cache.etag(key("a", 2)) == '"2"'
    assert cache.size == 3
    assert cache.etag(key("a", 2, include_contacts=True)) is None  # another shape, not rendered
    cache.forget("a")
    assert cache.size == 0
    assert len(cache) == 0
    assert cache.etag(key("a", 2)) is None


def body(calendar: Any = None, status: Any = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "referees", "name": "anna", "uid": "u1"},
        "spec": {"calendar": calendar, **spec},
        "status": status or {},
    }


@pytest.mark.parametrize(
    ("watcher", "expected"),
    [
        (body(), None),
        (body({"enabled": False}), None),
        (body({"enabled": "yes"}), None),  # invalid: no feed (the status tells why)
        (body({"enabled": True}, language="fi"), None),
        (body({}), key("u1", None)),  # enabled is the default once calendar is there
        (
            body(
                {"enabled": True, "durationMinutes": 90, "includeContacts": True},
                {"calendar": {"revision": 7}},
                language="en",
            ),
            key("u1", 7, language="en", duration_minutes=90, include_contacts=True),
        ),
        (body({}, {"calendar": {"revision": True}}), key("u1", None)),
        (body({}, {"calendar": None}), key("u1", None)),
    ],
)
def test_what_shapes_a_feed(watcher: dict[str, Any], expected: BodyKey | None) -> None:
    assert feed_view(watcher).body_key() == expected
