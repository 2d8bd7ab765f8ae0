"""Notifications to people through Apprise (Slack, Discord, Teams, Telegram, ntfy, e-mail, ...).

A watcher's `spec.notify.secretRef` names a Secret whose key `urls` holds one Apprise URL per
line; they carry tokens, so no URL, message or Apprise log line ever reaches our logs, status or
Events. Apprise is synchronous and imported only here, the first time a watcher uses it: sends
run in a thread, bounded by a gate and a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from controller.adapters.destinations import (
    Resolver,
    api_server_addresses,
    refusal,
    system_resolver,
)
from controller.core.delivery import Attempt, DeliveryFailed, DeliveryResult
from controller.core.diff import FieldChange, MatchChange
from controller.core.errors import InvalidSpec
from controller.core.message import compose
from controller.core.reasons import Reason

URLS_KEY = "urls"
MAX_URLS = 20
# Per send: Apprise's connect/read timeout per service (the whole send gets twice that and 5 s).
NOTIFY_TIMEOUT_SECONDS = 15.0
# Sends in flight at once, operator-wide (each holds a thread while Apprise blocks).
NOTIFY_THREADS = 4
# Schemes that post to a host the URL names (Apprise's generic HTTP targets): checked like a
# webhook URL, so a notification cannot reach a metadata service or the API server.
_HTTP_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})


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
    return urls


def _quiet_apprise() -> None:
    # Apprise logs URLs and payloads (tokens, referees' names) from INFO down.
    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)


def _send(urls: tuple[str, ...], title: str, body: str, timeout: float, where: str) -> bool:
    """In a thread: Apprise does blocking I/O. Returns whether every service accepted it."""
    import apprise  # noqa: PLC0415 - only watchers with spec.notify pay for the import

    _quiet_apprise()
    services = apprise.Apprise()
    for index, url in enumerate(urls, 1):
        if not services.add(url):
            # Not the URL itself: it carries a token.
            raise InvalidSpec(
                f"{where} key {URLS_KEY}: line {index} is not an Apprise URL it knows",
                reason=Reason.INVALID_NOTIFY_SECRET,
            )
    return bool(services.notify(body=body, title=title, timeout=timeout))


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
        gate: contextlib.AbstractAsyncContextManager[object],
        timeout_seconds: float,
        resolve: Resolver = system_resolver,
    ) -> None:
        self._urls = urls
        self._where = where
        self._gate = gate
        self._timeout = timeout_seconds
        self._resolve = resolve

    async def _check_destinations(self) -> None:
        for index, url in enumerate(self._urls, 1):
            parts = urlsplit(url)
            if parts.scheme.lower() not in _HTTP_SCHEMES or not parts.hostname:
                continue
            scheme_port = 443 if parts.scheme.lower().endswith("s") else 80
            try:
                port = parts.port or scheme_port
            except ValueError:
                port = scheme_port
            if await refusal(
                parts.hostname, port, resolve=self._resolve, api_server=api_server_addresses()
            ):
                raise InvalidSpec(
                    f"{self._where} key {URLS_KEY}: line {index} names an address that is not "
                    "allowed (link-local, a metadata service or the API server); nothing was sent",
                    reason=Reason.INVALID_NOTIFY_SECRET,
                )

    async def notify(self, body: bytes, delivery_id: str, occurred: datetime) -> DeliveryResult:
        # In a thread: decoding a big report and composing its text is CPU.
        title, text = await asyncio.to_thread(_message, body)
        await self._check_destinations()
        started = time.perf_counter()
        async with self._gate:
            try:
                # Apprise's own timeout bounds each service's requests; ours the whole send
                # (the thread itself cannot be stopped, and finishes on its own).
                accepted = await asyncio.wait_for(
                    asyncio.to_thread(_send, self._urls, title, text, self._timeout, self._where),
                    self._timeout * 2 + 5,
                )
            except TimeoutError:
                accepted = False
        # Apprise says only "accepted" or not: an accepted send is recorded as a 200.
        attempt = Attempt(200 if accepted else None, None, time.perf_counter() - started)
        if not accepted:
            raise NotifyFailed(
                f"{self._where}: a notification service did not accept the message",
                attempts=(attempt,),
                last_status_code=None,
            )
        return DeliveryResult(200, (attempt,))
