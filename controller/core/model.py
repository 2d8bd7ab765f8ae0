"""Typed views of a MatchWatcher (spec and status), parsed once at the edge.

The CRD schema already enforces types, enums, minimums and the http(s) URL pattern; `parse_spec`
re-checks what a hand-edited object or an older CRD could still get wrong, so the rest of the code
works with plain dataclasses and never with raw dicts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any
from urllib.parse import urlsplit

import idna

from controller.core.diff import CATEGORIES
from controller.core.errors import InvalidSpec
from controller.core.reasons import Reason

GROUP = "matchlist.io"
VERSION = "v1alpha1"
PLURAL = "matchwatchers"
KIND = "MatchWatcher"
TRIGGER_ANNOTATION = f"{GROUP}/trigger"
DEFAULT_FOGIS_BASE_URL = "https://fogis.svenskfotboll.se/mdk"
DEFAULT_DAYS_BACK = 7
DEFAULT_DAYS_AHEAD = 365
# Flux's notification-controller default, and the Standard Webhooks spec's suggestion.
DEFAULT_WEBHOOK_TIMEOUT_SECONDS = 15.0
DEFAULT_WEBHOOK_MAX_ATTEMPTS = 5
# Per process: a credentials fingerprint is only ever compared within one operator run.
_FINGERPRINT_SALT = os.urandom(16)
# How a delivery is framed: our JSON document with our headers, or the same document as a
# CloudEvents binary-mode request (ce-* headers) for Knative/Argo Events.
WEBHOOK_FORMATS = ("plain", "cloudevents")
# What a person reads (messages, the calendar feed) is in one of these; Swedish first: FOGIS is.
LANGUAGES = ("sv", "en")
DEFAULT_URGENT_WITHIN_HOURS = 48
DEFAULT_FAILURE_AFTER = 3
DEFAULT_CALENDAR_DURATION_MINUTES = 120
_CLOCK_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True)
class WatcherRef:
    """Identity of one MatchWatcher, used for Secrets, snapshots, metrics and payloads."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class FogisSpec:
    base_url: str
    credentials_secret: str
    days_back: int = DEFAULT_DAYS_BACK
    days_ahead: int = DEFAULT_DAYS_AHEAD


@dataclass(frozen=True)
class WebhookSpec:
    url: str | None
    secret_name: str | None = None
    timeout_seconds: float = DEFAULT_WEBHOOK_TIMEOUT_SECONDS
    max_attempts: int = DEFAULT_WEBHOOK_MAX_ATTEMPTS
    format: str = "plain"  # one of WEBHOOK_FORMATS


@dataclass(frozen=True)
class QuietHours:
    """Nothing but urgent changes is sent from `start` until `end` (wall clock in
    spec.timeZone); a window may cross midnight."""

    start: time
    end: time


@dataclass(frozen=True)
class NotifySpec:
    secret_name: str  # a Secret whose key `urls` holds one Apprise URL per line
    categories: frozenset[str] | None = None  # the change categories people are told; None: all
    quiet_hours: QuietHours | None = None
    # A change to a match kicking off (before or after it) within this many hours is sent even in
    # quiet hours; 0: nothing is urgent.
    urgent_within_hours: int = DEFAULT_URGENT_WITHIN_HOURS
    # Tell people after this many runs in a row failed for a reason they can act on; 0: never.
    failure_after: int = DEFAULT_FAILURE_AFTER


@dataclass(frozen=True)
class CalendarSpec:
    """spec.calendar: the watcher's match list as an ICS feed the operator serves."""

    enabled: bool = False
    duration_minutes: int = DEFAULT_CALENDAR_DURATION_MINUTES
    include_contacts: bool = False  # referees' phone numbers and e-mail in the feed


@dataclass(frozen=True)
class WatcherSpec:
    schedule: str
    time_zone: str
    suspend: bool
    starting_deadline_seconds: int | None
    fogis: FogisSpec
    webhook: WebhookSpec | None
    notify: NotifySpec | None = None
    language: str = LANGUAGES[0]
    calendar: CalendarSpec | None = None  # None: no feed


@dataclass(frozen=True)
class Credentials:
    """FOGIS login; the password is kept out of repr so it cannot leak through a log line."""

    username: str
    password: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """A salted digest, to tell whether credentials changed without keeping the password."""
        material = f"{self.username}\0{self.password}".encode()
        return hashlib.sha256(_FINGERPRINT_SALT + material).hexdigest()


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{path} must be an object")
    return value


def _int(value: Any, path: str, default: int | None, minimum: int) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidSpec(f"{path} must be an integer >= {minimum}")
    return value


def _str(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidSpec(f"{path} must be a non-empty string")
    return value.strip()


# httpx's URL parser (httpx/_urlparse.py), the rules it refuses a URL by: its length limit, its
# split of the authority (userinfo up to the last @; a [bracketed] host, or one up to a colon;
# the rest a port), and the hosts it checks as IPv4 addresses.
_HTTPX_MAX_URL_LENGTH = 65536
_HTTPX_AUTHORITY = re.compile(r"(?:.*@)?(?P<host>\[.*\]|[^:@]*):?(?P<port>.*)")
_HTTPX_IPV4_STYLE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")


def is_http_url(url: str) -> bool:
    """Whether `url` is an http(s) URL with a host that both the standard library and httpx
    accept: either alone (or the CRD's pattern) lets through hosts the other rejects later.
    httpx's rules are checked here with the standard library and idna (httpx's own IDNA
    encoder), so core needs no HTTP client; tests/unit/core/test_url.py holds them to httpx."""
    if len(url) > _HTTPX_MAX_URL_LENGTH or url.startswith(" "):  # urlsplit skips leading spaces
        return False
    if any(char.isascii() and not char.isprintable() for char in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed on access; raises ValueError when out of range
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return False
    authority = _HTTPX_AUTHORITY.fullmatch(parts.netloc)
    return (
        authority is not None and _httpx_port(authority["port"]) and _httpx_host(authority["host"])
    )


def _httpx_port(port: str) -> bool:
    try:
        int(port or "0")
    except ValueError:
        return False
    return True


def _httpx_host(host: str) -> bool:
    try:
        if _HTTPX_IPV4_STYLE.fullmatch(host):
            ipaddress.IPv4Address(host)
        elif host.startswith("[") and host.endswith("]"):
            ipaddress.IPv6Address(host[1:-1])
        elif not host.isascii():
            idna.encode(host.lower())
    except ValueError:  # AddressValueError and IDNAError (a UnicodeError) alike
        return False
    return bool(host)


def _http_url(value: Any, path: str) -> str | None:
    url = _str(value, path)
    if url is not None and not is_http_url(url):
        raise InvalidSpec(f"{path} must be an http(s) URL with a valid host")
    return url


def parse_spec(spec: Mapping[str, Any]) -> WatcherSpec:
    """Parse `spec`; raises InvalidSpec with a message naming the offending field."""
    schedule = _str(spec.get("schedule"), "spec.schedule")
    if schedule is None:
        raise InvalidSpec("spec.schedule is required", reason=Reason.INVALID_SCHEDULE)
    fogis_raw = _mapping(
        _mapping(spec.get("source"), "spec.source").get("fogis"), "spec.source.fogis"
    )
    secret_ref = _mapping(fogis_raw.get("credentialsSecretRef"), "credentialsSecretRef")
    secret_name = _str(secret_ref.get("name"), "spec.source.fogis.credentialsSecretRef.name")
    if secret_name is None:
        raise InvalidSpec("spec.source.fogis.credentialsSecretRef.name is required")
    fogis = FogisSpec(
        base_url=(
            _http_url(fogis_raw.get("baseUrl"), "spec.source.fogis.baseUrl")
            or DEFAULT_FOGIS_BASE_URL
        ).rstrip("/"),
        credentials_secret=secret_name,
        days_back=_int(
            fogis_raw.get("daysBack"), "spec.source.fogis.daysBack", DEFAULT_DAYS_BACK, 0
        )
        or 0,
        days_ahead=_int(
            fogis_raw.get("daysAhead"), "spec.source.fogis.daysAhead", DEFAULT_DAYS_AHEAD, 0
        )
        or 0,
    )
    webhook: WebhookSpec | None = None
    if spec.get("webhook") is not None:
        hook = _mapping(spec.get("webhook"), "spec.webhook")
        hook_secret = _mapping(hook.get("secretRef"), "spec.webhook.secretRef")
        timeout = hook.get("timeoutSeconds", DEFAULT_WEBHOOK_TIMEOUT_SECONDS)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidSpec("spec.webhook.timeoutSeconds must be a positive number")
        format_ = hook.get("format", "plain")
        if format_ not in WEBHOOK_FORMATS:
            raise InvalidSpec(f"spec.webhook.format must be one of {', '.join(WEBHOOK_FORMATS)}")
        webhook = WebhookSpec(
            url=_http_url(hook.get("url"), "spec.webhook.url"),
            secret_name=_str(hook_secret.get("name"), "spec.webhook.secretRef.name"),
            timeout_seconds=float(timeout),
            max_attempts=_int(
                hook.get("maxAttempts"), "spec.webhook.maxAttempts", DEFAULT_WEBHOOK_MAX_ATTEMPTS, 1
            )
            or 1,
            format=format_,
        )
        if webhook.url is None and webhook.secret_name is None:
            raise InvalidSpec("spec.webhook needs url, or secretRef whose Secret has a url key")
    notify: NotifySpec | None = None
    if spec.get("notify") is not None:
        notify = _notify(_mapping(spec.get("notify"), "spec.notify"))
    language = parse_language(spec.get("language"))
    suspend = spec.get("suspend", False)
    if not isinstance(suspend, bool):
        raise InvalidSpec("spec.suspend must be true or false")
    return WatcherSpec(
        schedule=schedule,
        time_zone=_str(spec.get("timeZone"), "spec.timeZone") or "UTC",
        suspend=suspend,
        starting_deadline_seconds=_int(
            spec.get("startingDeadlineSeconds"), "spec.startingDeadlineSeconds", None, 0
        ),
        fogis=fogis,
        webhook=webhook,
        notify=notify,
        language=language,
        calendar=parse_calendar(spec.get("calendar")),
    )


def parse_language(value: Any) -> str:
    """spec.language (Swedish when absent)."""
    language = LANGUAGES[0] if value is None else value
    if language not in LANGUAGES:
        raise InvalidSpec(f"spec.language must be one of {', '.join(LANGUAGES)}")
    return str(language)


def parse_calendar(value: Any) -> CalendarSpec | None:
    """spec.calendar; None when absent or not enabled."""
    if value is None:
        return None
    raw = _mapping(value, "spec.calendar")
    flags = {}
    for key, default in (("enabled", True), ("includeContacts", False)):
        flag = raw.get(key, default)
        if not isinstance(flag, bool):
            raise InvalidSpec(f"spec.calendar.{key} must be true or false")
        flags[key] = flag
    duration = _int(
        raw.get("durationMinutes"),
        "spec.calendar.durationMinutes",
        DEFAULT_CALENDAR_DURATION_MINUTES,
        1,
    )
    if not flags["enabled"]:
        return None
    return CalendarSpec(
        enabled=True,
        duration_minutes=duration or DEFAULT_CALENDAR_DURATION_MINUTES,
        include_contacts=flags["includeContacts"],
    )


def _notify(raw: Mapping[str, Any]) -> NotifySpec:
    notify_ref = _mapping(raw.get("secretRef"), "spec.notify.secretRef")
    notify_secret = _str(notify_ref.get("name"), "spec.notify.secretRef.name")
    if notify_secret is None:
        raise InvalidSpec("spec.notify.secretRef.name is required")
    categories = raw.get("categories")
    if categories is not None and (
        not isinstance(categories, list) or not all(c in CATEGORIES for c in categories)
    ):
        raise InvalidSpec(f"spec.notify.categories must be a list of: {', '.join(CATEGORIES)}")
    return NotifySpec(
        notify_secret,
        categories=None if categories is None else frozenset(categories),
        quiet_hours=_quiet_hours(raw.get("quietHours")),
        urgent_within_hours=_int(
            raw.get("urgentWithinHours"),
            "spec.notify.urgentWithinHours",
            DEFAULT_URGENT_WITHIN_HOURS,
            0,
        )
        or 0,
        failure_after=_int(
            raw.get("failureAfter"), "spec.notify.failureAfter", DEFAULT_FAILURE_AFTER, 0
        )
        or 0,
    )


def _quiet_hours(value: Any) -> QuietHours | None:
    if value is None:
        return None
    raw = _mapping(value, "spec.notify.quietHours")
    times = []
    for key in ("start", "end"):
        text = raw.get(key)
        found = _CLOCK_TIME.fullmatch(text) if isinstance(text, str) else None
        if found is None:
            raise InvalidSpec(f"spec.notify.quietHours.{key} must be a time as HH:MM (00:00-23:59)")
        times.append(time(int(found[1]), int(found[2])))
    if times[0] == times[1]:
        raise InvalidSpec("spec.notify.quietHours.start and end must differ")
    return QuietHours(times[0], times[1])
