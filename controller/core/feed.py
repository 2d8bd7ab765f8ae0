"""The rules of serving calendar feeds (issue 24), pure: which paths name a feed, what of a
watcher's object shapes its body, the token comparison, the per-token rate limit and the
byte-bounded cache of rendered bodies. controller/runtime/calendar_server.py serves them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.core.errors import InvalidSpec
from controller.core.model import CalendarSpec, WatcherRef, parse_calendar, parse_language

# The token Secret's name suffix and key (`<watcher>-calendar`, key `token`).
TOKEN_KEY = "token"  # noqa: S105 - the key's name, not a secret
# Kubernetes names: a namespace is a DNS-1123 label, a watcher's name a DNS-1123 subdomain.
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NAMESPACE = re.compile(_LABEL)
_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
# What secrets.token_urlsafe makes (43 characters for 32 bytes); a longer one is no token.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
PATH_PREFIX = "/calendar/"
SUFFIX = ".ics"


def token_secret_name(watcher_name: str) -> str:
    return f"{watcher_name}-calendar"


@dataclass(frozen=True)
class FeedPath:
    namespace: str
    name: str
    token: str  # never logged, never in an error message

    def __repr__(self) -> str:
        return f"FeedPath({self.namespace}/{self.name})"


def parse_path(path: str) -> FeedPath | None:
    """`/calendar/<namespace>/<name>/<token>.ics`, else None (the answer is then 404)."""
    if not path.startswith(PATH_PREFIX) or not path.endswith(SUFFIX) or len(path) > 512:
        return None
    parts = path[len(PATH_PREFIX) : -len(SUFFIX)].split("/")
    if len(parts) != 3:
        return None
    namespace, name, token = parts
    if not (_NAMESPACE.fullmatch(namespace) and _NAME.fullmatch(name) and _TOKEN.fullmatch(token)):
        return None
    return FeedPath(namespace, name, token)


def token_matches(presented: str, stored: str | None) -> bool:
    """Constant time in the tokens' contents: a wrong token tells nothing about the right one."""
    if not stored:
        return False
    return hmac.compare_digest(presented.encode(), stored.encode())


def token_key(token: str) -> str:
    """What the rate limit keys a token by: a digest, so the token itself is not kept."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def etag_matches(condition: str, tag: str) -> bool:
    """Whether an If-None-Match header names `tag` (RFC 9110: weak comparison, or `*`)."""
    if condition.strip() == "*":
        return True
    wanted = tag.removeprefix("W/")
    return any(part.strip().removeprefix("W/") == wanted for part in condition.split(","))


@dataclass(frozen=True)
class FeedView:
    """What the server knows of a watcher from the watch: enough to answer without a call."""

    ref: WatcherRef
    calendar: CalendarSpec | None  # None: no feed (disabled, absent or invalid)
    language: str
    revision: int | None  # status.calendar.revision; None: none written yet

    def body_key(self) -> BodyKey | None:
        """What the rendered body depends on, or None without a feed."""
        if self.calendar is None:
            return None
        return BodyKey(
            uid=self.ref.uid,
            revision=self.revision,
            language=self.language,
            duration_minutes=self.calendar.duration_minutes,
            include_contacts=self.calendar.include_contacts,
        )


@dataclass(frozen=True)
class BodyKey:
    uid: str
    revision: int | None
    language: str
    duration_minutes: int
    include_contacts: bool


def feed_view(body: Mapping[str, Any]) -> FeedView:
    """A watcher's object as the feed sees it; an invalid spec.calendar or language is no feed
    (the scheduler reports the spec's problems in its status)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    ref = WatcherRef(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
    )
    try:
        calendar = parse_calendar(spec.get("calendar"))
        language = parse_language(spec.get("language"))
    except InvalidSpec:
        calendar, language = None, parse_language(None)
    raw = ((body.get("status") or {}).get("calendar") or {}).get("revision")
    revision = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    return FeedView(ref, calendar, language, revision)


class TokenBuckets:
    """A token bucket per key (a token's digest): `burst` requests at once, then one every
    `interval` seconds. At most `keys` buckets are kept (the least recently used go first: a
    flood of made-up tokens cannot grow memory); times are the caller's monotonic seconds."""

    def __init__(self, burst: int, interval: float, keys: int) -> None:
        self._burst, self._interval, self._keys = burst, interval, keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (level, at)

    def take(self, key: str, now: float) -> float:
        """0 when a request may go now (and counts it), else the seconds until one may."""
        level, at = self._buckets.pop(key, (float(self._burst), now))
        level = min(float(self._burst), level + max(0.0, now - at) / self._interval)
        wait = 0.0
        if level >= 1.0:
            level -= 1.0
        else:
            wait = (1.0 - level) * self._interval
        self._buckets[key] = (level, now)
        while len(self._buckets) > self._keys:
            self._buckets.popitem(last=False)
        return wait


@dataclass(frozen=True)
class Rendered:
    body: bytes
    etag: str


class BodyCache:
    """Rendered bodies by BodyKey, least recently used dropped first once they exceed
    `max_bytes` together; a body larger than that is not kept. ETags are kept per watcher
    beyond their body (a few dozen bytes each), so an If-None-Match for the current body is
    answered even when the body itself was dropped."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._bodies: OrderedDict[BodyKey, Rendered] = OrderedDict()
        self._etags: dict[str, tuple[BodyKey, str]] = {}  # by watcher uid
        self.size = 0

    def get(self, key: BodyKey) -> Rendered | None:
        found = self._bodies.get(key)
        if found is not None:
            self._bodies.move_to_end(key)
        return found

    def etag(self, key: BodyKey) -> str | None:
        """The ETag of the body for `key`, if it was rendered (kept or not)."""
        known = self._etags.get(key.uid)
        return known[1] if known is not None and known[0] == key else None

    def put(self, key: BodyKey, rendered: Rendered) -> None:
        self.forget(key.uid)
        self._etags[key.uid] = (key, rendered.etag)
        if len(rendered.body) > self._max:
            return
        self._bodies[key] = rendered
        self.size += len(rendered.body)
        while self.size > self._max:
            _, dropped = self._bodies.popitem(last=False)
            self.size -= len(dropped.body)

    def forget(self, uid: str) -> None:
        """Drop a watcher's bodies (a newer one replaces them, or it was deleted)."""
        known = self._etags.pop(uid, None)
        if known is not None:
            old = self._bodies.pop(known[0], None)
            if old is not None:
                self.size -= len(old.body)

    def __len__(self) -> int:
        return len(self._bodies)
