"""A FOGIS-compatible server for tests and the demo.

A stdlib HTTP server on 127.0.0.1 in a background thread that speaks the wire protocol of the
design notes (section 4): the classic ASP.NET login form or the OAuth identity-server detour, the
session cookie, and the match-list page method with its `{"d": "<json>"}` answer. Failures are
injected per request, and everything is reachable over HTTP for subprocess tests and the demo.

    with FakeFogis(users={"anna": "pw"}, login_style="oauth") as fogis:
        fogis.set_matches([make_match(1001), make_match(1002, installd=True)])
        fogis.fail_next("500")
        ...  # point a FogisClient at fogis.base_url

As a program (samples unless --matches gives a JSON list of records):
    python -m tests.fakes.fogis --port 8001 --user anna --password pw [--matches f.json]
and drive it with
    PUT  /_control/matches   a JSON list of match records
    PUT  /_control/users     {"username": "password", ...}
    PUT  /_control/matches?user=NAME   that user's own list (others keep the shared one)
    POST /_control/fail      {"kind": "500", "count": 1}
    POST /_control/expire    (drops every session)
    GET  /_control/state     {"logins", "loginAttempts", "fetches", "lastFilter", ...}
"""

from __future__ import annotations

import argparse
import functools
import gzip
import html
import json
import secrets
import signal
import sys
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from tests.fakes.background import BackgroundServer

AUTH_COOKIE = "FogisMobilDomarKlient.ASPXAUTH"
IDSRV_COOKIE = "idsrv"
MATCH_LIST_PATH = "/mdk/MatchWebMetoder.aspx/GetMatcherAttRapportera"
LOGIN_STYLES = ("classic", "oauth")
# "gzipped" is no failure: the normal answer, gzip-compressed. "gzip_bomb" is 100 MiB of zeros
# in 100 KiB of gzip; "huge" is a valid answer padded to 40 MiB. "slow" is the normal answer held
# back for `slow_delay` seconds (shorter than a client's timeout, unlike "timeout").
_ANSWER_FAILURES = (
    "500", "timeout", "garbage", "success_false", "no_matchlista", "gzipped", "gzip_bomb", "huge",
    "slow",
)  # fmt: skip
FAILURE_KINDS = (*_ANSWER_FAILURES, "expire_session", "login_rejected")

_VIEWSTATE = "/wEPDwUKLTM0NjU2OTcyMw9kFgJmD2QWAgIDD2QWAgIBDw8WAh4EVGV4dAUHTG9nZ2EgaW4+&Zw=="
_EVENT_VALIDATION = "/wEdAAR+d8kS&x2=="
_REQUEST_TOKEN = "CfDJ8&fake-token"
_CLASSIC_USER = "ctl00$MainContent$UserName"
_CLASSIC_PASSWORD = "ctl00$MainContent$Password"
_CLASSIC_BUTTON = "ctl00$MainContent$LoginButton"
_CLASSIC_FORGOT = "ctl00$MainContent$ForgotPasswordButton"
_ZONE = ZoneInfo("Europe/Stockholm")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Hundreds of watchers connect at the same second in the benchmark; the default of 5
    # queued connections would drop most of them.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], fake: FakeFogis) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out leaves a broken pipe behind; tests provoke that on purpose.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Reply:
    def __init__(
        self,
        status: int = 200,
        body: str | bytes = b"",
        *,
        content_type: str = "text/html; charset=utf-8",
        location: str | None = None,
        cookies: Mapping[str, str] | None = None,
        delay: float = 0.0,
        encoding: str | None = None,
    ) -> None:
        self.encoding = encoding  # Content-Encoding of `body`, when compressed
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.location = location
        self.cookies = dict(cookies or {})
        self.delay = delay


@dataclass(frozen=True)
class Served:
    """One match list answered successfully: to whom, what (after the window filter), for which
    window. Handed to `on_served` before the answer leaves."""

    user: str
    matches: Sequence[Mapping[str, Any]]
    start: date
    end: date


@dataclass(frozen=True)
class _Request:
    method: str
    path: str  # lower-cased, without a trailing slash
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names lower-cased
    cookies: Mapping[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        pairs = parse_qs(self.body.decode(), keep_blank_values=True)
        return {name: values[0] for name, values in pairs.items()}


def _broken_answer(failure: str | None) -> _Reply | None:
    """The canned answer of a failure that is no match list at all, else None."""
    if failure == "500":
        return _json_reply({"Message": "Ett fel har uppstått."}, 500)
    if failure == "garbage":
        return _Reply(200, '<html>Runtime Error</html>{"d":', content_type="application/json")
    if failure == "gzip_bomb":
        return _Reply(200, _gzip_bomb(), content_type="application/json", encoding="gzip")
    if failure == "huge":
        return _Reply(200, _huge_answer(), content_type="application/json")
    return None


@functools.cache
def _huge_answer() -> bytes:
    """A match-list answer padded to 40 MiB (built once: encoding it per request is slow)."""
    inner = json.dumps({"success": True, "matchlista": [], "padding": "x" * (40 * 1024 * 1024)})
    return json.dumps({"d": inner}).encode()


@functools.cache
def _gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    return b"".join([*(compressor.compress(zeros) for _ in range(100)), compressor.flush()])


def _json_reply(document: Any, status: int = 200) -> _Reply:
    return _Reply(status, json.dumps(document, ensure_ascii=False), content_type="application/json")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        cookies = {name: m.value for name, m in SimpleCookie(headers.get("cookie", "")).items()}
        reply = self.server.fake._route(self.command, self.path, headers, cookies, body)
        if reply.delay and self.server.fake._stopping.wait(reply.delay):
            return  # stopped meanwhile: drop the connection without an answer
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if reply.location is not None:
            self.send_header("Location", reply.location)
        if reply.encoding is not None:
            self.send_header("Content-Encoding", reply.encoding)
        for name, value in reply.cookies.items():
            self.send_header("Set-Cookie", f"{name}={value}; path=/; HttpOnly")
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests look at the counters, the CLI prints its own lines."""


def _page(title: str, form: str, note: str = "") -> str:
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p class='error'>{html.escape(note)}</p>{form}</body></html>"
    )


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}" />'


class FakeFogis(BackgroundServer):
    """FOGIS on 127.0.0.1; every control is thread-safe and applies to the next requests."""

    thread_name = "fake-fogis"

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        login_style: str = "classic",
        oauth_form_post: bool = False,
        expired_answer: str = "401",
        timeout_delay: float = 2.0,
        matches: Sequence[Mapping[str, Any]] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        slow_delay: float = 1.0,
        on_served: Callable[[Served], None] | None = None,
    ) -> None:
        if login_style not in LOGIN_STYLES:
            raise ValueError(f"login_style must be one of {LOGIN_STYLES}")
        if expired_answer not in ("401", "redirect", "login_page"):
            raise ValueError("expired_answer must be '401', 'redirect' or 'login_page'")
        self.login_style = login_style
        # OAuth only: answer like ASP.NET Core's default response_mode=form_post (a self-posting
        # page of hidden fields) instead of redirecting to /mdk/signin-oidc with a query.
        self.oauth_form_post = oauth_form_post
        self.expired_answer = expired_answer
        # How long a "timeout" failure holds its answer back: longer than the client's timeout.
        self.timeout_delay = timeout_delay
        self.slow_delay = slow_delay
        # Called (in the handler thread) with every match list answered successfully: a test
        # can log exactly what each user was served, and when.
        self.on_served = on_served
        super().__init__(host, port)
        self._lock = threading.Lock()
        self._users = dict(users or {})
        self._matches = [dict(m) for m in matches]
        self._user_matches: dict[str, list[dict[str, Any]]] = {}  # lists of their own
        self._failures: list[str] = []
        # Valid auth cookie values, identity-server sessions and authorization codes not yet
        # redeemed, each with the user it belongs to (so a user can be served a list of its own).
        self._sessions: dict[str, str] = {}
        self._idsrv_sessions: dict[str, str] = {}
        self._codes: dict[str, str] = {}
        self._logins = 0
        self._login_attempts = 0
        self._fetches = 0
        self._last_filter: dict[str, Any] | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/mdk"

    def _make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        return _Server(address, self)

    # --- controls --------------------------------------------------------------------------------

    def set_matches(self, matches: Sequence[Mapping[str, Any]], user: str | None = None) -> None:
        """The list every user is served, or with `user` the list only that user is served."""
        with self._lock:
            if user is None:
                self._matches = [dict(m) for m in matches]
            else:
                self._user_matches[user] = [dict(m) for m in matches]

    def set_users(self, users: Mapping[str, str]) -> None:
        """Replace the accepted logins; existing sessions stay valid, as on the real server."""
        with self._lock:
            self._users = dict(users)

    def fail_next(self, kind: str, count: int = 1) -> None:
        """Make the next `count` match-list requests (logins for "login_rejected") fail."""
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; known: {', '.join(FAILURE_KINDS)}")
        if kind in ("gzip_bomb", "huge"):
            _gzip_bomb(), _huge_answer()  # made now, not while a client waits for its answer
        with self._lock:
            self._failures.extend([kind] * count)

    def clear_failures(self) -> None:
        """Forget failures queued by `fail_next` that no request has taken yet."""
        with self._lock:
            self._failures.clear()

    def expire_sessions(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._idsrv_sessions.clear()

    @property
    def logins(self) -> int:
        """Successful logins (auth cookies issued)."""
        with self._lock:
            return self._logins

    @property
    def login_attempts(self) -> int:
        """Credential submissions, accepted or not."""
        with self._lock:
            return self._login_attempts

    @property
    def fetches(self) -> int:
        """Match lists served successfully."""
        with self._lock:
            return self._fetches

    @property
    def last_filter(self) -> dict[str, Any] | None:
        """The `filter` object of the last authorised match-list request."""
        with self._lock:
            return None if self._last_filter is None else dict(self._last_filter)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "logins": self._logins,
                "loginAttempts": self._login_attempts,
                "fetches": self._fetches,
                "lastFilter": self._last_filter,
                "pendingFailures": list(self._failures),
                "matchCount": len(self._matches),
                "sessions": len(self._sessions),
            }

    # --- protocol --------------------------------------------------------------------------------

    def _take_failure(self, kinds: Sequence[str]) -> str | None:
        with self._lock:
            for index, kind in enumerate(self._failures):
                if kind in kinds:
                    return self._failures.pop(index)
        return None

    def _check_password(self, username: str, password: str) -> bool:
        rejected = self._take_failure(("login_rejected",)) is not None
        with self._lock:
            self._login_attempts += 1
            expected = self._users.get(username)
        return (
            not rejected
            and expected is not None
            and secrets.compare_digest(expected.encode(), password.encode())
        )

    def _valid(self, tokens: Mapping[str, str], token: str | None) -> bool:
        with self._lock:
            return token in tokens

    def _new_session(self, user: str) -> dict[str, str]:
        token = secrets.token_hex(16)
        with self._lock:
            self._sessions[token] = user
            self._logins += 1
        return {AUTH_COOKIE: token}

    def _route(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        cookies: Mapping[str, str],
        body: bytes,
    ) -> _Reply:
        url = urlsplit(target)
        request = _Request(
            method=method,
            path=url.path.rstrip("/").lower() or "/",
            query={k: v[0] for k, v in parse_qs(url.query).items()},
            headers=headers,
            cookies=cookies,
            body=body,
        )
        handler = {
            "/_control/matches": self._control,
            "/_control/users": self._control,
            "/_control/fail": self._control,
            "/_control/expire": self._control,
            "/_control/state": self._control,
            "/mdk": self._home,
            "/mdk/login.aspx": self._login_page,
            "/connect/authorize": self._authorize,
            "/connect/authorize/callback": self._callback,
            "/account/login": self._identity_login,
            "/mdk/signin-oidc": self._signin_oidc,
            MATCH_LIST_PATH.lower(): self._match_list,
        }.get(request.path)
        if handler is None:
            return _Reply(404, "not found", content_type="text/plain")
        return handler(request)

    def _home(self, request: _Request) -> _Reply:
        if not self._valid(self._sessions, request.cookies.get(AUTH_COOKIE)):
            return _Reply(302, location="/mdk/Login.aspx?ReturnUrl=%2fmdk%2f")
        return _Reply(200, _page("Mina matcher", ""))

    def _login_page(self, request: _Request) -> _Reply:
        if self.login_style == "oauth":
            return self._authorize_redirect()
        if request.method == "POST":
            return self._classic_post(request.form)
        return self._classic_page(request.cookies)

    # classic ASP.NET forms login

    def _classic_page(self, cookies: Mapping[str, str], note: str = "") -> _Reply:
        form = (
            '<form method="post" action="./Login.aspx?ReturnUrl=%2fmdk%2f" id="form1">'
            + _hidden("__EVENTTARGET", "")
            + _hidden("__EVENTARGUMENT", "")
            + _hidden("__VIEWSTATE", _VIEWSTATE)
            + _hidden("__VIEWSTATEGENERATOR", "C2EE9ABB")
            + _hidden("__EVENTVALIDATION", _EVENT_VALIDATION)
            # A search box and a second button come first, as on real pages.
            + '<input type="text" name="ctl00$SearchBox" value="" />'
            + f'<input type="submit" name="{_CLASSIC_FORGOT}" value="Glömt lösenord" />'
            + f'<input name="{_CLASSIC_USER}" type="text" id="MainContent_UserName" />'
            + f'<input name="{_CLASSIC_PASSWORD}" type="password" id="MainContent_Password" />'
            + '<input type="checkbox" name="ctl00$MainContent$RememberMe" />'
            + f'<input type="submit" name="{_CLASSIC_BUTTON}" value="Logga in" />'
            + "</form>"
        )
        session = {} if "ASP.NET_SessionId" in cookies else {"ASP.NET_SessionId": "fake"}
        return _Reply(200, _page("FOGIS - Logga in", form, note), cookies=session)

    def _classic_post(self, form: Mapping[str, str]) -> _Reply:
        # ASP.NET refuses a postback without its state fields or with the wrong button.
        if (
            form.get("__VIEWSTATE") != _VIEWSTATE
            or form.get("__EVENTVALIDATION") != _EVENT_VALIDATION
            or form.get(_CLASSIC_BUTTON) != "Logga in"
            or _CLASSIC_FORGOT in form
        ):
            return _Reply(400, "invalid postback", content_type="text/plain")
        if not self._check_password(form.get(_CLASSIC_USER, ""), form.get(_CLASSIC_PASSWORD, "")):
            return self._classic_page({}, "Felaktigt användarnamn eller lösenord")
        user = form.get(_CLASSIC_USER, "")
        return _Reply(302, location="/mdk/", cookies=self._new_session(user))

    # OAuth hybrid flow through an identity server on the same host

    def _authorize_redirect(self) -> _Reply:
        query = urlencode(
            {
                "client_id": "fogis.mobildomarklient",
                "redirect_uri": f"{self.base_url}/signin-oidc",
                "response_type": "code id_token",
                "response_mode": "form_post" if self.oauth_form_post else "query",
                "scope": "openid profile",
                "state": secrets.token_hex(8),
                "nonce": secrets.token_hex(8),
            }
        )
        return _Reply(302, location=f"/connect/authorize?{query}")

    def _authorize(self, request: _Request) -> _Reply:
        callback = f"/connect/authorize/callback?{urlencode(request.query)}"
        if self._valid(self._idsrv_sessions, request.cookies.get(IDSRV_COOKIE)):
            return _Reply(302, location=callback)
        return _Reply(302, location=f"/Account/Login?ReturnUrl={quote(callback, safe='')}")

    def _identity_page(self, return_url: str, note: str = "") -> _Reply:
        action = f"/Account/Login?ReturnUrl={quote(return_url, safe='')}"
        form = (
            f'<form method="post" action="{html.escape(action)}">'
            + _hidden("ReturnUrl", return_url)
            + '<input type="text" name="Username" autofocus />'
            + '<input type="password" name="Password" autocomplete="off" />'
            + '<input type="checkbox" name="RememberLogin" value="true" />'
            + '<button type="submit" name="button" value="cancel">Avbryt</button>'
            + '<button class="btn" name="button" value="login">Logga in</button>'
            + _hidden("__RequestVerificationToken", _REQUEST_TOKEN)
            + "</form>"
        )
        return _Reply(200, _page("Svensk Fotboll - Logga in", form, note))

    def _identity_login(self, request: _Request) -> _Reply:
        if request.method != "POST":
            return self._identity_page(request.query.get("ReturnUrl", ""))
        form = request.form
        return_url = form.get("ReturnUrl") or request.query.get("ReturnUrl", "")
        if (
            form.get("__RequestVerificationToken") != _REQUEST_TOKEN
            or form.get("button") != "login"
            or not return_url.startswith("/connect/authorize/callback")
        ):
            return _Reply(400, "invalid login form post", content_type="text/plain")
        if not self._check_password(form.get("Username", ""), form.get("Password", "")):
            return self._identity_page(return_url, "Invalid username or password")
        token = secrets.token_hex(16)
        with self._lock:
            self._idsrv_sessions[token] = form.get("Username", "")
        return _Reply(302, location=return_url, cookies={IDSRV_COOKIE: token})

    def _callback(self, request: _Request) -> _Reply:
        if not self._valid(self._idsrv_sessions, request.cookies.get(IDSRV_COOKIE)):
            return _Reply(302, location=f"/connect/authorize?{urlencode(request.query)}")
        code = secrets.token_hex(16)
        with self._lock:
            self._codes[code] = self._idsrv_sessions.get(request.cookies.get(IDSRV_COOKIE, ""), "")
        answer = {
            "code": code,
            "id_token": "eyJfake.eyJfake.sig",
            "state": request.query.get("state", ""),
        }
        redirect_uri = request.query.get("redirect_uri", f"{self.base_url}/signin-oidc")
        if request.query.get("response_mode") != "form_post":
            return _Reply(302, location=f"{redirect_uri}?{urlencode(answer)}")
        fields = "".join(_hidden(name, value) for name, value in answer.items())
        form = f'<form method="post" action="{html.escape(redirect_uri)}">{fields}</form>'
        script = "<script>document.forms[0].submit()</script>"
        return _Reply(200, _page("Working...", form + script))

    def _signin_oidc(self, request: _Request) -> _Reply:
        code = (request.form if request.method == "POST" else request.query).get("code", "")
        with self._lock:
            user = self._codes.pop(code, None)
        if user is None:
            return _Reply(400, "unknown authorization code", content_type="text/plain")
        return _Reply(302, location="/mdk/", cookies=self._new_session(user))

    # the match list

    def _refusal(self, request: _Request) -> _Reply | None:
        """The answer to a match-list request that is not authorised or not AJAX-shaped."""
        token = request.cookies.get(AUTH_COOKIE, "")
        expire = self._take_failure(("expire_session",)) is not None
        with self._lock:
            if expire:
                self._sessions.pop(token, None)
            authorised = token in self._sessions
        if not authorised:
            if self.expired_answer == "redirect":
                return _Reply(302, location="/mdk/Login.aspx?ReturnUrl=%2fmdk%2fMatchWebMetoder")
            if self.expired_answer == "login_page":  # as some proxies and .NET setups do
                return self._classic_page({}, "")
            return _json_reply({"Message": "Authentication failed."}, 401)
        # ASP.NET page methods only answer JSON to AJAX-style POSTs.
        if (
            request.method != "POST"
            or not request.headers.get("content-type", "").startswith("application/json")
            or request.headers.get("x-requested-with") != "XMLHttpRequest"
        ):
            return _json_reply({"Message": "Invalid web service call"}, 500)
        return None

    def _match_list(self, request: _Request) -> _Reply:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            request_filter = json.loads(request.body)["filter"]
            start = date.fromisoformat(request_filter["datumFran"])
            end = date.fromisoformat(request_filter["datumTill"])
        except (ValueError, KeyError, TypeError):
            return _json_reply({"Message": "Invalid filter"}, 500)
        with self._lock:
            self._last_filter = request_filter
            user = self._sessions.get(request.cookies.get(AUTH_COOKIE, ""), "")
            listed = self._user_matches.get(user, self._matches)
            matches = [m for m in listed if _within(m, start, end)]
        failure = self._take_failure(_ANSWER_FAILURES)
        broken = _broken_answer(failure)
        if broken is not None:
            return broken
        inner: dict[str, Any] = {
            "__type": "MDK.Domain.MatchlistaAttRapportera",
            "anvandartyp": 1,
            "success": failure != "success_false",
            "matchlista": None if failure == "success_false" else matches,
        }
        if failure == "no_matchlista":
            del inner["matchlista"]
        if failure is None:
            with self._lock:
                self._fetches += 1
        if failure in (None, "slow", "gzipped") and self.on_served is not None:
            self.on_served(Served(user, matches, start, end))
        reply = _json_reply({"d": json.dumps(inner, ensure_ascii=False)})
        reply.delay = {"timeout": self.timeout_delay, "slow": self.slow_delay}.get(
            failure or "", 0.0
        )
        if failure == "gzipped":
            reply.body, reply.encoding = gzip.compress(reply.body), "gzip"
        return reply

    # the control API

    def _control(self, request: _Request) -> _Reply:
        action = (request.method, request.path)
        try:
            document = json.loads(request.body) if request.body else {}
            if action == ("PUT", "/_control/matches"):
                if not isinstance(document, list) or not all(isinstance(m, dict) for m in document):
                    raise ValueError("expected a JSON list of match objects")
                self.set_matches(document, request.query.get("user"))
            elif action == ("PUT", "/_control/users"):
                if not isinstance(document, dict):
                    raise ValueError("expected a JSON object of username: password")
                self.set_users(document)
            elif action == ("POST", "/_control/fail"):
                self.fail_next(document["kind"], int(document.get("count", 1)))
            elif action == ("POST", "/_control/expire"):
                self.expire_sessions()
            elif action != ("GET", "/_control/state"):
                return _json_reply({"error": f"no {request.method} {request.path}"}, 404)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return _json_reply({"error": str(exc)}, 400)
        return _json_reply(self.state())


def _within(match: Mapping[str, Any], start: date, end: date) -> bool:
    """The server-side window filter; a record without a readable date is always listed."""
    try:
        return start <= date.fromisoformat(str(match.get("speldatum"))[:10]) <= end
    except ValueError:
        return True


# --- realistic records ---------------------------------------------------------------------------

ROLES = {
    "Dom": (1, "Huvuddomare"),
    "AD1": (2, "Assisterande domare 1"),
    "AD2": (3, "Assisterande domare 2"),
    "4:e dom": (4, "Fjärdedomare"),
}


def make_referee(domareid: int, name: str, role: str = "Dom", **overrides: Any) -> dict[str, Any]:
    """One entry of `domaruppdraglista`, contact details included (they are not compared)."""
    role_id, role_name = ROLES.get(role, (9, role))
    first = name.split(maxsplit=1)[0].lower()
    return {
        "domaruppdragid": domareid * 10 + role_id,
        "domareid": domareid,
        "personid": 500000 + domareid,
        "personnamn": name,
        "domarrollid": role_id,
        "domarrollnamn": role_name,
        "domarrollkortnamn": role,
        "mobiltelefon": f"070-{domareid:07d}",
        "telefon": "",
        "epostadress": f"{first}.{domareid}@example.se",
        "adress": "Storgatan 1",
        "postnr": "123 45",
        "postort": "Stockholm",
        "domaruppdragstatus": "Tilldelat",
        **overrides,
    }


def dotnet_date(day: date, kickoff: str) -> str:
    """FOGIS's `tid`: the kick-off instant as .NET "/Date(ms)/", read in Swedish time."""
    hour, minute = (int(part) for part in kickoff.split(":")[:2])
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=_ZONE)
    return f"/Date({int(moment.timestamp() * 1000)})/"


def make_match(matchid: int, *, on: date | None = None, **overrides: Any) -> dict[str, Any]:
    """A record with FOGIS's field names; overrides use them too (e.g. `installd=True`).

    The default date is `on`, else 1 to 28 days after today (inside any default window), and
    `tid` follows `speldatum`/`avsparkstid` unless given.
    """
    day = on or date.today() + timedelta(days=matchid % 28 + 1)
    home, away = 7000 + matchid % 50, 7100 + matchid % 50
    record: dict[str, Any] = {
        "__type": "MDK.Domain.MatchAttRapportera",
        "matchid": matchid,
        "matchnr": f"{100000 + matchid:06d}",
        "fotbollstypid": 1,
        "speldatum": day.isoformat(),
        "avsparkstid": "19:00",
        "anlaggningid": 3000 + matchid % 20,
        "anlaggningnamn": f"Idrottsplats {matchid % 20}",
        "anlaggningLatitud": 59.33,
        "anlaggningLongitud": 18.06,
        "lag1lagid": home,
        "lag1namn": f"IF Hemma {home}",
        "lag1foreningid": home + 1000,
        "lag2lagid": away,
        "lag2namn": f"BK Borta {away}",
        "lag2foreningid": away + 1000,
        "tavlingid": 90000 + matchid % 5,
        "tavlingnamn": f"Division {matchid % 5 + 1}, herrar",
        "tavlingskategorinamn": "Seniorer",
        "installd": False,
        "avbruten": False,
        "uppskjuten": False,
        "domaruppdraglista": [
            make_referee(20000 + matchid % 300, "Anna Andersson"),
            make_referee(21000 + matchid % 300, "Bo Berg", "AD1"),
            make_referee(22000 + matchid % 300, "Cia Carlsson", "AD2"),
        ],
        # Present on real records and deliberately not compared.
        "matchlag1mal": None,
        "matchlag2mal": None,
        "matchresultatlista": [],
        "antalaskadare": None,
        "matchrapportgodkandavdomare": False,
        "kontaktpersoner": [{"namn": "Kalle Kansli", "telefon": "08-123 456"}],
        **overrides,
    }
    if "tid" not in overrides:
        record["tid"] = dotnet_date(date.fromisoformat(record["speldatum"]), record["avsparkstid"])
    return record


def sample_matches(today: date | None = None) -> list[dict[str, Any]]:
    """A small, varied list for demos, dated relative to `today` so it stays in the window."""
    base = today or date.today()
    return [
        make_match(6143001, on=base + timedelta(days=2), avsparkstid="18:30"),
        make_match(6143002, on=base + timedelta(days=5), avsparkstid="13:00"),
        make_match(6143003, on=base + timedelta(days=9), uppskjuten=True),
        make_match(6143004, on=base - timedelta(days=3), matchlag1mal=2, matchlag2mal=1),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.fogis", description="A fake FOGIS for tests and demos."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--user", action="append", default=[], help="repeat with --password")
    parser.add_argument("--password", action="append", default=[])
    parser.add_argument("--login-style", choices=LOGIN_STYLES, default="classic")
    parser.add_argument(
        "--matches", type=Path, help="JSON list of match records (default: samples)"
    )
    parser.add_argument("--timeout-delay", type=float, default=30.0)
    args = parser.parse_args(argv)
    if len(args.user) != len(args.password):
        parser.error("give one --password per --user")
    matches = (
        json.loads(args.matches.read_text(encoding="utf-8")) if args.matches else sample_matches()
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with FakeFogis(
        users=dict(zip(args.user, args.password, strict=True)),
        login_style=args.login_style,
        timeout_delay=args.timeout_delay,
        matches=matches,
        host=args.host,
        port=args.port,
    ) as fogis:
        print(f"listening on {fogis.base_url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
