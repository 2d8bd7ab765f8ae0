"""Notifications to people through Apprise (Slack, Discord, Teams, Telegram, ntfy, e-mail, ...).

A watcher's `spec.notify.secretRef` names a Secret whose key `urls` holds one Apprise URL per
line; they carry tokens, so no URL, message or Apprise log line ever reaches our logs, status or
Events. Apprise is synchronous and imported only here, the first time a watcher uses it.

Concurrency: sends run in a pool of NOTIFY_THREADS threads of their own (not the event loop's
default executor), one send a thread, at most NOTIFY_THREADS at once operator-wide (the gate is
held until the thread has ended, not only until we stop waiting). Apprise's timeout bounds each
read, which a server dripping a byte at a time defeats, so a send also has a hard deadline
(NOTIFY_DEADLINE_SECONDS): then its sockets are shut down, its thread's blocked reads fail and it
ends. A watcher whose previous send is still running gets no new one (NotifyFailing, its changes
stay pending): one watcher holds at most one thread, for at most the deadline (plus a connect
or name lookup under way, each bounded by Apprise's timeout or the resolver's).

Where a send may go (SSRF): only the schemes in ALLOWED_SCHEMES, with redirects off (refused
URLs may not turn them back on, nor TLS verification off), and every connection the send opens,
in whatever library, is checked as it is made (connect_guard.py), also against
MLCD_NOTIFY_ALLOWED_HOSTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from controller.adapters.connect_guard import Scope, guarded
from controller.adapters.destinations import api_server_addresses
from controller.core.delivery import Attempt, DeliveryFailed, DeliveryResult
from controller.core.diff import FieldChange, MatchChange
from controller.core.errors import InvalidSpec
from controller.core.message import compose
from controller.core.reasons import Reason

URLS_KEY = "urls"
MAX_URLS = 20
# Per send: Apprise's connect/read timeout per service; the hard deadline of the whole send.
NOTIFY_TIMEOUT_SECONDS = 15.0
NOTIFY_DEADLINE_SECONDS = NOTIFY_TIMEOUT_SECONDS * 2 + 5
# Sends in flight at once, operator-wide (each holds a thread while Apprise blocks).
NOTIFY_THREADS = 4
_THREADS = ThreadPoolExecutor(max_workers=NOTIFY_THREADS, thread_name_prefix="notify")
# The Apprise schemes a Secret may use (docs/usage.md#notifications-to-people): services whose
# plugins connect over TCP with requests or smtplib, which the connect-time check sees. Others
# (apprise:// relays, syslog, MQTT, XMPP, desktop, ...) are refused: fewer plugins to trust.
ALLOWED_SCHEMES = frozenset(
    {
        *("json", "jsons", "form", "forms", "xml", "xmls"),  # generic HTTP(S) posts
        *("ntfy", "ntfys", "gotify", "gotifys", "mmost", "mmosts", "matrix", "matrixs"),
        *("tgram", "slack", "discord", "pover"),
        *("workflow", "workflows"),  # Microsoft Teams (Power Automate; 2.x has no msteams://)
        *("mailto", "mailtos"),
    }
)
# Apprise's per-URL `redirect=` would follow redirects again (they are off for every send: a
# redirect to a refused address fails at connect, but to an allowed one it is still an
# oracle); any `verify=` but a yes turns TLS verification off.
_VERIFY_ON = frozenset({"yes", "true", "1", "on"})


class NotifyFailed(DeliveryFailed):
    """A notification service did not accept the message; the changes stay pending for it."""

    reason = Reason.NOTIFY_FAILING


def notify_urls(secret: Mapping[str, str], where: str) -> tuple[str, ...]:
    """The Apprise URLs of a notify Secret: one per line, blank lines and #-comments skipped."""
    raw = secret.get(URLS_KEY)
    if raw is None:
        raise InvalidSpec(f"{where} has no {URLS_KEY} key", reason=Reason.INVALID_NOTIFY_SECRET)
    urls = tuple(
        line.strip()
        for line in raw.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not urls or len(urls) > MAX_URLS:
        raise InvalidSpec(
            f"{where} key {URLS_KEY} must hold 1 to {MAX_URLS} Apprise URLs, one per line",
            reason=Reason.INVALID_NOTIFY_SECRET,
        )
    for index, url in enumerate(urls, 1):
        problem = _url_problem(url)
        if problem is not None:
            # Not the URL itself, nor its scheme's tail: it carries a token.
            raise InvalidSpec(
                f"{where} key {URLS_KEY}: line {index} {problem}",
                reason=Reason.INVALID_NOTIFY_SECRET,
            )
    return urls


def _url_problem(url: str) -> str | None:
    """Why an Apprise URL is refused before anything is sent, or None."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in ALLOWED_SCHEMES:
        return "has a scheme the operator does not allow (see its documentation)"
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name.lower() == "redirect":
            return "sets redirect=, which the operator does not allow"
        if name.lower() == "verify" and value.strip().lower() not in _VERIFY_ON:
            return "turns TLS verification off (verify=), which the operator does not allow"
    return None


def _quiet_apprise() -> None:
    # Apprise logs URLs and payloads (tokens, referees' names) from INFO down.
    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)


def _send(
    urls: tuple[str, ...],
    title: str,
    body: str,
    timeout: float,
    where: str,
    *,
    scope: Scope,
) -> bool:
    """In a thread: Apprise does blocking I/O. Returns whether every service accepted it."""
    import apprise  # noqa: PLC0415 - only watchers with spec.notify pay for the import

    _quiet_apprise()
    # Sequential: each service is sent from this thread, inside its guard. No redirects.
    services = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False, http_redirects=False))
    for index, url in enumerate(urls, 1):
        if not services.add(url):
            # Not the URL itself: it carries a token.
            raise InvalidSpec(
                f"{where} key {URLS_KEY}: line {index} is not an Apprise URL it knows",
                reason=Reason.INVALID_NOTIFY_SECRET,
            )
    with guarded(scope):
        accepted = bool(services.notify(body=body, title=title, timeout=timeout))
    if scope.refused:
        # The reason names a kind of address, never the URL or the address itself.
        raise InvalidSpec(
            f"{where}: a notification service tried to reach {scope.refused[0]}; refused "
            "before connecting",
            reason=Reason.NOTIFY_NOT_ALLOWED,
        )
    return accepted


def _change(document: Mapping[str, Any]) -> MatchChange:
    """A change as the webhook document carries it, back into the diff's type."""
    return MatchChange(
        type=str(document["type"]),
        match_id=str(document["matchId"]),
        match_number=document.get("matchNumber"),
        categories=tuple(document.get("categories") or ()),
        fields={
            name: FieldChange(value.get("old"), value.get("new"))
            for name, value in (document.get("fields") or {}).items()
        },
        match=document.get("match") or {},
    )


def _message(body: bytes) -> tuple[str, str]:
    """The title and text of a webhook report's changes."""
    return compose([_change(change) for change in json.loads(body)["changes"]])


class AppriseNotifier:
    """A Notifier (see detection.py) for people: the change set as a short text."""

    def __init__(
        self,
        urls: tuple[str, ...],
        *,
        where: str,
        key: str,
        in_flight: set[str],
        gate: contextlib.AbstractAsyncContextManager[object],
        timeout_seconds: float,
        deadline_seconds: float,
        allowed_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self._urls = urls
        self._where = where
        # The watcher's key in `in_flight`, the keys whose send's thread still runs.
        self._key = key
        self._in_flight = in_flight
        self._gate = gate
        self._timeout = timeout_seconds
        self._deadline = deadline_seconds
        self._allowed_hosts = allowed_hosts

    async def notify(self, body: bytes, delivery_id: str, occurred: datetime) -> DeliveryResult:
        # In a thread: decoding a big report and composing its text is CPU.
        title, text = await asyncio.to_thread(_message, body)
        started = time.perf_counter()
        scope = Scope(allowed_hosts=self._allowed_hosts, api_server=api_server_addresses())
        async with self._gate:
            if self._key in self._in_flight:
                raise NotifyFailed(
                    f"{self._where}: the previous notification is still being sent",
                    attempts=(),
                    last_status_code=None,
                )
            self._in_flight.add(self._key)
            send = asyncio.get_running_loop().run_in_executor(
                _THREADS,
                functools.partial(
                    _send, self._urls, title, text, self._timeout, self._where, scope=scope
                ),
            )
            send.add_done_callback(self._ended)
            try:
                accepted = await asyncio.wait_for(asyncio.shield(send), self._deadline)
            except TimeoutError:
                # Its reads fail once its sockets are shut; what it says then is no answer.
                scope.cut()
                with contextlib.suppress(Exception):
                    await send
                accepted = False
            except asyncio.CancelledError:
                scope.cut()  # the thread ends soon; its key goes when it has
                raise
        # Apprise says only "accepted" or not: an accepted send is recorded as a 200.
        attempt = Attempt(200 if accepted else None, None, time.perf_counter() - started)
        if not accepted:
            raise NotifyFailed(
                f"{self._where}: a notification service did not accept the message",
                attempts=(attempt,),
                last_status_code=None,
            )
        return DeliveryResult(200, (attempt,))

    def _ended(self, send: asyncio.Future[bool]) -> None:
        self._in_flight.discard(self._key)
        if not send.cancelled():
            send.exception()  # retrieved: after a cut-off nobody awaits it
