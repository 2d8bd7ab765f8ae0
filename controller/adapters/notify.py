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

Budget: 10,000 digests at 07:00 are ~170 sends a second (issue 22). One operator process does
not reach it: `python -m tests.bench.digests` measures 40-45 a second on 2 cores (10,000 in about
4 minutes), bound by CPU under the GIL (~21 ms a digest: its scheduling steps, the people's
state decoded once and encoded twice, the Apprise send, the event loop), not by this pool: 16
threads instead of 4 sent ~10 % more. docs/performance.md has the figures.

Where a send may go (SSRF): only the schemes in ALLOWED_SCHEMES, with redirects off (refused
URLs may not turn them back on, nor TLS verification off), and every connection the send opens,
in whatever library, is checked as it is made (connect_guard.py), also against
MLCD_NOTIFY_ALLOWED_HOSTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from controller.adapters.connect_guard import Scope, guarded
from controller.adapters.destinations import api_server_addresses
from controller.core.delivery import DeliveryFailed
from controller.core.errors import InvalidSpec
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


def _entries(secret: Mapping[str, str]) -> list[tuple[int, str]]:
    """(line number, URL) of each line of the Secret's urls holding one: blank lines and
    #-comments skipped, but counted, as whoever edits the Secret counts them."""
    return [
        (number, line.strip())
        for number, line in enumerate(secret.get(URLS_KEY, "").splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def url_lines(secret: Mapping[str, str]) -> tuple[int, ...]:
    """The line of each URL notify_urls returns, in order: errors name a URL by its line."""
    return tuple(number for number, _ in _entries(secret))


def notify_urls(secret: Mapping[str, str], where: str) -> tuple[str, ...]:
    """The Apprise URLs of a notify Secret: one per line, blank lines and #-comments skipped."""
    if URLS_KEY not in secret:
        raise InvalidSpec(f"{where} has no {URLS_KEY} key", reason=Reason.INVALID_NOTIFY_SECRET)
    entries = _entries(secret)
    if not entries or len(entries) > MAX_URLS:
        raise InvalidSpec(
            f"{where} key {URLS_KEY} must hold 1 to {MAX_URLS} Apprise URLs, one per line",
            reason=Reason.INVALID_NOTIFY_SECRET,
        )
    for number, url in entries:
        problem = _url_problem(url)
        if problem is not None:
            # Not the URL itself, nor its scheme's tail: it carries a token.
            raise InvalidSpec(
                f"{where} key {URLS_KEY}: line {number} {problem}",
                reason=Reason.INVALID_NOTIFY_SECRET,
            )
    return tuple(url for _, url in entries)


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


@dataclass(frozen=True)
class Message:
    """One message for one Apprise URL of a watcher."""

    url: str = field(repr=False)  # a capability: never in a repr, a log line or an error
    title: str
    body: str


# What became of one message: the service accepted it; it did not, or its answer was lost
# (it may still have arrived: in doubt); it was refused before anything was sent (a connection
# the guard refused, or the watcher's previous send still runs); Apprise does not know the URL.
ACCEPTED, FAILED, NOT_SENT, UNKNOWN_URL = "accepted", "failed", "not sent", "unknown URL"


def _send(
    messages: tuple[Message, ...], timeout: float, *, scope: Scope, results: list[str]
) -> None:
    """In a thread: Apprise does blocking I/O. Appends each message's fate to `results` once
    known, so the fates decided before a deadline are known after it."""
    import apprise  # noqa: PLC0415 - only watchers with spec.notify pay for the import

    _quiet_apprise()
    for message in messages:
        # One Apprise object per URL, each sent from this thread inside the guard. No redirects.
        services = apprise.Apprise(
            asset=apprise.AppriseAsset(async_mode=False, http_redirects=False)
        )
        if not services.add(message.url):
            results.append(UNKNOWN_URL)
            continue
        refused_before = len(scope.refused)
        try:
            with guarded(scope):
                accepted = bool(
                    services.notify(body=message.body, title=message.title, timeout=timeout)
                )
        except Exception:  # a plugin's bug is this message's failure only
            accepted = False
        if len(scope.refused) > refused_before:
            results.append(NOT_SENT)
        else:
            results.append(ACCEPTED if accepted else FAILED)


class AppriseNotifier:
    """Sends a watcher's messages (one per Apprise URL) from the notify thread pool."""

    def __init__(
        self,
        *,
        key: str,
        in_flight: set[str],
        gate: contextlib.AbstractAsyncContextManager[object],
        timeout_seconds: float,
        deadline_seconds: float,
        allowed_hosts: frozenset[str] = frozenset(),
    ) -> None:
        # The watcher's key in `in_flight`, the keys whose send's thread still runs.
        self._key = key
        self._in_flight = in_flight
        self._gate = gate
        self._timeout = timeout_seconds
        self._deadline = deadline_seconds
        self._allowed_hosts = allowed_hosts

    async def send(self, messages: tuple[Message, ...]) -> tuple[list[str], str | None]:
        """Each message's fate, and the kind of address the guard refused first (None: none;
        never the URL or the address itself)."""
        scope = Scope(allowed_hosts=self._allowed_hosts, api_server=api_server_addresses())
        async with self._gate:
            if self._key in self._in_flight:  # its thread still runs: nothing new meanwhile
                return [NOT_SENT] * len(messages), None
            self._in_flight.add(self._key)
            results: list[str] = []
            send = asyncio.get_running_loop().run_in_executor(
                _THREADS,
                functools.partial(_send, messages, self._timeout, scope=scope, results=results),
            )
            send.add_done_callback(self._ended)
            try:
                await asyncio.wait_for(asyncio.shield(send), self._deadline)
            except TimeoutError:
                # The fates known by now stand. Its reads fail once its sockets are shut, and
                # new connections are refused: what it says then is no answer, so the message
                # under way and those after it count as failed (in doubt).
                known, refused = results[:], scope.refused[:]
                scope.cut()
                with contextlib.suppress(Exception):
                    await send
                failed = [FAILED] * (len(messages) - len(known))
                return [*known, *failed], (refused[0] if refused else None)
            except asyncio.CancelledError:
                scope.cut()  # the thread ends soon; its key goes when it has
                raise
        return results, (scope.refused[0] if scope.refused else None)

    def _ended(self, send: asyncio.Future[None]) -> None:
        self._in_flight.discard(self._key)
        if not send.cancelled():
            send.exception()  # retrieved: after a cut-off nobody awaits it
