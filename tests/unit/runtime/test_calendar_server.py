"""The calendar feeds' server (controller/runtime/calendar_server.py) against a fake of its
Kubernetes reads: the answers to every kind of request, the API calls each costs, the token
Secret's life, and the rule that no token reaches a log line."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import vobject

from controller.adapters.kube import SecretData, StoredConfigMap
from controller.adapters.peoplestore import CALENDAR_KEY
from controller.core.calendar import CalendarState, advance
from controller.core.diff import Snapshot, normalise_all, window_for
from controller.core.errors import KubernetesError
from controller.core.model import WatcherRef
from controller.runtime.calendar_server import (
    MAX_BODY_BYTES,
    RATE_BURST,
    TOKEN_RECHECK_SECONDS,
    TOKEN_TTL_SECONDS,
    CalendarServer,
)
from tests.fakes.fogis.records import make_match

TOKEN = "t" * 43
UID = "9b2c4c1e-0000-4000-8000-000000000001"


@dataclass
class FakeKube:
    """Secrets and ConfigMaps by (namespace, name), and every call made."""

    secrets: dict[tuple[str, str], SecretData] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], StoredConfigMap] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    failing: bool = False
    race: tuple[tuple[str, str], SecretData] | None = None  # made by another replica at create

    async def find_secret(self, namespace: str, name: str, *, purpose: str) -> SecretData | None:
        self.calls.append(f"get secret {name}")
        if self.failing:
            raise KubernetesError("reading Secret: 503 Service Unavailable")
        return self.secrets.get((namespace, name))

    async def create_owned_secret(
        self, ref: WatcherRef, name: str, values: Mapping[str, str], labels: Mapping[str, str]
    ) -> bool:
        self.calls.append(f"create secret {name}")
        if self.race is not None:
            self.secrets[self.race[0]] = self.race[1]
        if (ref.namespace, name) in self.secrets:
            return False
        self.secrets[ref.namespace, name] = SecretData(dict(values), "1", "s", (ref.uid,))
        return True

    async def read_config_map(self, namespace: str, name: str) -> StoredConfigMap | None:
        self.calls.append(f"get configmap {name}")
        return self.config_maps.get((namespace, name))

    def store(self, state: CalendarState, uid: str = UID) -> None:
        data = {CALENDAR_KEY: gzip.compress(state.to_json().encode(), mtime=0)}
        self.config_maps["referees", "anna-matchlist-notified"] = StoredConfigMap(data, (uid,))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watcher(revision: int | None = 1, uid: str = UID, **calendar: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "referees", "name": "anna", "uid": uid},
        "spec": {"calendar": {"enabled": True, **calendar}},
        "status": {} if revision is None else {"calendar": {"revision": revision}},
    }


def state(*matchids: int, cancelled: frozenset[int] = frozenset()) -> CalendarState:
    records = [make_match(m, installd=m in cancelled) for m in matchids]
    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    window = window_for(now.date(), 7, 365)
    return advance(
        None, Snapshot(normalise_all(records)), records, window, now, include_contacts=False
    )


PATH = f"/calendar/referees/anna/{TOKEN}.ics"


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.secrets["referees", "anna-calendar"] = SecretData({"token": TOKEN}, "1", "s", (UID,))
    return fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(kube: FakeKube, clock: Clock) -> CalendarServer:
    served = CalendarServer(kube, clock=clock)
    served.observe(watcher())
    return served


async def get(server: CalendarServer, path: str = PATH, **headers: str) -> Any:
    return await server.answer("GET", path, headers)


async def test_a_feed_is_served_with_its_etag(server: CalendarServer, kube: FakeKube) -> None:
    kube.store(state(1, 2, cancelled=frozenset({2})))
    answer = await get(server)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert answer.headers["Cache-Control"] == "private, max-age=300"
    calendar = vobject.readOne(answer.body.decode())
    assert sorted(e.status.value for e in calendar.vevent_list) == ["CANCELLED", "CONFIRMED"]
    other = CalendarServer(kube)  # another replica, or this one restarted
    other.observe(watcher())
    again = await other.answer("GET", PATH, {})
    assert again.headers["ETag"] == answer.headers["ETag"]
    assert again.body == answer.body


async def test_no_list_yet_is_an_empty_calendar(server: CalendarServer) -> None:
    answer = await get(server)
    assert answer.status == 200
    assert not hasattr(vobject.readOne(answer.body.decode()), "vevent")


async def test_a_namesakes_list_is_not_this_watchers(
    server: CalendarServer, kube: FakeKube
) -> None:
    kube.store(state(1), uid="an-older-watcher")
    answer = await get(server)
    assert not hasattr(vobject.readOne(answer.body.decode()), "vevent")


async def test_if_none_match_costs_no_api_call(
    server: CalendarServer, kube: FakeKube, clock: Clock
) -> None:
    kube.store(state(1))
    tag = (await get(server)).headers["ETag"]
    kube.calls.clear()
    answer = await get(server, **{"If-None-Match": tag})
    assert (answer.status, answer.headers["ETag"], answer.body) == (304, tag, None)
    assert kube.calls == []
    # Past the token's cache: one Secret read, still no ConfigMap read.
    clock.now += TOKEN_TTL_SECONDS
    assert (await get(server, **{"If-None-Match": f'"other", W/{tag}'})).status == 304
    assert kube.calls == ["get secret anna-calendar"]


async def test_a_new_revision_costs_one_config_map_read(
    server: CalendarServer, kube: FakeKube
) -> None:
    kube.store(state(1))
    first = await get(server)
    kube.store(state(1, 2))
    kube.calls.clear()
    assert (await get(server)).body == first.body  # the watch still says revision 1
    assert kube.calls == []
    server.observe(watcher(revision=2))
    answers = await asyncio.gather(*(get(server) for _ in range(5)))  # one read for them all
    assert kube.calls == ["get configmap anna-matchlist-notified"]
    assert {a.headers["ETag"] for a in answers} != {first.headers["ETag"]}
    assert len(vobject.readOne(answers[0].body.decode()).vevent_list) == 2
    # What shapes the body is part of the key: a longer event is a new body.
    server.observe(watcher(revision=2, durationMinutes=90))
    assert (await get(server)).body != answers[0].body


@pytest.mark.parametrize(
    "path",
    [
        f"/calendar/referees/anna/{'x' * 43}.ics",  # a wrong token
        f"/calendar/referees/bert/{TOKEN}.ics",  # an unknown watcher
        f"/calendar/other/anna/{TOKEN}.ics",  # the same name elsewhere
        "/calendar/referees/anna/.ics",
        "/calendar/referees/anna",
        "/metrics",
        "/",
    ],
)
async def test_every_refusal_is_the_same_404(server: CalendarServer, path: str) -> None:
    answer = await get(server, path)
    assert (answer.status, answer.body) == (404, b"no such calendar feed\n")


async def test_a_disabled_or_deleted_feed_is_the_same_404(
    server: CalendarServer, kube: FakeKube
) -> None:
    assert (await get(server)).status == 200
    server.observe({**watcher(), "spec": {"calendar": {"enabled": False}}})
    assert ((await get(server)).status, (await get(server)).body) == (
        404,
        b"no such calendar feed\n",
    )
    server.observe(watcher())
    assert (await get(server)).status == 200
    server.observe(watcher(), deleted=True)
    assert (await get(server)).status == 404
    assert server.feeds == 0
    assert len(server.cache) == 0


async def test_a_recreated_namesake_does_not_serve_the_old_token(
    server: CalendarServer, kube: FakeKube
) -> None:
    assert (await get(server)).status == 200
    server.observe(watcher(uid="new-uid"))  # deleted and created again: the Secret is not its
    assert (await get(server)).status == 404


async def test_a_rotated_token_is_refused_once_its_cache_expires(
    server: CalendarServer, kube: FakeKube, clock: Clock
) -> None:
    assert (await get(server)).status == 200
    del kube.secrets["referees", "anna-calendar"]
    assert (await get(server)).status == 200  # still cached
    clock.now += TOKEN_TTL_SECONDS
    assert (await get(server)).status == 404
    # A new token is wanted: made by the token task.
    await server.tokens.ensure(WatcherRef("referees", "anna", UID))
    made = kube.secrets["referees", "anna-calendar"].values["token"]
    assert len(made) >= 43
    assert made != TOKEN
    assert (await get(server, f"/calendar/referees/anna/{made}.ics")).status == 200
    assert (await get(server)).status == 404


async def test_a_token_made_by_another_replica_first_is_read(kube: FakeKube) -> None:
    server = CalendarServer(kube)
    ref = WatcherRef("referees", "bert", "u2")
    # Another replica creates it between this one's read and its create.
    kube.race = ("referees", "bert-calendar"), SecretData({"token": TOKEN}, "1", "s", ("u2",))
    await server.tokens.ensure(ref)
    assert kube.calls == [
        "get secret bert-calendar",
        "create secret bert-calendar",
        "get secret bert-calendar",
    ]
    assert await server.tokens.current(ref) == TOKEN


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
async def test_methods_other_than_get_and_head(server: CalendarServer, method: str) -> None:
    answer = await server.answer(method, PATH, {})
    assert (answer.status, answer.headers["Allow"]) == (405, "GET, HEAD")


async def test_a_rate_limit_per_token_not_per_address(
    server: CalendarServer, clock: Clock, kube: FakeKube
) -> None:
    for _ in range(RATE_BURST):
        assert (await get(server)).status == 200
    refused = await get(server)
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    # Guessing other tokens for the same watcher has its own budget: the right one is not
    # locked out by someone else's guesses (and a guess is a 404 as before).
    assert (await get(server, f"/calendar/referees/anna/{'x' * 43}.ics")).status == 404
    clock.now += int(refused.headers["Retry-After"])
    assert (await get(server)).status == 200


async def test_an_absurd_if_none_match_is_400(server: CalendarServer) -> None:
    answer = await get(server, **{"If-None-Match": '"x",' * 300})
    assert answer.status == 400


async def test_an_api_server_that_cannot_be_read_is_503(
    server: CalendarServer, kube: FakeKube
) -> None:
    kube.failing = True
    answer = await get(server)
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "60"


async def test_a_corrupt_state_is_503_and_not_kept(server: CalendarServer, kube: FakeKube) -> None:
    kube.config_maps["referees", "anna-matchlist-notified"] = StoredConfigMap(
        {CALENDAR_KEY: b"not gzip"}, (UID,)
    )
    assert (await get(server)).status == 503
    kube.store(state(1))
    assert (await get(server)).status == 200


async def test_a_feed_too_large_is_never_sent(
    server: CalendarServer, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("controller.runtime.calendar_server.MAX_BODY_BYTES", 100)
    answer = await get(server)
    assert answer.status == 503
    assert MAX_BODY_BYTES > 100


async def test_the_body_cache_stays_within_its_bytes(kube: FakeKube) -> None:
    server = CalendarServer(kube, cache_bytes=3000)
    kube.store(state(1))
    for index in range(20):
        uid = f"u{index}"
        server.observe(
            {**watcher(uid=uid), "metadata": {"namespace": "referees", "name": "anna", "uid": uid}}
        )
        kube.secrets["referees", "anna-calendar"] = SecretData({"token": TOKEN}, "1", "s", (uid,))
        server.tokens.forget(WatcherRef("referees", "anna", uid))
        kube.store(state(1), uid=uid)
        assert (await get(server)).status == 200
        assert server.cache.size <= 3000


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server side logged (the test's own HTTP client logs its request lines)."""
    return "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )


@pytest.fixture
async def listening(server: CalendarServer) -> AsyncIterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await server.start("127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


async def test_over_http_with_no_log_line_naming_the_token(
    listening: str, kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kube.store(state(1))
    async with httpx.AsyncClient(base_url=listening) as client:
        got = await client.get(PATH)
        assert got.status_code == 200
        assert got.content.startswith(b"BEGIN:VCALENDAR")
        head = await client.head(PATH)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["ETag"] == got.headers["ETag"]
        assert head.headers["Content-Length"] == str(len(got.content))
        assert (
            await client.get(PATH, headers={"If-None-Match": got.headers["ETag"]})
        ).status_code == 304
        assert (await client.post(PATH)).status_code == 405
        assert (await client.get(PATH.replace("t" * 43, "u" * 43))).status_code == 404
        huge = await client.get(PATH, headers={"X-Junk": "j" * 10_000})
        assert huge.status_code in (400, 431)
        assert (await client.get("/calendar/" + "a" * 5000 + ".ics")).status_code in (400, 404, 414)
    assert TOKEN not in server_log(caplog)
    assert "u" * 43 not in server_log(caplog)


async def test_a_malformed_request_line_gets_400_without_a_traceback(
    listening: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = int(listening.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /calendar/referees/anna/{TOKEN}.ics HTTP/9\r\n\r\n".encode())
    await writer.drain()
    reply = await reader.read(200)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 400") or reply.startswith(b"HTTP/1.0 400")
    assert not any(r.exc_info for r in caplog.records)
    assert TOKEN not in server_log(caplog)


async def test_a_token_made_elsewhere_works_soon_and_the_old_one_only_until_its_ttl(
    server: CalendarServer, kube: FakeKube, clock: Clock
) -> None:
    """Another replica rotated the token: this one still trusts the old one it read (a poll
    every few minutes costs no API call), and rechecks for a token it does not know."""
    assert (await get(server)).status == 200
    kube.secrets["referees", "anna-calendar"] = SecretData({"token": "n" * 43}, "2", "s", (UID,))
    kube.calls.clear()
    clock.now += TOKEN_RECHECK_SECONDS / 2
    assert (await get(server, "/calendar/referees/anna/" + "n" * 43 + ".ics")).status == 404
    assert kube.calls == []  # a recheck at most every TOKEN_RECHECK_SECONDS
    clock.now += TOKEN_RECHECK_SECONDS
    assert (await get(server, "/calendar/referees/anna/" + "n" * 43 + ".ics")).status == 200
    assert kube.calls == ["get secret anna-calendar"]
    assert (await get(server)).status == 404  # the old token: the read now says otherwise
