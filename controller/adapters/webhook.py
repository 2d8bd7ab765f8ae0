"""Webhook delivery: resolving the target, signing, and POSTing with retries.

Everything here is safe to log: the URL is shown through `WebhookTarget.display_url` only, and no
exception message, repr or log line carries the HMAC key, a header value from the Secret, or a URL
taken from the Secret (it may embed a token). Library exceptions are chained with `from None` where
their text could echo Secret content, so not even a traceback shows it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import http
import logging
import os
import random
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx
import standardwebhooks
import yaml

from controller.adapters.destinations import (
    Resolver,
    api_server_addresses,
    refusal,
    system_resolver,
)
from controller.core.delivery import Attempt, DeliveryFailed, DeliveryResult, WebhookGone
from controller.core.errors import InvalidSpec, SecretNotFound
from controller.core.logfields import about
from controller.core.model import WatcherRef, WebhookSpec, is_http_url
from controller.core.reasons import Reason
from controller.core.report import rfc3339

log = logging.getLogger(__name__)

EVENT = "MatchListChanged"
# The CloudEvents `type` of a delivery in cloudevents format (reverse DNS, then the version).
CLOUDEVENT_TYPE = "io.matchlist.v1alpha1.MatchListChanged"
# Standard Webhooks: a key in this form is base64 after the prefix; any other is raw bytes.
STANDARD_KEY_PREFIX = "whsec_"
# Limits of the webhook Secret's `headers` value (see _parse_headers).
MAX_HEADERS_BYTES = 16 * 1024
MAX_HEADERS = 64

# Headers the operator sets itself or that frame the request; a Secret may not replace them, or
# a typo there could silently break signatures or the HTTP framing.
_RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "transfer-encoding",
        "host",
        "user-agent",
        "x-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_RESERVED_PREFIXES = ("x-matchlist-", "ce-")
# RFC 9110 token; values are printable ASCII (httpx refuses other bytes, echoing them in its error).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


@dataclass(frozen=True)
class WebhookTarget:
    """Where and how to deliver; the secret-bearing fields are kept out of repr."""

    url: str = field(repr=False)
    url_from_secret: bool
    hmac_key: bytes | None = field(repr=False)  # X-Signature: the hmacKey value's raw bytes
    headers: Mapping[str, str] = field(repr=False)
    timeout_seconds: float
    max_attempts: int
    secret_name: str | None = None
    # Standard Webhooks keys (hmacKey, then previousHmacKey while a key is rotated).
    signing_keys: tuple[bytes, ...] = field(default=(), repr=False)
    # CloudEvents `source` (the watcher's API path) when spec.webhook.format is cloudevents.
    cloudevents_source: str | None = None
    # From the Secret's ca.crt / tls.crt + tls.key; None: the system's CAs, no client cert.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def display_url(self) -> str:
        """The URL as it may appear in messages: no userinfo, query or fragment."""
        if self.url_from_secret:
            return f"<url from Secret {self.secret_name}>"
        return display_url(self.url)


def display_url(url: str) -> str:
    """`url` as it may appear in messages and the service's /status: no userinfo, query or
    fragment (where tokens go)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _parse_headers(raw: str, where: str) -> dict[str, str]:
    # A real header map is a few hundred bytes; YAML parsing is slow on big or deeply nested
    # input (a 1 MiB map took 19 s), so anything larger is refused before it is parsed.
    if len(raw) > MAX_HEADERS_BYTES:
        raise InvalidSpec(
            f"{where} is larger than {MAX_HEADERS_BYTES // 1024} KiB",
            reason=Reason.INVALID_WEBHOOK_SECRET,
        )
    try:
        # BaseLoader: every scalar stays a string and no tag is resolved, so a value such as
        # `!!int Bearer-xyz` cannot raise a constructor error that quotes it.
        loaded = yaml.load(raw, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds no objects
    except Exception:  # any parser error may quote the value
        raise InvalidSpec(
            f"{where} is not valid YAML or JSON", reason=Reason.INVALID_WEBHOOK_SECRET
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InvalidSpec(
            f"{where} must be a map of header names to string values",
            reason=Reason.INVALID_WEBHOOK_SECRET,
        )
    if len(loaded) > MAX_HEADERS:
        raise InvalidSpec(
            f"{where} has more than {MAX_HEADERS} headers", reason=Reason.INVALID_WEBHOOK_SECRET
        )
    headers: dict[str, str] = {}
    for name, value in loaded.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidSpec(
                f"{where} has a header name that is not valid", reason=Reason.INVALID_WEBHOOK_SECRET
            )
        lowered = name.lower()
        if lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
            raise InvalidSpec(
                f"{where}: header {name} is set by the operator and cannot be overridden",
                reason=Reason.INVALID_WEBHOOK_SECRET,
            )
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value.strip()):
            raise InvalidSpec(
                f"{where}: the value of header {name} must be a string of printable ASCII "
                "(quote numbers and booleans)",
                reason=Reason.INVALID_WEBHOOK_SECRET,
            )
        headers[name] = value.strip()
    return headers


def webhook_fingerprint(spec: WebhookSpec, secret_version: str) -> str:
    """Names one webhook configuration (its spec and its Secret's resourceVersion) without any
    secret value: a 410 Gone answer holds until this changes."""
    text = f"{spec!r}/{secret_version}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _standard_key(value: str, where: str) -> bytes:
    """A Standard Webhooks key: `whsec_<base64>` decoded as that standard says, else raw bytes."""
    if not value.startswith(STANDARD_KEY_PREFIX):
        return value.encode()
    try:
        key = base64.b64decode(value[len(STANDARD_KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise InvalidSpec(
            f"{where} starts with {STANDARD_KEY_PREFIX} but the rest is not base64",
            reason=Reason.INVALID_WEBHOOK_SECRET,
        )
    return key


def _pem_file(pem: str) -> int:
    """An anonymous in-memory file holding `pem`: ssl loads certificate chains from paths only,
    and the operator's root file system is read-only (nor should a key touch a disk)."""
    fd = os.memfd_create("webhook-tls", os.MFD_CLOEXEC)
    os.write(fd, pem.encode())
    return fd


@functools.lru_cache(maxsize=64)
def tls_context(ca: str | None, cert: str | None, key: str | None, where: str) -> ssl.SSLContext:
    """The TLS context for a webhook Secret's PEM material, built once per distinct material.
    Errors are fixed phrases: ssl's own messages are not ours to vouch for."""
    try:
        context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    except (ssl.SSLError, ValueError):
        raise InvalidSpec(
            f"{where} key ca.crt is not a PEM certificate", reason=Reason.INVALID_WEBHOOK_SECRET
        ) from None
    if cert is not None and key is not None:
        cert_fd, key_fd = _pem_file(cert), _pem_file(key)
        try:
            context.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
        except (ssl.SSLError, ValueError, OSError):
            raise InvalidSpec(
                f"{where} keys tls.crt and tls.key are not a PEM certificate and its key",
                reason=Reason.INVALID_WEBHOOK_SECRET,
            ) from None
        finally:
            os.close(cert_fd)
            os.close(key_fd)
    return context


def _tls(secret: Mapping[str, str], where: str) -> ssl.SSLContext | None:
    ca, cert, key = secret.get("ca.crt"), secret.get("tls.crt"), secret.get("tls.key")
    if (cert is None) != (key is None):
        raise InvalidSpec(
            f"{where} needs both tls.crt and tls.key for a client certificate",
            reason=Reason.INVALID_WEBHOOK_SECRET,
        )
    if ca is None and cert is None:
        return None
    return tls_context(ca, cert, key, where)


def resolve_target(
    spec: WebhookSpec, secret_data: Mapping[str, str] | None, *, source: str
) -> WebhookTarget:
    """Combine the spec with its decoded Secret (None when the spec names no Secret). `source`
    names the watcher in CloudEvents deliveries.

    Secret keys, all optional: `url` (overrides spec.url), `hmacKey`, `previousHmacKey`,
    `headers` (YAML/JSON map).
    """
    secret: Mapping[str, str] = {}
    if spec.secret_name is not None:
        if secret_data is None:
            raise SecretNotFound(f"Secret {spec.secret_name} not found")
        secret = secret_data
    where = f"Secret {spec.secret_name}"

    # The model only checked the scheme prefix; a URL that does not parse here would make
    # display_url fail on the error path, so both sources are checked the same way.
    secret_url = secret.get("url")
    if secret_url is not None:
        url = secret_url.strip()
        if not is_http_url(url):
            raise InvalidSpec(
                f"{where} key url must be an http(s) URL", reason=Reason.INVALID_WEBHOOK_SECRET
            )
    elif spec.url is None:
        raise InvalidSpec("spec.webhook has no url, in the spec or as key url of its Secret")
    elif not is_http_url(spec.url):
        raise InvalidSpec("spec.webhook.url must be an http(s) URL with a host")
    else:
        url = spec.url

    keys: list[bytes] = []
    for name in ("hmacKey", "previousHmacKey"):
        value = secret.get(name)
        if value == "":
            raise InvalidSpec(f"{where} key {name} is empty", reason=Reason.INVALID_WEBHOOK_SECRET)
        if value is not None:
            keys.append(_standard_key(value, f"{where} key {name}"))
    hmac_key = secret.get("hmacKey")
    if hmac_key is None and keys:
        raise InvalidSpec(
            f"{where} has previousHmacKey but no hmacKey", reason=Reason.INVALID_WEBHOOK_SECRET
        )
    raw_headers = secret.get("headers")
    return WebhookTarget(
        url=url,
        url_from_secret=secret_url is not None,
        hmac_key=hmac_key.encode() if hmac_key is not None else None,
        headers=_parse_headers(raw_headers, f"{where} key headers") if raw_headers else {},
        timeout_seconds=spec.timeout_seconds,
        max_attempts=spec.max_attempts,
        secret_name=spec.secret_name,
        signing_keys=tuple(keys),
        cloudevents_source=source if spec.format == "cloudevents" else None,
        ssl_context=_tls(secret, where),
    )


def sign(body: bytes, key: bytes) -> str:
    """The `X-Signature` value: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def standard_signature(
    keys: tuple[bytes, ...], delivery_id: str, sent: datetime, body: bytes
) -> str:
    """The `webhook-signature` value: `v1,<base64>` over `id.timestamp.body` per key, space
    separated, so a receiver still holding the previous key verifies during a rotation."""
    text = body.decode()
    return " ".join(standardwebhooks.Webhook(key).sign(delivery_id, sent, text) for key in keys)


def build_headers(
    target: WebhookTarget,
    delivery_id: str,
    body: bytes,
    user_agent: str,
    *,
    sent: datetime,
    occurred: datetime,
) -> dict[str, str]:
    """The headers of one attempt: `sent` re-stamps (and re-signs) every attempt, so a receiver
    can refuse replays of old requests; `occurred` is when the changes were detected."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "X-MatchList-Event": EVENT,
        "X-MatchList-Delivery": delivery_id,
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(sent.timestamp())),
    }
    if target.hmac_key is not None:
        headers["X-Signature"] = sign(body, target.hmac_key)
    if target.signing_keys:
        headers["webhook-signature"] = standard_signature(
            target.signing_keys, delivery_id, sent, body
        )
    if target.cloudevents_source is not None:
        headers |= {
            "ce-specversion": "1.0",
            "ce-type": CLOUDEVENT_TYPE,
            "ce-source": target.cloudevents_source,
            "ce-id": delivery_id,
            "ce-time": rfc3339(occurred),
        }
    # resolve_target refused extra headers that collide with ours, so this cannot override.
    headers.update(target.headers)
    return headers


@dataclass(frozen=True)
class RetryPolicy:
    base_delay: float = 1.0
    max_delay: float = 30.0
    # Retry-After is obeyed only up to this, so one receiver cannot stall a run for hours.
    max_retry_after: float = 120.0


def _retry_after_seconds(value: str, now: datetime) -> float | None:
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    retry_after: str | None,
    rng: random.Random,
    *,
    now: datetime | None = None,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    A usable `Retry-After` (seconds or HTTP-date, relative to `now`) wins, capped at
    `max_retry_after`. Otherwise exponential backoff with equal jitter: half the window is fixed,
    so a retry never follows a 503 immediately; the other half is random, so watchers failing
    together do not retry together.
    """
    if retry_after is not None:
        seconds = _retry_after_seconds(retry_after, now or datetime.now(UTC))
        if seconds is not None:
            return min(seconds, policy.max_retry_after)
    # The exponent is clamped only so a huge maxAttempts cannot overflow the float.
    window = min(policy.max_delay, policy.base_delay * 2.0 ** min(attempt - 1, 64))
    return window / 2 + rng.uniform(0, window / 2)


def is_retryable(status_code: int | None) -> bool:
    """Whether a failed attempt is worth repeating; None means no response (connect error, timeout).

    Only for failures: 2xx is success and never reaches here. 3xx is a permanent failure, since
    redirects are not followed (a POST body must not be re-sent to wherever a redirect points) and
    a redirect is not acceptance; the URL needs fixing, which retrying cannot do.
    """
    return status_code is None or status_code in (408, 429) or 500 <= status_code <= 599


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# Transport errors after which the request may have been received (not: connect failures).
_MAYBE_SENT = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def _describe(exc: Exception, timeout_seconds: float) -> str:
    # Fixed phrases, not str(exc): library messages are not ours to vouch for. The useful detail
    # (refused vs. unresolvable) sits at the bottom of httpx's exception chain.
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_seconds:g}s"
    causes = list(_causes(exc))
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "host name did not resolve"
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return "TLS failed (the receiver's certificate is not trusted, or it refused ours)"
    return f"transport error ({type(exc).__name__})"


class WebhookSender:
    """POSTs one payload with retries; the caller owns the shared client and its pool limits."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        policy: RetryPolicy,
        user_agent: str,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        allowed_hosts: frozenset[str] = frozenset(),
        resolve: Resolver = system_resolver,
    ) -> None:
        self._client = client
        # One client (and pool) per private-CA / client-certificate context, the most recent
        # few kept: a context cannot change per request in httpx.
        self._tls_clients: dict[ssl.SSLContext, httpx.AsyncClient] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._allowed_hosts = allowed_hosts
        self._resolve = resolve
        self._api_server = api_server_addresses()
        self._policy = policy
        self._user_agent = user_agent
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    _MAX_TLS_CLIENTS = 64

    def _client_for(self, target: WebhookTarget) -> httpx.AsyncClient:
        context = target.ssl_context
        if context is None:
            return self._client
        client = self._tls_clients.pop(context, None)
        if client is None:
            client = httpx.AsyncClient(verify=context, follow_redirects=False)
            if len(self._tls_clients) >= self._MAX_TLS_CLIENTS:
                oldest = next(iter(self._tls_clients))
                # Closed in the background: requests in flight on it still finish.
                task = asyncio.get_running_loop().create_task(
                    self._tls_clients.pop(oldest).aclose()
                )
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self._tls_clients[context] = client  # most recently used last
        return client

    async def aclose(self) -> None:
        """Close the clients this sender made for private CAs and client certificates."""
        for client in self._tls_clients.values():
            await client.aclose()
        self._tls_clients.clear()
        await asyncio.gather(*self._closing)

    async def _check_destination(self, target: WebhookTarget) -> None:
        """Refuse the metadata service, link-local addresses, the API server and (with
        MLCD_WEBHOOK_ALLOWED_HOSTS) unlisted hosts before anything is sent: a configuration
        error, so nothing counts as delivered and the changes stay pending."""
        url = httpx.URL(target.url)
        reason = await refusal(
            url.host,
            url.port or (443 if url.scheme == "https" else 80),
            allowed_hosts=self._allowed_hosts,
            resolve=self._resolve,
            api_server=self._api_server,
        )
        if reason is not None:
            # A URL from the Secret is not shown, not even its host.
            detail = "its address is not allowed" if target.url_from_secret else reason
            raise InvalidSpec(
                f"webhook {target.display_url}: {detail}; nothing was sent",
                reason=Reason.WEBHOOK_NOT_ALLOWED,
            )

    async def _attempt(
        self, target: WebhookTarget, body: bytes, headers: dict[str, str]
    ) -> tuple[Attempt, httpx.Response | None]:
        started = time.perf_counter()
        try:
            # One deadline for the whole attempt (pool wait, connect, send, read), so a receiver
            # that trickles bytes cannot stretch it; httpx's per-phase timeouts are disabled.
            async with (
                asyncio.timeout(target.timeout_seconds),
                # Streamed and never read: only the status and headers matter, so a huge or
                # undecodable body can neither fill memory nor fail an accepted delivery.
                self._client_for(target).stream(
                    "POST",
                    target.url,
                    content=body,
                    headers=headers,
                    timeout=None,
                    follow_redirects=False,
                ) as response,
            ):
                pass
        # ssl.SSLError too: a TLS 1.3 server refusing the client certificate alerts after the
        # client's handshake is done, and httpcore lets that through unmapped when reading.
        except (TimeoutError, httpx.HTTPError, UnicodeError, ssl.SSLError) as exc:
            error = _describe(exc, target.timeout_seconds)
            in_doubt = isinstance(exc, (TimeoutError, *_MAYBE_SENT))
            return Attempt(None, error, time.perf_counter() - started, in_doubt), None
        return Attempt(response.status_code, None, time.perf_counter() - started), response

    async def deliver(
        self,
        target: WebhookTarget,
        body: bytes,
        delivery_id: str,
        gate: contextlib.AbstractAsyncContextManager[object] | None = None,
        *,
        occurred: datetime | None = None,
        watcher: WatcherRef | None = None,
    ) -> DeliveryResult:
        """Deliver `body` as is; returns on the first 2xx, raises DeliveryFailed otherwise.
        `occurred`: when the changes were detected (CloudEvents' ce-time); default now.

        `gate` (shared by all watchers) is held only while an attempt is in flight, never
        through a backoff or Retry-After wait (the injected sleep): one failing receiver must
        not delay the others.
        """
        await self._check_destination(target)
        occurred = occurred or self._clock()
        attempts: list[Attempt] = []
        while True:
            async with gate or contextlib.nullcontext():
                # In a thread: signing a big body (HMAC, Standard Webhooks' decode and base64)
                # is CPU the event loop must not wait for.
                headers = await asyncio.to_thread(
                    build_headers,
                    target,
                    delivery_id,
                    body,
                    self._user_agent,
                    sent=self._clock(),
                    occurred=occurred,
                )
                attempt, response = await self._attempt(target, body, headers)
            attempts.append(attempt)
            status = attempt.status_code
            if status is not None and 200 <= status <= 299:
                return DeliveryResult(status, tuple(attempts))
            if status is None:
                outcome = str(attempt.error)
            elif 300 <= status <= 399:
                outcome = f"answered {status} (redirects are not followed)"
            else:
                outcome = f"answered {status}"
            if status == http.HTTPStatus.GONE:
                raise WebhookGone(
                    f"webhook {target.display_url} answered 410 Gone: no more deliveries until "
                    "spec.webhook or its Secret changes",
                    attempts=tuple(attempts),
                    last_status_code=status,
                )
            if not is_retryable(status) or len(attempts) >= target.max_attempts:
                count = len(attempts)
                raise DeliveryFailed(
                    f"webhook {target.display_url} {outcome} after {count} "
                    f"attempt{'s' if count != 1 else ''}",
                    attempts=tuple(attempts),
                    last_status_code=status,
                )
            retry_after = response.headers.get("Retry-After") if response is not None else None
            delay = retry_delay(self._policy, len(attempts), retry_after, self._rng)
            log.info(
                "%swebhook %s %s (attempt %d of %d), retrying in %.1fs",
                "" if watcher is None else f"{watcher.namespace}/{watcher.name}: ",
                target.display_url,
                outcome,
                len(attempts),
                target.max_attempts,
                delay,
                extra={} if watcher is None else about(watcher),
            )
            await self._sleep(delay)
