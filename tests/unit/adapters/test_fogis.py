"""The FOGIS adapter against the fake FOGIS on 127.0.0.1 (design notes, section 4)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.adapters.fogis import FogisClient, FogisSession, parse_forms, parse_match_list
from controller.core.diff import Window, window_for
from controller.core.errors import LoginFailed, SourceUnavailable
from controller.core.model import Credentials
from tests.fakes.fogis.records import make_match
from tests.fakes.fogis.server import FakeFogis

USER = "anna.andersson"
PASSWORD = "Hemligt-Lösen#42"
CREDENTIALS = Credentials(USER, PASSWORD)
TODAY = date(2026, 11, 28)
WINDOW = window_for(TODAY, 7, 365)
MATCHES = [make_match(1, on=TODAY), make_match(2, on=date(2026, 12, 24))]
REPOSITORY = Path(__file__).resolve().parents[3]


class OneWatcher:
    """The shared client as one watcher uses it: one FogisSession across its fetches."""

    def __init__(self, base_url: str, **options: Any) -> None:
        self.client = FogisClient(**options)
        self.session = FogisSession(base_url)

    async def fetch_matches(
        self, credentials: Credentials, window: Window, today: date
    ) -> list[dict[str, Any]]:
        return await self.client.fetch_matches(self.session, credentials, window, today)

    async def aclose(self) -> None:
        await self.client.aclose()


@pytest.fixture
def fogis() -> Iterator[FakeFogis]:
    # The "timeout" failure holds its answer back until the fake stops; the client gives up first.
    with FakeFogis(users={USER: PASSWORD}, matches=MATCHES, timeout_delay=30) as fake:
        yield fake


@pytest.fixture
async def client(fogis: FakeFogis) -> AsyncIterator[OneWatcher]:
    fogis_client = OneWatcher(fogis.base_url, timeout=0.5)
    yield fogis_client
    await fogis_client.aclose()


async def fetch_ids(client: OneWatcher, credentials: Credentials = CREDENTIALS) -> list[Any]:
    return [m["matchid"] for m in await client.fetch_matches(credentials, WINDOW, TODAY)]


def assert_safe(error: Exception) -> None:
    message = str(error)
    assert PASSWORD not in message
    assert "\n" not in message
    assert len(message) < 200


# --- login ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "form_post"),
    [("classic", False), ("oauth", False), ("oauth", True)],
    ids=["classic", "oauth-redirect", "oauth-form-post"],
)
async def test_login_styles(style: str, form_post: bool) -> None:
    with FakeFogis(
        users={USER: PASSWORD}, login_style=style, oauth_form_post=form_post, matches=MATCHES
    ) as fogis:
        client = OneWatcher(fogis.base_url, timeout=5)
        try:
            assert await fetch_ids(client) == [1, 2]
        finally:
            await client.aclose()
        assert (fogis.logins, fogis.fetches) == (1, 1)


@pytest.mark.parametrize("style", ["classic", "oauth"])
@pytest.mark.parametrize(
    "credentials",
    [Credentials(USER, "wrong"), Credentials("nobody", PASSWORD), Credentials(USER, "")],
    ids=["wrong-password", "unknown-user", "empty-password"],
)
async def test_rejected_credentials(style: str, credentials: Credentials) -> None:
    with FakeFogis(users={USER: PASSWORD}, login_style=style) as fogis:
        client = OneWatcher(fogis.base_url, timeout=5)
        try:
            with pytest.raises(LoginFailed) as caught:
                await client.fetch_matches(credentials, WINDOW, TODAY)
        finally:
            await client.aclose()
        assert_safe(caught.value)
        if credentials.password:
            assert credentials.password not in str(caught.value)
        assert (fogis.login_attempts, fogis.fetches) == (1, 0)  # one try, no loop


async def test_injected_login_rejection(fogis: FakeFogis, client: OneWatcher) -> None:
    fogis.fail_next("login_rejected")
    with pytest.raises(LoginFailed):
        await fetch_ids(client)
    assert await fetch_ids(client) == [1, 2]  # the next run logs in afresh
    assert (fogis.login_attempts, fogis.logins) == (2, 1)


# --- sessions ------------------------------------------------------------------------------------


async def test_session_is_kept_between_fetches(fogis: FakeFogis, client: OneWatcher) -> None:
    for _ in range(3):
        assert await fetch_ids(client) == [1, 2]
    assert (fogis.logins, fogis.fetches) == (1, 3)


@pytest.mark.parametrize("answer", ["401", "redirect", "login_page"])
@pytest.mark.parametrize("how", ["fail_next", "expire_sessions"])
async def test_expired_session_logs_in_again_once(answer: str, how: str) -> None:
    with FakeFogis(users={USER: PASSWORD}, matches=MATCHES, expired_answer=answer) as fogis:
        client = OneWatcher(fogis.base_url, timeout=5)
        try:
            await fetch_ids(client)
            if how == "fail_next":
                fogis.fail_next("expire_session")
            else:
                fogis.expire_sessions()
            assert await fetch_ids(client) == [1, 2]
        finally:
            await client.aclose()
        assert (fogis.logins, fogis.fetches) == (2, 2)


async def test_session_refused_after_fresh_login_fails_the_run(
    fogis: FakeFogis, client: OneWatcher
) -> None:
    await fetch_ids(client)
    fogis.fail_next("expire_session", count=2)
    with pytest.raises(SourceUnavailable, match="right after a fresh login") as caught:
        await fetch_ids(client)
    assert_safe(caught.value)
    assert fogis.logins == 2


async def test_rotated_password_starts_a_new_session(fogis: FakeFogis, client: OneWatcher) -> None:
    await fetch_ids(client)
    fogis.set_users({USER: "rotated"})
    assert await fetch_ids(client, Credentials(USER, "rotated")) == [1, 2]
    assert fogis.logins == 2
    # Going back to the stale password does not ride on the new session either.
    with pytest.raises(LoginFailed):
        await fetch_ids(client)


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "message", "answered"),
    [
        ("500", "HTTP 500", True),
        ("timeout", "did not answer within 0.5 s", False),
        ("garbage", "invalid JSON", True),
        ("success_false", "success=false", True),
        ("no_matchlista", "no matchlista", True),
        # Bounded while reading: never the whole 100 MiB (or 40 MiB) in memory.
        ("gzip_bomb", r"more than 32 MiB \(MLCD_FOGIS_MAX_RESPONSE_BYTES\)", False),
        ("huge", r"more than 32 MiB \(MLCD_FOGIS_MAX_RESPONSE_BYTES\)", False),
    ],
)
async def test_injected_failures(
    fogis: FakeFogis,
    client: OneWatcher,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    message: str,
    answered: bool,
) -> None:
    """An answer that is not the list costs the session: one fresh login and one retry in the
    run (here failing too). No usable answer at all keeps the session for the next run."""
    caplog.set_level(logging.DEBUG)
    await fetch_ids(client)
    fogis.fail_next(kind, count=2 if answered else 1)  # one for the retry
    with pytest.raises(SourceUnavailable, match=message) as caught:
        await fetch_ids(client)
    assert_safe(caught.value)
    assert fogis.logins == (2 if answered else 1)
    assert await fetch_ids(client) == [1, 2]
    assert fogis.logins == (3 if answered else 1)
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("kind", ["500", "garbage", "success_false", "no_matchlista"])
async def test_one_bad_answer_on_an_old_session_is_retried_with_a_fresh_login(
    fogis: FakeFogis, client: OneWatcher, kind: str
) -> None:
    """E.g. a 200 login page on a session FOGIS dropped: the run still gets its list."""
    await fetch_ids(client)
    fogis.fail_next(kind)
    assert await fetch_ids(client) == [1, 2]
    assert fogis.logins == 2


async def test_a_gzip_compressed_answer_is_read(fogis: FakeFogis, client: OneWatcher) -> None:
    fogis.fail_next("gzipped")
    assert await fetch_ids(client) == [1, 2]


async def test_the_limit_is_a_setting(fogis: FakeFogis) -> None:
    small = OneWatcher(fogis.base_url, timeout=5, max_response_bytes=64 * 1024)
    try:
        await fetch_ids(small)  # the login pages and a two-match answer fit in 64 KiB
        fogis.set_matches([make_match(i, on=TODAY) for i in range(1, 200)])
        with pytest.raises(SourceUnavailable, match="more than 65536 bytes"):
            await fetch_ids(small)
    finally:
        await small.aclose()


async def test_unreachable_server() -> None:
    fogis = FakeFogis()
    with fogis:
        base_url = fogis.base_url
    client = OneWatcher(base_url, timeout=5)
    try:
        with pytest.raises(
            SourceUnavailable, match=r"cannot talk to FOGIS at 127\.0\.0\.1"
        ) as caught:
            await fetch_ids(client)
    finally:
        await client.aclose()
    assert_safe(caught.value)


def _mock_login_page(status: int, page: str) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, text=page))


@pytest.mark.parametrize(
    ("status", "page", "message"),
    [
        (503, "<h1>Service Unavailable</h1>", "login page answered HTTP 503"),
        (200, "<form action='/search'><input name='q'></form>", "no login form"),
        (200, "", "no login form"),
    ],
)
async def test_unusable_login_page(status: int, page: str, message: str) -> None:
    client = OneWatcher("https://fogis.test/mdk", transport=_mock_login_page(status, page))
    try:
        with pytest.raises(SourceUnavailable, match=message):
            await fetch_ids(client)
    finally:
        await client.aclose()


LOGIN_FORM = "<form method=post><input name=u><input type=password name=p></form>"
RELAY_FORM = "<form method=post action=/cb><input type=hidden name=code value=c></form>"


@pytest.mark.parametrize(
    ("status", "page", "error", "message", "requests"),
    [
        (502, "", SourceUnavailable, "HTTP 502 to the login", 2),
        (200, LOGIN_FORM, LoginFailed, "rejected the login", 2),
        (200, LOGIN_FORM + RELAY_FORM, LoginFailed, "rejected the login", 2),
        (200, RELAY_FORM, LoginFailed, "rejected the login", 3),  # relayed once, no cookie
        # Rate limiting and firewalls say nothing about the password: no LoginFailed (and so no
        # login backoff, no "check your password").
        (429, LOGIN_FORM, SourceUnavailable, "HTTP 429 to the login .*not a verdict", 2),
        (403, "Request blocked", SourceUnavailable, "HTTP 403 to the login .*not a verdict", 2),
    ],
    ids=[
        "server-error",
        "form-again",
        "form-again-with-hidden-form",
        "relay-without-cookie",
        "rate-limited",
        "blocked",
    ],
)
async def test_login_outcomes_without_auth_cookie(
    status: int, page: str, error: type[Exception], message: str, requests: int
) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "GET":
            return httpx.Response(200, text=LOGIN_FORM)
        return httpx.Response(status, text=page)

    client = OneWatcher("https://fogis.test/mdk", transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(error, match=message):
            await fetch_ids(client)
    finally:
        await client.aclose()
    assert len(seen) == requests


# --- the request ---------------------------------------------------------------------------------


async def test_filter_body_carries_the_window(fogis: FakeFogis, client: OneWatcher) -> None:
    window = window_for(TODAY, 3, 10)
    matches = await client.fetch_matches(CREDENTIALS, window, TODAY)
    assert [m["matchid"] for m in matches] == [1]  # the fake filters by window like FOGIS
    assert fogis.last_filter == {
        "datumFran": "2026-11-25",
        "datumTill": "2026-12-08",
        "datumTyp": 0,
        "typ": "alla",
        "status": ["avbruten", "uppskjuten", "installd"],
        "alderskategori": [1, 2, 3, 4, 5],
        "kon": [3, 2, 4],
        "sparadDatum": "2026-11-28",
    }


async def test_shared_transport_outlives_each_client(fogis: FakeFogis) -> None:
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=2))
    first = OneWatcher(fogis.base_url, transport=transport, timeout=5)
    second = OneWatcher(fogis.base_url, transport=transport, timeout=5)
    try:
        await fetch_ids(first)
        await first.aclose()
        assert await fetch_ids(second) == [1, 2]
        assert fogis.logins == 2  # each watcher keeps its own session
    finally:
        await second.aclose()
        await transport.aclose()


# --- pure parts ----------------------------------------------------------------------------------


def _d(inner: Any) -> bytes:
    return json.dumps({"d": json.dumps(inner)}).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_d({"success": True, "matchlista": [{"matchid": 1}]}), [{"matchid": 1}]),
        (_d({"__type": "x", "anvandartyp": 1, "matchlista": []}), []),
        (json.dumps({"d": {"matchlista": [{"matchid": 2}]}}).encode(), [{"matchid": 2}]),
        (json.dumps({"matchlista": [{"matchid": 3}]}).encode(), [{"matchid": 3}]),
        (_d({"matchlista": [{"matchid": 4}, "junk", None, 5]}), [{"matchid": 4}]),
    ],
)
def test_parse_match_list(body: bytes, expected: list[dict[str, Any]]) -> None:
    assert parse_match_list(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "invalid JSON"),
        (b"<html>login</html>", "invalid JSON"),
        (json.dumps({"d": "{broken"}).encode(), "invalid JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"d": 42}).encode(), "not a JSON object"),
        (_d({"success": False, "matchlista": []}), "success=false"),
        (_d({"success": True}), "no matchlista"),
        (_d({"matchlista": None}), "no matchlista"),
        (_d({"matchlista": {"1": {}}}), "no matchlista"),
        (b"[" * 100_000, "invalid JSON"),  # too deep for the parser: data, not a crash
        (json.dumps({"d": "[" * 100_000}).encode(), "invalid JSON"),
    ],
)
def test_parse_match_list_refuses(body: bytes, message: str) -> None:
    with pytest.raises(SourceUnavailable, match=message):
        parse_match_list(body)


CLASSIC = """
<form method="post" action="./Login.aspx?ReturnUrl=%2fmdk%2f" id="form1">
<input type="hidden" name="__VIEWSTATE" value="/wE&#43;Pw&amp;x==" />
<input type="hidden" name="__EVENTVALIDATION" value="ev" />
<input type="text" name="ctl00$Search" />
<input type="submit" name="ctl00$MainContent$Forgot" value="Glömt lösenord" />
<input name="ctl00$MainContent$UserName" type="text" />
<input name="ctl00$MainContent$Password" type="password" />
<input type="checkbox" name="ctl00$MainContent$Remember" checked />
<input type="submit" name="ctl00$MainContent$LoginButton" value="Logga in" />
</form>"""
IDENTITY = """
<form action="/search"><input name="q" type="text"></form>
<form method="post" action="/Account/Login?ReturnUrl=%2Fconnect">
<input type="hidden" name="ReturnUrl" value="/connect/authorize/callback?a=1&amp;b=2">
<input name="Username"><input name="Password" type="password">
<input type="checkbox" name="RememberLogin" value="true">
<button name="button" value="cancel">Avbryt</button><button name="button" value="login">In</button>
<input type="hidden" name="__RequestVerificationToken" value="tok">
"""


@pytest.mark.parametrize(
    ("page", "action", "data"),
    [
        (
            CLASSIC,
            "./Login.aspx?ReturnUrl=%2fmdk%2f",
            {
                "__VIEWSTATE": "/wE+Pw&x==",
                "__EVENTVALIDATION": "ev",
                "ctl00$MainContent$UserName": USER,
                "ctl00$MainContent$Password": PASSWORD,
                "ctl00$MainContent$Remember": "on",
                "ctl00$MainContent$LoginButton": "Logga in",
            },
        ),
        (
            IDENTITY,  # unclosed form, unchecked checkbox, two buttons with one name
            "/Account/Login?ReturnUrl=%2Fconnect",
            {
                "ReturnUrl": "/connect/authorize/callback?a=1&b=2",
                "__RequestVerificationToken": "tok",
                "Username": USER,
                "Password": PASSWORD,
                "button": "login",
            },
        ),
        (
            "<form><input type=email name=mail><input type=password name=pw></form>",
            "",
            {"mail": USER, "pw": PASSWORD},
        ),
    ],
    ids=["classic", "identity-server", "unknown-form"],
)
def test_login_form_data(page: str, action: str, data: dict[str, str]) -> None:
    form = next(f for f in parse_forms(page) if f.has_password)
    assert form.action == action
    assert form.login_data(CREDENTIALS) == data


@pytest.mark.parametrize(
    ("page", "hidden_only"),
    [
        ("<form action=/cb><input type=hidden name=code value=c></form>", True),
        ("<form action=/cb><input type=hidden name=c value=c><input name=x></form>", False),
        ("<form action=/cb></form>", False),
    ],
)
def test_form_post_relay_detection(page: str, hidden_only: bool) -> None:
    [form] = parse_forms(page)
    assert form.hidden_only is hidden_only


def test_parse_forms_survives_broken_markup() -> None:
    assert parse_forms("<form <input type=password") == []
    assert parse_forms("<<<>>>&&&</form></form>") == []


# --- the fake's control surface, as demos and subprocess tests use it ---------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/_control/matches", [make_match(5, on=TODAY)], 200),
        ("PUT", "/_control/matches", {"matchid": 5}, 400),
        ("PUT", "/_control/users", {USER: "x"}, 200),
        ("PUT", "/_control/users", ["x"], 400),
        ("POST", "/_control/fail", {"kind": "500", "count": 2}, 200),
        ("POST", "/_control/fail", {"kind": "meteor"}, 400),
        ("POST", "/_control/fail", {}, 400),
        ("POST", "/_control/expire", None, 200),
        ("GET", "/_control/state", None, 200),
        ("DELETE", "/_control/state", None, 501),
        ("POST", "/_control/state", None, 404),
        ("POST", "/_control/peak", None, 200),
    ],
)
async def test_control_api_requests(
    fogis: FakeFogis, method: str, path: str, body: Any, status: int
) -> None:
    async with httpx.AsyncClient(base_url=fogis.origin) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code == status


async def test_control_api_drives_the_fake(fogis: FakeFogis, client: OneWatcher) -> None:
    async with httpx.AsyncClient(base_url=fogis.origin) as http:
        await http.put("/_control/matches", json=[make_match(5, on=TODAY)])
        assert await fetch_ids(client) == [5]
        await http.post("/_control/fail", json={"kind": "success_false", "count": 2})
        with pytest.raises(SourceUnavailable):
            await fetch_ids(client)
        await http.post("/_control/expire")
        assert await fetch_ids(client) == [5]
        state = (await http.get("/_control/state")).json()
    assert state["logins"] == 3
    assert state["fetches"] == 2
    assert state["pendingFailures"] == []
    assert state["lastFilter"]["sparadDatum"] == TODAY.isoformat()


@pytest.fixture
def matches_file(tmp_path: Path) -> Path:
    path = tmp_path / "matches.json"
    path.write_text(json.dumps([make_match(8, on=TODAY)]), encoding="utf-8")
    return path


async def test_command_line(matches_file: Path) -> None:
    fake = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.fakes.fogis", "--user", USER, "--password", PASSWORD],
        *["--login-style", "oauth", "--matches", str(matches_file)],
        cwd=REPOSITORY,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert fake.stdout is not None
        # A bound on a hang, not a timing assertion.
        banner = (await asyncio.wait_for(fake.stdout.readline(), 60)).decode()
        assert banner.startswith("listening on http://127.0.0.1:")
        client = OneWatcher(banner.split()[-1], timeout=5)
        try:
            assert await fetch_ids(client) == [8]
        finally:
            await client.aclose()
    finally:
        fake.terminate()
        assert await fake.wait() == 0


# --- where credentials may go ---------------------------------------------------------------------


def _fogis_leading_to(target: str, *, via: str) -> tuple[httpx.MockTransport, list[str]]:
    """A FOGIS whose login form posts to `target` (via="action"), or redirects the login POST
    there with a 307 that re-sends the password (via="redirect")."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url}")
        if request.method == "GET":
            action = target if via == "action" else "/mdk/Login.aspx"
            form = f"<form method=post action={action}><input name=u><input type=password name=p>"
            return httpx.Response(200, text=form + "</form>")
        return httpx.Response(307, headers={"Location": target})

    return httpx.MockTransport(answer), seen


@pytest.mark.parametrize("via", ["action", "redirect"])
@pytest.mark.parametrize(
    ("target", "allowed", "refusal"),
    [
        ("https://collector.example/steal", {"fogis.test"}, "'collector.example' is not in"),
        ("http://fogis.test/mdk/Login.aspx", set(), "plain http to 'fogis.test'"),
        ("http://fogis.test/mdk/Login.aspx", {"fogis.test"}, "plain http to 'fogis.test'"),
    ],
)
async def test_credentials_never_leave_the_allowed_hosts_or_https(
    via: str, target: str, allowed: set[str], refusal: str
) -> None:
    transport, seen = _fogis_leading_to(target, via=via)
    client = OneWatcher(
        "https://fogis.test/mdk", transport=transport, allowed_hosts=frozenset(allowed)
    )
    try:
        with pytest.raises(SourceUnavailable, match=refusal) as caught:
            await fetch_ids(client)
    finally:
        await client.aclose()
    assert caught.value.reason == "SourceNotAllowed"
    assert_safe(caught.value)
    assert not any(target in line for line in seen), seen  # nothing reached it


async def test_an_allowed_identity_server_host_is_followed() -> None:
    """The OAuth login crosses hosts (auth.fogis.se): list every FOGIS host in the allow-list."""
    with FakeFogis(users={USER: PASSWORD}, matches=MATCHES, login_style="oauth") as fogis:
        client = OneWatcher(fogis.base_url, timeout=5, allowed_hosts=frozenset({"127.0.0.1"}))
        try:
            assert await fetch_ids(client) == [1, 2]
        finally:
            await client.aclose()
