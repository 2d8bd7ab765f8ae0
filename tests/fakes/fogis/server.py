"""`FakeFogis`: the server, its accounts and sessions, the match-list method, the control API."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.background import Answer, BackgroundServer
from tests.fakes.fogis.failures import (
    ANSWER_FAILURES,
    FAILURE_KINDS,
    broken_answer,
    gzip_bomb,
    huge_answer,
)
from tests.fakes.fogis.login import AUTH_COOKIE, LOGIN_STYLES, LoginFlows
from tests.fakes.fogis.wire import Reply, Request, json_reply, page

MATCH_LIST_PATH = "/mdk/MatchWebMetoder.aspx/GetMatcherAttRapportera"


@dataclass(frozen=True)
class Served:
    """One match list answered successfully: to whom, what (after the window filter), for which
    window. Handed to `on_served` before the answer leaves."""

    user: str
    matches: Sequence[Mapping[str, Any]]
    start: date
    end: date


class FakeFogis(LoginFlows, BackgroundServer):
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
        # FOGIS requests being answered now, and the most at once since the last reset: the
        # benchmark checks that a slot's storm keeps the operator's concurrency limit.
        self._in_flight = 0
        self._peak_in_flight = 0

    # controls (thread-safe; they apply to the next requests)

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
            gzip_bomb(), huge_answer()  # made now, not while a client waits for its answer
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
                "inFlight": self._in_flight,
                "peakInFlight": self._peak_in_flight,
            }

    def reset_peak(self) -> None:
        with self._lock:
            self._peak_in_flight = self._in_flight

    def _take_failure(self, kinds: Sequence[str]) -> str | None:
        with self._lock:
            for index, kind in enumerate(self._failures):
                if kind in kinds:
                    return self._failures.pop(index)
        return None

    # protocol

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        if target.startswith("/_control/"):
            return self._route(method, target, headers, body).wire()
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            return self._route(method, target, headers, body).wire()
        finally:
            with self._lock:
                self._in_flight -= 1

    def _route(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        url = urlsplit(target)
        cookies = {name: m.value for name, m in SimpleCookie(headers.get("cookie", "")).items()}
        request = Request(
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
            "/_control/peak": self._control,
            "/mdk": self._home,
            "/mdk/login.aspx": self._login_page,
            "/connect/authorize": self._authorize,
            "/connect/authorize/callback": self._callback,
            "/account/login": self._identity_login,
            "/mdk/signin-oidc": self._signin_oidc,
            MATCH_LIST_PATH.lower(): self._match_list,
        }.get(request.path)
        if handler is None:
            return Reply(404, "not found", content_type="text/plain")
        return handler(request)

    def _home(self, request: Request) -> Reply:
        if not self._valid(self._sessions, request.cookies.get(AUTH_COOKIE)):
            return Reply(302, location="/mdk/Login.aspx?ReturnUrl=%2fmdk%2f")
        return Reply(200, page("Mina matcher", ""))

    # the match list

    def _refusal(self, request: Request) -> Reply | None:
        """The answer to a match-list request that is not authorised or not AJAX-shaped."""
        token = request.cookies.get(AUTH_COOKIE, "")
        expire = self._take_failure(("expire_session",)) is not None
        with self._lock:
            if expire:
                self._sessions.pop(token, None)
            authorised = token in self._sessions
        if not authorised:
            if self.expired_answer == "redirect":
                return Reply(302, location="/mdk/Login.aspx?ReturnUrl=%2fmdk%2fMatchWebMetoder")
            if self.expired_answer == "login_page":  # as some proxies and .NET setups do
                return self._classic_page({}, "")
            return json_reply({"Message": "Authentication failed."}, 401)
        # ASP.NET page methods only answer JSON to AJAX-style POSTs.
        if (
            request.method != "POST"
            or not request.headers.get("content-type", "").startswith("application/json")
            or request.headers.get("x-requested-with") != "XMLHttpRequest"
        ):
            return json_reply({"Message": "Invalid web service call"}, 500)
        return None

    def _match_list(self, request: Request) -> Reply:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            request_filter = json.loads(request.body)["filter"]
            start = date.fromisoformat(request_filter["datumFran"])
            end = date.fromisoformat(request_filter["datumTill"])
        except (ValueError, KeyError, TypeError):
            return json_reply({"Message": "Invalid filter"}, 500)
        with self._lock:
            self._last_filter = request_filter
            user = self._sessions.get(request.cookies.get(AUTH_COOKIE, ""), "")
            listed = self._user_matches.get(user, self._matches)
            matches = [m for m in listed if _within(m, start, end)]
        failure = self._take_failure(ANSWER_FAILURES)
        broken = broken_answer(failure)
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
        reply = json_reply({"d": json.dumps(inner, ensure_ascii=False)})
        reply.delay = {"timeout": self.timeout_delay, "slow": self.slow_delay}.get(
            failure or "", 0.0
        )
        if failure == "gzipped":
            reply.body, reply.encoding = gzip.compress(reply.body), "gzip"
        return reply

    # the control API

    def _control(self, request: Request) -> Reply:
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
            elif action == ("POST", "/_control/peak"):  # start counting the peak afresh
                self.reset_peak()
            elif action != ("GET", "/_control/state"):
                return json_reply({"error": f"no {request.method} {request.path}"}, 404)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return json_reply({"error": str(exc)}, 400)
        return json_reply(self.state())


def _within(match: Mapping[str, Any], start: date, end: date) -> bool:
    """The server-side window filter; a record without a readable date is always listed."""
    try:
        return start <= date.fromisoformat(str(match.get("speldatum"))[:10]) <= end
    except ValueError:
        return True
