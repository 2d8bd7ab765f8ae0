"""Many watchers on one shared FOGIS client: cookie-only sessions, login pacing, idle sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import date

import pytest

from controller.adapters.fogis import AUTH_COOKIE, FogisClient, FogisSession
from controller.adapters.sessions import Sessions
from controller.core.diff import window_for
from controller.core.model import Credentials
from controller.runtime.detection import FogisSource
from controller.runtime.politeness import Politeness
from tests.fakes.fogis.records import make_match
from tests.fakes.fogis.server import FakeFogis
from tests.support.clock import FakeTime

TODAY = date(2026, 11, 28)
WINDOW = window_for(TODAY, 7, 365)
ANNA, BO = Credentials("anna", "anna-pw"), Credentials("bo", "bo-pw")


@pytest.fixture
def fogis() -> Iterator[FakeFogis]:
    with FakeFogis(users={"anna": "anna-pw", "bo": "bo-pw"}) as fake:
        fake.set_matches([make_match(1, on=TODAY)], user="anna")
        fake.set_matches([make_match(2, on=TODAY)], user="bo")
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[FogisClient]:
    shared = FogisClient(timeout=5)
    yield shared
    await shared.aclose()


def auth_cookie(session: FogisSession) -> str:
    return next(c.value or "" for c in session.cookies if c.name == AUTH_COOKIE)


@pytest.mark.parametrize("style", ["classic", "oauth"])
async def test_watchers_sharing_a_client_never_see_each_others_cookies(
    client: FogisClient, style: str
) -> None:
    """The fake answers each user's own list for its session cookie: a mixed-up cookie would
    show as the other user's match."""
    with FakeFogis(users={"anna": "anna-pw", "bo": "bo-pw"}, login_style=style) as fogis:
        fogis.set_matches([make_match(1, on=TODAY)], user="anna")
        fogis.set_matches([make_match(2, on=TODAY)], user="bo")
        anna, bo = FogisSession(fogis.base_url), FogisSession(fogis.base_url)
        for _ in range(3):  # overlapping runs, as a storm on one slot has them
            lists = await asyncio.gather(
                client.fetch_matches(anna, ANNA, WINDOW, TODAY),
                client.fetch_matches(bo, BO, WINDOW, TODAY),
            )
            assert [[m["matchid"] for m in matches] for matches in lists] == [[1], [2]]
        assert (fogis.logins, fogis.fetches) == (2, 6)  # each session kept between runs
    assert auth_cookie(anna) != auth_cookie(bo)
    assert len(client.http.cookies) == 0  # the shared jar keeps nothing
    assert anna.owner == ANNA.fingerprint
    assert "anna-pw" not in repr(anna)


async def test_a_session_of_other_credentials_is_not_reused(
    fogis: FakeFogis, client: FogisClient
) -> None:
    session = FogisSession(fogis.base_url)
    await client.fetch_matches(session, ANNA, WINDOW, TODAY)
    matches = await client.fetch_matches(session, BO, WINDOW, TODAY)  # the Secret changed hands
    assert [m["matchid"] for m in matches] == [2]
    assert fogis.logins == 2


def source(
    client: FogisClient, session: FogisSession, who: Credentials, budget: float, limits: Politeness
) -> FogisSource:
    async def credentials() -> Credentials:
        return who

    return FogisSource(client, session, credentials, budget, limits)


async def test_the_login_rate_delays_logins_only(fogis: FakeFogis, client: FogisClient) -> None:
    clock = FakeTime()
    limits = Politeness(
        max_concurrent_per_host=16,
        logins_per_second=1,
        max_concurrent=64,
        clock=clock,
        sleep=clock.sleep,
    )
    anna = source(client, FogisSession(fogis.base_url), ANNA, 30, limits)
    bo = source(client, FogisSession(fogis.base_url), BO, 30, limits)
    await anna.fetch(TODAY, WINDOW)  # the burst: at once
    await bo.fetch(TODAY, WINDOW)  # a second login in the same second: waits for its turn
    assert clock.slept == pytest.approx([1.0])
    for _ in range(3):  # runs on a live session cookie: no login, no wait
        await anna.fetch(TODAY, WINDOW)
        await bo.fetch(TODAY, WINDOW)
    assert clock.slept == pytest.approx([1.0])
    assert (fogis.logins, fogis.fetches) == (2, 8)
    fogis.expire_sessions()  # a re-login is a login too
    await anna.fetch(TODAY, WINDOW)
    assert len(clock.slept) == 2
    assert fogis.logins == 3


async def test_waiting_for_a_turn_is_not_part_of_the_budget(
    fogis: FakeFogis, client: FogisClient
) -> None:
    """Real time: the run waits ~1 s for a turn, then its login ~1 s for a token, each longer
    than its 0.5 s budget, and it still succeeds."""
    limits = Politeness(max_concurrent_per_host=1, logins_per_second=0.5, max_concurrent=64)
    host = "127.0.0.1"
    await limits.login(host)  # the one token of the burst is gone

    async def busy() -> None:
        async with limits.exchange(host):
            await asyncio.sleep(1.0)

    holder = asyncio.create_task(busy())
    await asyncio.sleep(0)
    run = source(client, FogisSession(fogis.base_url), ANNA, 0.5, limits)
    assert [m["matchid"] for m in await run.fetch(TODAY, WINDOW)] == [1]
    await holder


async def test_a_run_queueing_for_a_login_holds_no_exchange_turn(
    fogis: FakeFogis, client: FogisClient
) -> None:
    """A storm of new sessions waits at the login rate without its exchange turns: a run on a
    live session (a trigger) gets the host's only turn while the login waits."""
    limits = Politeness(max_concurrent_per_host=1, logins_per_second=0.5, max_concurrent=64)
    live = FogisSession(fogis.base_url)
    await source(client, live, BO, 5, limits).fetch(TODAY, WINDOW)  # the burst's one token
    login = asyncio.create_task(
        source(client, FogisSession(fogis.base_url), ANNA, 5, limits).fetch(TODAY, WINDOW)
    )
    await asyncio.sleep(0.2)  # the login waits ~2 s for its token
    assert not login.done()
    trigger = await asyncio.wait_for(source(client, live, BO, 5, limits).fetch(TODAY, WINDOW), 1)
    assert [m["matchid"] for m in trigger] == [2]
    assert not login.done()
    assert [m["matchid"] for m in await login] == [1]
    assert fogis.logins == 2


@pytest.mark.parametrize(
    ("later", "base_url", "same"),
    [
        (60.0, "https://fogis.test/mdk", True),  # the next run of a busy watcher
        (29 * 60.0, "https://fogis.test/mdk", True),
        (30 * 60.0, "https://fogis.test/mdk", False),  # idle as long as FOGIS keeps a session
        (60.0, "https://other.test/mdk", False),  # spec.fogis.baseUrl changed
    ],
)
def test_sessions_are_kept_until_idle_or_moved(later: float, base_url: str, same: bool) -> None:
    clock = FakeTime()
    sessions = Sessions(clock=clock)
    first = sessions.get("uid-w", "https://fogis.test/mdk")
    clock.now += later
    assert (sessions.get("uid-w", base_url) is first) is same


def test_idle_sessions_are_swept_and_forgotten_ones_are_gone() -> None:
    clock = FakeTime()
    sessions = Sessions(idle_limit=100, clock=clock)

    def get(name: str) -> FogisSession:
        return sessions.get(f"uid-{name}", "https://f/mdk")

    hourly, busy, deleted = get("hourly"), get("busy"), get("deleted")
    sessions.forget("uid-deleted")
    assert get("deleted") is not deleted
    for _ in range(3):
        clock.now += 40
        assert get("busy") is busy
    # The sweep (due every idle_limit) dropped the idle one without it being asked for.
    assert "uid-hourly" not in sessions._sessions
    assert get("hourly") is not hourly
