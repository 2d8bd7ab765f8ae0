"""FOGIS adapter: log in (classic ASP.NET form or OAuth identity server) and fetch a match list.

Library errors become `SourceUnavailable` / `LoginFailed` with one-line messages that never carry
credentials or response bodies. The wire protocol is described in the design notes, section 4.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin

import httpx

from controller import USER_AGENT
from controller.adapters.destinations import (
    Resolver,
    api_server_addresses,
    refusal,
    system_resolver,
)
from controller.core.diff import Window
from controller.core.errors import LoginFailed, SourceUnavailable
from controller.core.jsontext import load_json
from controller.core.model import Credentials
from controller.core.reasons import Reason

AUTH_COOKIE = "FogisMobilDomarKlient.ASPXAUTH"
LOGIN_PATH = "/Login.aspx?ReturnUrl=%2fmdk%2f"
MATCH_LIST_PATH = "/MatchWebMetoder.aspx/GetMatcherAttRapportera"

# The two known login forms; an unknown form falls back to its first text input / submit button.
_USERNAME_NAMES = frozenset({"ctl00$maincontent$username", "username"})
_LOGIN_BUTTON_VALUES = frozenset({"logga in", "login"})
_MAX_REDIRECTS = 20  # httpx's default

_log = logging.getLogger(__name__)


# --- HTML forms ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Control:
    kind: str  # lower-case input type; buttons are "submit" unless they say otherwise
    name: str
    value: str
    checked: bool


@dataclass
class HtmlForm:
    action: str
    controls: list[_Control] = field(default_factory=list)

    @property
    def has_password(self) -> bool:
        return any(c.kind == "password" for c in self.controls)

    @property
    def hidden_only(self) -> bool:
        """A form of hidden fields only, as an OpenID Connect form_post response page has."""
        return bool(self.controls) and all(c.kind == "hidden" for c in self.controls)

    def _pick(self, kinds: frozenset[str], known: Callable[[_Control], bool]) -> _Control | None:
        candidates = [c for c in self.controls if c.kind in kinds and c.name]
        preferred = [c for c in candidates if known(c)]
        return next(iter(preferred or candidates), None)

    def login_data(self, credentials: Credentials) -> dict[str, str]:
        """What a browser would post: hidden and checked fields, credentials, the login button."""
        data = self.hidden_data()
        for control in self.controls:
            if not control.name:
                continue
            if control.kind == "password":
                data[control.name] = credentials.password
            elif control.kind in ("checkbox", "radio") and control.checked:
                data[control.name] = control.value or "on"
        username = self._pick(
            frozenset({"text", "email"}), lambda c: c.name.lower() in _USERNAME_NAMES
        )
        if username is not None:
            data[username.name] = credentials.username
        # Pages carry other buttons too (cancel, forgotten password): post only the login one.
        submit = self._pick(
            frozenset({"submit"}), lambda c: c.value.strip().lower() in _LOGIN_BUTTON_VALUES
        )
        if submit is not None:
            data[submit.name] = submit.value
        return data

    def hidden_data(self) -> dict[str, str]:
        return {c.name: c.value for c in self.controls if c.kind == "hidden" and c.name}


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[HtmlForm] = []
        self._open: HtmlForm | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key.lower(): value or "" for key, value in attrs}
        if tag == "form":
            self._open = HtmlForm(action=attributes.get("action", ""))
            self.forms.append(self._open)
        elif tag in ("input", "button") and self._open is not None:
            default_kind = "submit" if tag == "button" else "text"
            self._open.controls.append(
                _Control(
                    kind=(attributes.get("type") or default_kind).lower(),
                    name=attributes.get("name", ""),
                    value=attributes.get("value", ""),
                    checked="checked" in attributes,
                )
            )

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def parse_forms(html: str) -> list[HtmlForm]:
    """Every form on a page with its inputs and buttons; tolerant of broken markup."""
    parser = _FormParser()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError:  # html.parser asserts on some malformed declarations (`<![ x`)
        pass  # keep the forms parsed so far; a page without a usable form fails the login
    return parser.forms


# --- match list ----------------------------------------------------------------------------------


def match_list_request(window: Window, today: date) -> dict[str, Any]:
    """The filter FOGIS's own web client sends: every match of the window, all statuses."""
    return {
        "filter": {
            "datumFran": window.start.isoformat(),
            "datumTill": window.end.isoformat(),
            "datumTyp": 0,
            "typ": "alla",
            "status": ["avbruten", "uppskjuten", "installd"],
            "alderskategori": [1, 2, 3, 4, 5],
            "kon": [3, 2, 4],
            "sparadDatum": today.isoformat(),
        }
    }


def parse_match_list(body: bytes) -> list[dict[str, Any]]:
    """`matchlista` out of a `{"d": "<json>"}` answer; SourceUnavailable for anything else."""
    try:
        outer = load_json(body)
        inner = outer.get("d", outer) if isinstance(outer, dict) else None
        if isinstance(inner, str):
            inner = load_json(inner)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to be a match list
        raise SourceUnavailable("FOGIS answered the match list request with invalid JSON") from None
    if not isinstance(inner, dict):
        raise SourceUnavailable("FOGIS match list answer is not a JSON object")
    if inner.get("success") is False:
        raise SourceUnavailable("FOGIS reported success=false for the match list")
    matches = inner.get("matchlista")
    if not isinstance(matches, list):
        raise SourceUnavailable("FOGIS match list answer has no matchlista list")
    return [match for match in matches if isinstance(match, dict)]


# --- client --------------------------------------------------------------------------------------


class _TooLarge(httpx.TransportError):
    """A FOGIS answer grew past the byte limit (raw, or once decompressed)."""


class _Refused(httpx.RequestError):
    """A request (a redirect, a form's action) would go where FOGIS credentials must not."""


class _BoundedStream(httpx.AsyncByteStream):
    """A response body that stops at `limit` bytes, decompressing gzip/deflate itself in bounded
    steps: httpx inflates a whole network chunk at once, and 300 KB of gzip can be 1 GB."""

    def __init__(self, inner: httpx.AsyncByteStream, *, inflate: bool, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._inflater = zlib.decompressobj(wbits=47) if inflate else None  # gzip or zlib

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in self._inner:
            pending = chunk
            while pending:
                if self._inflater is None:
                    out, pending = pending, b""
                else:
                    try:
                        out = self._inflater.decompress(pending, self._limit - total + 1)
                    except zlib.error:
                        raise httpx.DecodingError("invalid compressed body") from None
                    pending = self._inflater.unconsumed_tail
                total += len(out)
                if total > self._limit:
                    raise _TooLarge(f"more than {self._limit} bytes")
                if out:
                    yield out
                if not out and pending:  # no progress (cannot happen with a sane zlib)
                    raise httpx.DecodingError("invalid compressed body")

    async def aclose(self) -> None:
        await self._inner.aclose()


class _GuardedTransport(httpx.AsyncBaseTransport):
    """Bounds every FOGIS answer (redirect pages included) and, for a shared transport, lends it
    to one client without letting the client close it."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, owned: bool, limit: int) -> None:
        self._inner = inner
        self._owned = owned
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", "deflate", "x-gzip", ""):
            await response.aclose()
            raise httpx.DecodingError(f"unsupported Content-Encoding {encoding!r}")
        assert isinstance(response.stream, httpx.AsyncByteStream)  # noqa: S101 - async transport
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length")
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_BoundedStream(
                response.stream, inflate=encoding not in ("identity", ""), limit=self._limit
            ),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        # A shared transport is closed by its owner, once, after every client is done.
        if self._owned:
            await self._inner.aclose()


@dataclass(slots=True)
class FogisSession:
    """What one watcher keeps between runs: its cookies (so most runs need no login) and whose
    they are (`owner`, the credentials' fingerprint: a rotated password must not ride on the old
    session). No client and no password: 10,000 of these must stay small."""

    base_url: str
    owner: str = ""
    cookies: tuple[Cookie, ...] = ()

    def needs_login(self, credentials: Credentials) -> bool:
        """Whether the next fetch starts with a login (no session, or someone else's)."""
        return self.owner != credentials.fingerprint or all(
            cookie.name != AUTH_COOKIE for cookie in self.cookies
        )


async def _no_wait() -> None:
    return None


class FogisClient:
    """FOGIS for every watcher: one httpx client (one connection pool), each watcher's session
    in its own FogisSession.

    Runs of different watchers overlap on the client, so its own cookie jar keeps nothing (a
    shared jar would mix their sessions): each fetch carries its session's cookies in a jar of
    its own and follows redirects itself, every hop checked before it leaves (see _check).
    `transport` may be shared further; `aclose` then leaves it open and its owner must close it.
    `timeout` applies to each connect/read/write step.
    """

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        max_response_bytes: int = 32 * 1024 * 1024,
        allowed_hosts: frozenset[str] = frozenset(),
        resolve: Resolver = system_resolver,
    ) -> None:
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.allowed_hosts = allowed_hosts
        self.resolve = resolve
        self.api_server = api_server_addresses()
        self.http = httpx.AsyncClient(
            transport=_GuardedTransport(
                transport or httpx.AsyncHTTPTransport(),
                owned=transport is None,
                limit=max_response_bytes,
            ),
            timeout=timeout,
            # A jar that accepts no cookie (a jar, not httpx.Cookies, which would be copied into
            # an ordinary jar): nothing of one watcher's session can reach another's requests.
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            # Only what _BoundedStream can inflate in bounded steps.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def fetch_matches(
        self,
        session: FogisSession,
        credentials: Credentials,
        window: Window,
        today: date,
        *,
        login_turn: Callable[[], Awaitable[None]] = _no_wait,
    ) -> list[dict[str, Any]]:
        """The raw `matchlista` for `window`; logs in only without a usable session, and awaits
        `login_turn` right before each login (the caller's login rate limit).

        Any answer that is not the expected list (401, a redirect or a 200 login page, an error
        status, JSON without a list) costs the session: a session that was not fresh gets one
        new login and one retry in this run; after that the run fails rather than hammering
        the login. No answer at all (a timeout, a refused connection) keeps the session.
        Not safe for concurrent fetches of one session: runs of one watcher never overlap.
        """
        exchange = _Exchange(self, session, login_turn)
        try:
            return await exchange.fetch(credentials, window, today)
        finally:
            exchange.keep()


class _Exchange:
    """One fetch of one watcher on the shared client, with its session's cookies."""

    def __init__(
        self, client: FogisClient, session: FogisSession, login_turn: Callable[[], Awaitable[None]]
    ) -> None:
        self._client = client
        self._session = session
        self._login_turn = login_turn
        self._base_url = session.base_url.rstrip("/")
        url = httpx.URL(self._base_url)
        self._host = url.host or self._base_url
        self._https = url.scheme == "https"
        self._cookies = httpx.Cookies()
        for cookie in session.cookies:
            self._cookies.jar.set_cookie(cookie)

    def keep(self) -> None:
        """Hand the cookies back to the session, whatever became of the fetch."""
        self._cookies.jar.clear_expired_cookies()
        self._session.cookies = tuple(self._cookies.jar)

    def _forget(self) -> None:
        self._cookies.clear()
        self._session.owner = ""

    async def fetch(
        self, credentials: Credentials, window: Window, today: date
    ) -> list[dict[str, Any]]:
        fresh = self._session.needs_login(credentials)
        if fresh:
            await self._login(credentials)
        body = match_list_request(window, today)
        while True:
            response = await self._post_match_list(body)
            try:
                return await self._match_list_from(response)
            except SourceUnavailable as problem:
                self._forget()
                if fresh:
                    raise self._after_fresh_login(response, problem) from None
            _log.info("FOGIS at %s gave no match list on its session; logging in again", self._host)
            await self._login(credentials)
            fresh = True

    async def _check(self, request: httpx.Request) -> None:
        """Credentials and session cookies go only to allowed hosts (when MLCD_FOGIS_ALLOWED_HOSTS
        is set) and never over plain http when the baseUrl is https, whatever a redirect, a
        307 re-sending the login form, or a form's `action` asks for."""
        client = self._client
        host = (request.url.host or "").lower()
        if client.allowed_hosts and host not in client.allowed_hosts:
            raise _Refused(f"{host!r} is not in MLCD_FOGIS_ALLOWED_HOSTS", request=request)
        if self._https and request.url.scheme != "https":
            raise _Refused(f"plain http to {host!r} from an https baseUrl", request=request)
        reason = await refusal(
            host,
            request.url.port or (443 if request.url.scheme == "https" else 80),
            resolve=client.resolve,
            api_server=client.api_server,
        )
        if reason is not None:
            raise _Refused(reason, request=request)

    async def _match_list_from(self, response: httpx.Response) -> list[dict[str, Any]]:
        if self._session_expired(response):
            raise SourceUnavailable("FOGIS asked for a login again")
        if response.status_code != 200:
            raise SourceUnavailable(
                f"FOGIS answered HTTP {response.status_code} to the match list request"
            )
        # In a thread: up to MLCD_FOGIS_MAX_RESPONSE_BYTES of JSON must not stall other watchers.
        return await asyncio.to_thread(parse_match_list, response.content)

    def _after_fresh_login(
        self, response: httpx.Response, problem: SourceUnavailable
    ) -> SourceUnavailable:
        if self._session_expired(response):
            return SourceUnavailable("FOGIS refused the session right after a fresh login")
        return problem

    def _cookie_names(self) -> set[str]:
        return {cookie.name for cookie in self._cookies.jar}

    async def _send(
        self,
        method: str,
        url: str,
        *,
        follow_redirects: bool,
        data: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        # `from None`: a chained httpx error carries the request, whose body may hold the password.
        http = self._client.http
        try:
            request = http.build_request(method, url, data=data, json=json_body, headers=headers)
            for _ in range(_MAX_REDIRECTS + 1):
                # This loop sends every request of an exchange, redirects included.
                await self._check(request)
                self._cookies.set_cookie_header(request)
                response = await http.send(request, follow_redirects=False)
                self._cookies.extract_cookies(response)
                if not follow_redirects or response.next_request is None:
                    return response
                request = response.next_request
            raise httpx.TooManyRedirects("too many redirects", request=request)
        except httpx.TimeoutException:
            raise SourceUnavailable(
                f"FOGIS at {self._host} did not answer within {self._client.timeout:g} s"
            ) from None
        except _Refused as exc:
            raise SourceUnavailable(
                f"FOGIS at {self._host} led to {exc}; nothing was sent there",
                reason=Reason.SOURCE_NOT_ALLOWED,
            ) from None
        except _TooLarge:
            limit = self._client.max_response_bytes
            size = f"{limit / (1024 * 1024):g} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
            raise SourceUnavailable(
                f"FOGIS at {self._host} answered more than {size} "
                "(MLCD_FOGIS_MAX_RESPONSE_BYTES); the answer was not used"
            ) from None
        except httpx.HTTPError as exc:
            raise SourceUnavailable(
                f"cannot talk to FOGIS at {self._host}: {type(exc).__name__}"
            ) from None

    async def _post_form(
        self, page: httpx.Response, form: HtmlForm, data: Mapping[str, str]
    ) -> httpx.Response:
        action = urljoin(str(page.url), form.action)
        return await self._send("POST", action, data=data, follow_redirects=True)

    async def _login(self, credentials: Credentials) -> None:
        self._forget()
        await self._login_turn()
        page = await self._send("GET", self._base_url + LOGIN_PATH, follow_redirects=True)
        if page.status_code != 200:
            raise SourceUnavailable(f"FOGIS login page answered HTTP {page.status_code}")
        form = next((f for f in parse_forms(page.text) if f.has_password), None)
        if form is None:
            raise SourceUnavailable("FOGIS login page has no login form")
        landed = await self._post_form(page, form, form.login_data(credentials))
        if AUTH_COOKIE not in self._cookie_names() and landed.status_code == 200:
            # OpenID Connect form_post: a page of hidden fields a browser submits by script. A
            # page that asks for the password again is a rejection, whatever else it holds.
            forms = parse_forms(landed.text)
            relay = next((f for f in forms if f.hidden_only), None)
            if relay is not None and not any(f.has_password for f in forms):
                landed = await self._post_form(landed, relay, relay.hidden_data())
        if AUTH_COOKIE in self._cookie_names():
            self._session.owner = credentials.fingerprint
            _log.debug("logged in to FOGIS at %s", self._host)
            return
        if landed.status_code >= 500:
            raise SourceUnavailable(f"FOGIS answered HTTP {landed.status_code} to the login")
        if landed.status_code in (403, 429):
            raise SourceUnavailable(
                f"FOGIS answered HTTP {landed.status_code} to the login (rate limiting or a "
                "firewall): not a verdict on the password; the next run tries again"
            )
        raise LoginFailed(
            "FOGIS rejected the login; check username and password in the credentials Secret"
        )

    async def _post_match_list(self, body: Mapping[str, Any]) -> httpx.Response:
        return await self._send(
            "POST",
            self._base_url + MATCH_LIST_PATH,
            json_body=body,
            headers={
                "Content-Type": "application/json; charset=UTF-8",
                "X-Requested-With": "XMLHttpRequest",
            },
            follow_redirects=False,
        )

    @staticmethod
    def _session_expired(response: httpx.Response) -> bool:
        if response.status_code == 401:
            return True
        location = response.headers.get("location", "")
        return response.is_redirect and "login" in location.lower()
