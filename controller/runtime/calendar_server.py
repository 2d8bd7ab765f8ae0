"""The calendar feeds' HTTP server (issue 24), on every replica: leader, standbys and shards.

`GET|HEAD /calendar/<namespace>/<name>/<token>.ics`. What a watcher's feed is comes from the
watch (`observe`, fed by every watch event of every watcher this process's watch sees, whatever
its shard or leadership: a standby or another shard's replica answers the same), so a request
never waits on the watch and never causes a FOGIS request. Per request, at most:

- the token Secret `<name>-calendar`, read by name and kept `TOKEN_TTL_SECONDS` for requests
  that present it, `TOKEN_RECHECK_SECONDS` for those that do not (with its owner's uid: a
  re-created namesake's old token is not the new watcher's);
- the "notified" ConfigMap, once per new status.calendar.revision: rendered bodies are kept by
  what shapes them (BodyCache, bounded in bytes) and an If-None-Match of the current body is
  answered 304 from the cache, with no API call.

The token is a capability: a wrong one, an old one, an unknown watcher and a watcher without a
feed all get the same 404. No access log (the token is in the path), and nothing here logs a
path, a token or a header.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from controller.adapters.calendarstore import ConfigMapReader, read_calendar
from controller.adapters.ics import etag, render
from controller.adapters.kube import SecretData
from controller.adapters.snapshots import MANAGED_BY, WATCHER_LABEL, short_label
from controller.core.calendar import CalendarState
from controller.core.errors import DetectorError
from controller.core.feed import (
    TOKEN_KEY,
    BodyCache,
    BodyKey,
    FeedView,
    Rendered,
    TokenBuckets,
    etag_matches,
    feed_view,
    parse_path,
    token_key,
    token_matches,
    token_secret_name,
)
from controller.core.logfields import about
from controller.core.model import WatcherRef
from controller.runtime.bugs import unexpected

log = logging.getLogger(__name__)
# aiohttp's own lines (a malformed request, a handler's exception) could quote the request
# line, which holds the token: kept off, since every answer here is decided in _handle.
_quiet = logging.getLogger(f"{__name__}.http")
_quiet.disabled = True

# How long a read token Secret is trusted for a request that presents it: a 5-minute poll then
# costs no API call. A request presenting another token re-reads it after TOKEN_RECHECK_SECONDS
# (a new token, after a rotation, works that soon); an old token stops working after the TTL.
TOKEN_TTL_SECONDS = 600.0
TOKEN_RECHECK_SECONDS = 30.0
CACHE_BYTES = 64 * 1024 * 1024  # rendered bodies kept, all watchers together
MAX_BODY_BYTES = 16 * 1024 * 1024  # a bigger feed is refused (503), never sent
# Per token: a burst of RATE_BURST requests, then one every RATE_INTERVAL_SECONDS. Calendar
# clients poll about hourly; a few devices may share a URL. By token, not by address: Google's
# fetchers and an Ingress send many people's feeds from the same addresses.
RATE_BURST = 30
RATE_INTERVAL_SECONDS = 10.0
RATE_KEYS = 20_000
_RETRY_SECONDS = 60  # Retry-After of a 503 (the API server could not be read)
_MAX_CONDITION = 1024  # If-None-Match: a client sends one ETag (of 34 characters)

_NOT_FOUND = b"no such calendar feed\n"
_HEADERS = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
_CALENDAR_TYPE = "text/calendar; charset=utf-8"


class FeedReads(ConfigMapReader, Protocol):
    """The Kubernetes calls the server makes (controller/adapters/kube.py's Kube)."""

    async def find_secret(
        self, namespace: str, name: str, *, purpose: str
    ) -> SecretData | None: ...

    async def create_owned_secret(
        self, ref: WatcherRef, name: str, values: Mapping[str, str], labels: Mapping[str, str]
    ) -> bool: ...


class Tokens:
    """The watchers' feed tokens: read by name and cached briefly, and made when missing."""

    def __init__(self, kube: FeedReads, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self._clock = clock
        # by (namespace, name): (owner uids, token, read at)
        self._cache: dict[tuple[str, str], tuple[tuple[str, ...], str | None, float]] = {}
        self._reading: dict[tuple[str, str], asyncio.Task[tuple[tuple[str, ...], str | None]]] = {}
        self._wanted: dict[str, WatcherRef] = {}  # by uid: to check (and make) in order
        self._wake = asyncio.Event()
        self._warned: set[str] = set()  # uids whose failure was logged (until one succeeds)

    async def current(
        self, ref: WatcherRef, *, fresh: bool = False, ttl: float = TOKEN_TTL_SECONDS
    ) -> str | None:
        """The watcher's token, or None when it has no Secret of its own (yet); `fresh`: read
        now, whatever the cache holds; else a read older than `ttl` is read again."""
        key = (ref.namespace, ref.name)
        cached = self._cache.get(key)
        if fresh or cached is None or self._clock() - cached[2] >= ttl:
            task = self._reading.get(key)
            if task is None:  # concurrent requests share one read
                task = self._reading[key] = asyncio.create_task(self._read(ref))
                task.add_done_callback(lambda _: self._reading.pop(key, None))
            owners, token = await asyncio.shield(task)
            cached = self._cache[key] = (owners, token, self._clock())
        owners, token, _ = cached
        return token if ref.uid in owners else None

    async def _read(self, ref: WatcherRef) -> tuple[tuple[str, ...], str | None]:
        found = await self._kube.find_secret(
            ref.namespace, token_secret_name(ref.name), purpose="calendar token"
        )
        if found is None:
            return (), None
        return found.owner_uids, found.values.get(TOKEN_KEY) or None

    def forget(self, ref: WatcherRef) -> None:
        self._cache.pop((ref.namespace, ref.name), None)
        self._wanted.pop(ref.uid, None)
        self._warned.discard(ref.uid)

    def want(self, ref: WatcherRef) -> None:
        """Make sure the watcher has a token soon (one check at a time, in `serve`)."""
        self._wanted[ref.uid] = ref
        self._wake.set()

    async def serve(self) -> None:
        """Check the wanted watchers one at a time: one API call in flight at most, so a
        re-list of 10,000 watchers never crowds out the status writes."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._wanted:
                uid = next(iter(self._wanted))
                ref = self._wanted.pop(uid)
                try:
                    await self.ensure(ref)
                    self._warned.discard(uid)
                except DetectorError as exc:
                    if uid not in self._warned:
                        self._warned.add(uid)
                        log.warning(
                            "%s/%s: calendar token: %s",
                            ref.namespace,
                            ref.name,
                            exc.message,
                            extra=about(ref),
                        )
                except Exception as exc:  # a bug must not end the tokens of every watcher
                    unexpected(exc, f"{ref.namespace}/{ref.name} calendar token", log, ref)

    async def ensure(self, ref: WatcherRef) -> None:
        """Create the watcher's token Secret if it has none (another replica creating it
        first is fine: its token is read). Read afresh: the Secret may have just been deleted
        to rotate the token."""
        if await self.current(ref, fresh=True) is not None:
            return
        name = token_secret_name(ref.name)
        token = secrets.token_urlsafe(32)  # 256 bits
        labels = {**MANAGED_BY, WATCHER_LABEL: short_label(ref.name)}
        created = await self._kube.create_owned_secret(ref, name, {TOKEN_KEY: token}, labels)
        key = (ref.namespace, ref.name)
        if created:
            self._cache[key] = ((ref.uid,), token, self._clock())
            log.info(
                "%s/%s: calendar token Secret %s created",
                ref.namespace,
                ref.name,
                name,
                extra=about(ref),
            )
        else:
            self._cache.pop(key, None)
            if await self.current(ref) is None:
                # A deleted namesake's, not yet garbage-collected: made at a later check.
                log.info(
                    "%s/%s: Secret %s belongs to another object; the feed waits for it to go",
                    ref.namespace,
                    ref.name,
                    name,
                    extra=about(ref),
                )


class CalendarServer:
    """The feeds of every watcher this process's watch sees."""

    def __init__(
        self,
        kube: FeedReads,
        *,
        cache_bytes: int = CACHE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._clock = clock
        self.tokens = Tokens(kube, clock)
        self.cache = BodyCache(cache_bytes)
        self._views: dict[tuple[str, str], FeedView] = {}  # only watchers with a feed
        self._rendering: dict[BodyKey, asyncio.Task[Rendered]] = {}
        self._rate = TokenBuckets(RATE_BURST, RATE_INTERVAL_SECONDS, RATE_KEYS)
        self._runner: web.ServerRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def observe(self, body: Mapping[str, Any], *, deleted: bool = False) -> FeedView | None:
        """A watch event of any watcher; returns its view when it has a feed."""
        view = feed_view(body)
        key = (view.ref.namespace, view.ref.name)
        old = self._views.get(key)
        if deleted or (body.get("metadata") or {}).get("deletionTimestamp"):
            if old is not None and old.ref.uid == view.ref.uid:
                self._drop(key, old)
            return None
        if old is not None and (view.calendar is None or old.ref.uid != view.ref.uid):
            self._drop(key, old)
        if view.calendar is None:
            return None
        self._views[key] = view
        return view

    def _drop(self, key: tuple[str, str], view: FeedView) -> None:
        del self._views[key]
        self.cache.forget(view.ref.uid)
        self.tokens.forget(view.ref)

    @property
    def feeds(self) -> int:
        return len(self._views)

    async def start(self, host: str, port: int) -> None:
        """Serve on host:port; OSError when it cannot listen there."""
        server = web.Server(
            self._handle,
            access_log=None,
            logger=_quiet,
            keepalive_timeout=75,
            max_line_size=2048,
            max_field_size=4096,
            max_headers=64,
        )
        runner = web.ServerRunner(server, shutdown_timeout=5)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._tasks.append(asyncio.create_task(self.tokens.serve(), name="calendar tokens"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self.answer(request.method, request.path, request.headers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: a plain 500, its type and place logged, never the path
            unexpected(exc, "calendar feed", log)
            return _plain(500, b"internal error\n")

    async def answer(self, method: str, path: str, headers: Mapping[str, str]) -> web.Response:
        """The answer to one request (everything but the socket: the unit tests call this)."""
        admitted = self._admit(method, path, headers)
        if isinstance(admitted, web.Response):
            return admitted
        presented, view, key = admitted
        condition = headers.get("If-None-Match")
        try:
            token = await self.tokens.current(view.ref)
            if not token_matches(presented, token):
                # Perhaps rotated since the read: checked again, at most every so often.
                token = await self.tokens.current(view.ref, ttl=TOKEN_RECHECK_SECONDS)
            if token is None:
                self.tokens.want(view.ref)  # rotated (deleted) or not made yet: make one soon
            if not token_matches(presented, token):
                return _not_found()
            known = self.cache.etag(key)
            if known is not None and condition is not None and etag_matches(condition, known):
                return _not_modified(known)
            rendered = self.cache.get(key) or await self._rendered(view, key)
        except DetectorError as exc:
            log.warning(
                "%s/%s: calendar feed not served: %s",
                view.ref.namespace,
                view.ref.name,
                exc.message,
                extra=about(view.ref),
            )
            return _plain(
                503, b"feed unavailable, try again later\n", {"Retry-After": str(_RETRY_SECONDS)}
            )
        if condition is not None and etag_matches(condition, rendered.etag):
            return _not_modified(rendered.etag)
        return web.Response(
            body=rendered.body,
            headers={**_HEADERS, "Content-Type": _CALENDAR_TYPE, "ETag": rendered.etag},
        )

    def _admit(
        self, method: str, path: str, headers: Mapping[str, str]
    ) -> tuple[str, FeedView, BodyKey] | web.Response:
        """The presented token and the feed a request is for, or the answer refusing it; all
        without an API call."""
        if method not in ("GET", "HEAD"):
            return _plain(405, b"only GET and HEAD\n", {"Allow": "GET, HEAD"})
        feed = parse_path(path)
        if feed is None:
            return _not_found()
        # Before anything else, wrong tokens included: guessing costs its own budget.
        wait = self._rate.take(token_key(feed.token), self._clock())
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            return _plain(429, b"too many requests for this feed\n", {"Retry-After": retry})
        condition = headers.get("If-None-Match")
        if condition is not None and len(condition) > _MAX_CONDITION:
            return _plain(400, b"If-None-Match too long\n")
        view = self._views.get((feed.namespace, feed.name))
        key = None if view is None else view.body_key()
        if view is None or key is None:
            return _not_found()
        return feed.token, view, key

    async def _rendered(self, view: FeedView, key: BodyKey) -> Rendered:
        """Read and render the body for `key`, once for all requests waiting on it."""
        task = self._rendering.get(key)
        if task is None:
            task = self._rendering[key] = asyncio.create_task(self._render(view, key))
            task.add_done_callback(lambda _: self._rendering.pop(key, None))
        return await asyncio.shield(task)

    async def _render(self, view: FeedView, key: BodyKey) -> Rendered:
        state = await read_calendar(self._kube, view.ref)
        body = await asyncio.to_thread(_render_body, state, key)
        if len(body) > MAX_BODY_BYTES:  # never sent, nor kept: the next request tries again
            raise DetectorError(
                f"its feed is {len(body) // (1024 * 1024)} MiB, more than "
                f"{MAX_BODY_BYTES // (1024 * 1024)} MiB (narrow the window: daysBack, daysAhead)"
            )
        rendered = Rendered(body, etag(body))
        if self._views.get((view.ref.namespace, view.ref.name)) is not None:  # not deleted since
            self.cache.put(key, rendered)
        return rendered


def _render_body(state: CalendarState | None, key: BodyKey) -> bytes:
    return render(
        state,
        watcher_uid=key.uid,
        language=key.language,
        duration_minutes=key.duration_minutes,
        include_contacts=key.include_contacts,
    )


def _plain(status: int, text: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=text,
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
    )


def _not_found() -> web.Response:
    """Every 404 is this one: it tells nothing about which part was wrong."""
    return _plain(404, _NOT_FOUND)


def _not_modified(tag: str) -> web.Response:
    return web.Response(status=304, headers={**_HEADERS, "ETag": tag})
