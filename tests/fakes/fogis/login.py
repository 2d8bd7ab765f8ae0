"""The two ways into FOGIS: the classic ASP.NET forms login and the OAuth hybrid flow through
an identity server on the same host. Both end in the session cookie `AUTH_COOKIE`."""

from __future__ import annotations

import html
import secrets
import threading
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlencode

from tests.fakes.fogis.wire import Reply, Request, hidden, page

AUTH_COOKIE = "FogisMobilDomarKlient.ASPXAUTH"
IDSRV_COOKIE = "idsrv"
LOGIN_STYLES = ("classic", "oauth")
_VIEWSTATE = "/wEPDwUKLTM0NjU2OTcyMw9kFgJmD2QWAgIDD2QWAgIBDw8WAh4EVGV4dAUHTG9nZ2EgaW4+&Zw=="
_EVENT_VALIDATION = "/wEdAAR+d8kS&x2=="
_REQUEST_TOKEN = "CfDJ8&fake-token"
_CLASSIC_USER = "ctl00$MainContent$UserName"
_CLASSIC_PASSWORD = "ctl00$MainContent$Password"
_CLASSIC_BUTTON = "ctl00$MainContent$LoginButton"
_CLASSIC_FORGOT = "ctl00$MainContent$ForgotPasswordButton"


class LoginFlows:
    """The login pages of `FakeFogis`, a mixin: the accounts and sessions are its state."""

    host: str
    port: int
    login_style: str
    oauth_form_post: bool
    _lock: threading.Lock
    _users: dict[str, str]
    _sessions: dict[str, str]  # valid auth cookie value -> its user
    _idsrv_sessions: dict[str, str]  # identity-server session -> its user
    _codes: dict[str, str]  # authorization code not yet redeemed -> its user
    _logins: int
    _login_attempts: int

    def _take_failure(self, kinds: Sequence[str]) -> str | None:
        raise NotImplementedError  # FakeFogis's queue of injected failures

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/mdk"

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

    def _login_page(self, request: Request) -> Reply:
        if self.login_style == "oauth":
            return self._authorize_redirect()
        if request.method == "POST":
            return self._classic_post(request.form)
        return self._classic_page(request.cookies)

    # classic ASP.NET forms login

    def _classic_page(self, cookies: Mapping[str, str], note: str = "") -> Reply:
        form = (
            '<form method="post" action="./Login.aspx?ReturnUrl=%2fmdk%2f" id="form1">'
            + hidden("__EVENTTARGET", "")
            + hidden("__EVENTARGUMENT", "")
            + hidden("__VIEWSTATE", _VIEWSTATE)
            + hidden("__VIEWSTATEGENERATOR", "C2EE9ABB")
            + hidden("__EVENTVALIDATION", _EVENT_VALIDATION)
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
        return Reply(200, page("FOGIS - Logga in", form, note), cookies=session)

    def _classic_post(self, form: Mapping[str, str]) -> Reply:
        # ASP.NET refuses a postback without its state fields or with the wrong button.
        if (
            form.get("__VIEWSTATE") != _VIEWSTATE
            or form.get("__EVENTVALIDATION") != _EVENT_VALIDATION
            or form.get(_CLASSIC_BUTTON) != "Logga in"
            or _CLASSIC_FORGOT in form
        ):
            return Reply(400, "invalid postback", content_type="text/plain")
        if not self._check_password(form.get(_CLASSIC_USER, ""), form.get(_CLASSIC_PASSWORD, "")):
            return self._classic_page({}, "Felaktigt användarnamn eller lösenord")
        user = form.get(_CLASSIC_USER, "")
        return Reply(302, location="/mdk/", cookies=self._new_session(user))

    # OAuth hybrid flow through an identity server on the same host

    def _authorize_redirect(self) -> Reply:
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
        return Reply(302, location=f"/connect/authorize?{query}")

    def _authorize(self, request: Request) -> Reply:
        callback = f"/connect/authorize/callback?{urlencode(request.query)}"
        if self._valid(self._idsrv_sessions, request.cookies.get(IDSRV_COOKIE)):
            return Reply(302, location=callback)
        return Reply(302, location=f"/Account/Login?ReturnUrl={quote(callback, safe='')}")

    def _identity_page(self, return_url: str, note: str = "") -> Reply:
        action = f"/Account/Login?ReturnUrl={quote(return_url, safe='')}"
        form = (
            f'<form method="post" action="{html.escape(action)}">'
            + hidden("ReturnUrl", return_url)
            + '<input type="text" name="Username" autofocus />'
            + '<input type="password" name="Password" autocomplete="off" />'
            + '<input type="checkbox" name="RememberLogin" value="true" />'
            + '<button type="submit" name="button" value="cancel">Avbryt</button>'
            + '<button class="btn" name="button" value="login">Logga in</button>'
            + hidden("__RequestVerificationToken", _REQUEST_TOKEN)
            + "</form>"
        )
        return Reply(200, page("Svensk Fotboll - Logga in", form, note))

    def _identity_login(self, request: Request) -> Reply:
        if request.method != "POST":
            return self._identity_page(request.query.get("ReturnUrl", ""))
        form = request.form
        return_url = form.get("ReturnUrl") or request.query.get("ReturnUrl", "")
        if (
            form.get("__RequestVerificationToken") != _REQUEST_TOKEN
            or form.get("button") != "login"
            or not return_url.startswith("/connect/authorize/callback")
        ):
            return Reply(400, "invalid login form post", content_type="text/plain")
        if not self._check_password(form.get("Username", ""), form.get("Password", "")):
            return self._identity_page(return_url, "Invalid username or password")
        token = secrets.token_hex(16)
        with self._lock:
            self._idsrv_sessions[token] = form.get("Username", "")
        return Reply(302, location=return_url, cookies={IDSRV_COOKIE: token})

    def _callback(self, request: Request) -> Reply:
        if not self._valid(self._idsrv_sessions, request.cookies.get(IDSRV_COOKIE)):
            return Reply(302, location=f"/connect/authorize?{urlencode(request.query)}")
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
            return Reply(302, location=f"{redirect_uri}?{urlencode(answer)}")
        fields = "".join(hidden(name, value) for name, value in answer.items())
        form = f'<form method="post" action="{html.escape(redirect_uri)}">{fields}</form>'
        script = "<script>document.forms[0].submit()</script>"
        return Reply(200, page("Working...", form + script))

    def _signin_oidc(self, request: Request) -> Reply:
        code = (request.form if request.method == "POST" else request.query).get("code", "")
        with self._lock:
            user = self._codes.pop(code, None)
        if user is None:
            return Reply(400, "unknown authorization code", content_type="text/plain")
        return Reply(302, location="/mdk/", cookies=self._new_session(user))
