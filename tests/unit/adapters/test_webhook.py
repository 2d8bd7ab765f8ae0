"""Webhook target resolution, signing, retry policy, and the sender against a live receiver."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import httpx
import pytest
import standardwebhooks
import trustme

from controller.adapters import webhook
from controller.adapters.webhook import (
    RetryPolicy,
    WebhookSender,
    WebhookTarget,
    build_headers,
    is_retryable,
    resolve_target,
    retry_delay,
    sign,
)
from controller.core.delivery import DeliveryFailed, WebhookGone
from controller.core.errors import InvalidSpec, SecretNotFound
from controller.core.model import WebhookSpec
from tests.fakes.receiver import Received, Reply, WebhookReceiver

HMAC_KEY = "k3y-that-must-not-leak"


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - seeded for reproducible jitter, not cryptography


SPEC_URL = "https://hooks.example:8443/matchlist/in"


# --- resolve_target -------------------------------------------------------------------------


def _expected(
    url: str,
    *,
    from_secret: bool = False,
    hmac_key: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    secret_name: str | None = "hook",  # noqa: S107 - a Secret's name, not a value
) -> WebhookTarget:
    return WebhookTarget(
        url=url,
        url_from_secret=from_secret,
        hmac_key=hmac_key,
        headers=headers or {},
        timeout_seconds=15.0,
        max_attempts=5,
        secret_name=secret_name,
        signing_keys=(hmac_key,) if hmac_key else (),
    )


@pytest.mark.parametrize(
    ("spec", "secret", "expected", "display_url"),
    [
        pytest.param(
            WebhookSpec(url=SPEC_URL),
            None,
            _expected(SPEC_URL, secret_name=None),
            SPEC_URL,
            id="spec-url",
        ),
        pytest.param(
            WebhookSpec(url="https://user:pw@h.example/p?token=t#f"),
            None,
            _expected("https://user:pw@h.example/p?token=t#f", secret_name=None),
            "https://h.example/p",
            id="display-drops-userinfo-query",
        ),
        pytest.param(
            WebhookSpec(url=SPEC_URL, secret_name="hook"),
            {"url": " http://other.example/x?token=t "},
            _expected("http://other.example/x?token=t", from_secret=True),
            "<url from Secret hook>",
            id="secret-url-overrides",
        ),
        pytest.param(
            WebhookSpec(url=None, secret_name="hook"),
            {"url": "HTTPS://only.example/"},
            _expected("HTTPS://only.example/", from_secret=True),
            "<url from Secret hook>",
            id="secret-url-only",
        ),
        pytest.param(
            WebhookSpec(url=SPEC_URL, secret_name="hook"),
            {"hmacKey": "abc"},
            _expected(SPEC_URL, hmac_key=b"abc"),
            SPEC_URL,
            id="hmac-key",
        ),
        pytest.param(
            WebhookSpec(url=SPEC_URL, secret_name="hook"),
            {"headers": "Authorization: Bearer t0k\nX-Tenant: ' anna '\n"},
            _expected(SPEC_URL, headers={"Authorization": "Bearer t0k", "X-Tenant": "anna"}),
            SPEC_URL,
            id="headers-yaml",
        ),
        pytest.param(
            WebhookSpec(url=SPEC_URL, secret_name="hook"),
            {"headers": '{"X-Tenant": "anna", "X-Empty": ""}'},
            _expected(SPEC_URL, headers={"X-Tenant": "anna", "X-Empty": ""}),
            SPEC_URL,
            id="headers-json",
        ),
        pytest.param(
            WebhookSpec(url=SPEC_URL, secret_name="hook"),
            # Every YAML scalar is taken as written: numbers and booleans need no quotes.
            # A YAML tag is not resolved (a failed `!!int` would quote the value in its error).
            {"headers": "X-Count: 0900\nX-Flag: yes\nX-Tagged: !!int s3cret"},
            _expected(SPEC_URL, headers={"X-Count": "0900", "X-Flag": "yes", "X-Tagged": "s3cret"}),
            SPEC_URL,
            id="headers-scalars-as-text",
        ),
        pytest.param(
            WebhookSpec(url=SPEC_URL, secret_name="hook"),
            {"headers": "{}"},
            _expected(SPEC_URL),
            SPEC_URL,
            id="headers-empty-map",
        ),
    ],
)
def test_resolve_target(
    spec: WebhookSpec,
    secret: Mapping[str, str] | None,
    expected: WebhookTarget,
    display_url: str,
) -> None:
    target = resolve_target(spec, secret, source="/t")

    assert target == expected
    assert target.display_url == display_url


HOOK = WebhookSpec(url=SPEC_URL, secret_name="hook")


@pytest.mark.parametrize(
    ("secret", "reason", "leaked"),
    [
        pytest.param({"url": "ftp://h.example/s3cret"}, "InvalidWebhookSecret", "s3cret", id="ftp"),
        pytest.param({"url": "s3cret-not-a-url"}, "InvalidWebhookSecret", "s3cret", id="no-scheme"),
        pytest.param({"url": "https://[s3cret"}, "InvalidWebhookSecret", "s3cret", id="unparsable"),
        pytest.param({"url": "http://h:9s3cret/"}, "InvalidWebhookSecret", "s3cret", id="bad-port"),
        pytest.param({"hmacKey": ""}, "InvalidWebhookSecret", None, id="empty-hmac-key"),
        pytest.param({"headers": "- s3cret\n- b\n"}, "InvalidWebhookSecret", "s3cret", id="list"),
        pytest.param({"headers": "s3cret"}, "InvalidWebhookSecret", "s3cret", id="scalar"),
        pytest.param(
            {"headers": '{"X-A": {"inner": "s3cret"}}'},
            "InvalidWebhookSecret",
            "s3cret",
            id="nested",
        ),
        pytest.param(
            {"headers": "X-A: [s3cret]"}, "InvalidWebhookSecret", "s3cret", id="list-value"
        ),
        pytest.param(
            {"headers": '"X A s3cret": v'}, "InvalidWebhookSecret", "s3cret", id="bad-name"
        ),
        pytest.param(
            {"headers": '{"X-A": "s3cret\\r\\nX-Injected: 1"}'},
            "InvalidWebhookSecret",
            "s3cret",
            id="crlf-value",
        ),
        pytest.param(
            {"headers": '{"X-A": "s3cret'}, "InvalidWebhookSecret", "s3cret", id="bad-yaml"
        ),
        pytest.param(
            {"headers": "Content-Type: text/s3cret"},
            "InvalidWebhookSecret",
            "s3cret",
            id="reserved-content-type",
        ),
        pytest.param(
            {"headers": "x-signature: sha256=s3cret"},
            "InvalidWebhookSecret",
            "s3cret",
            id="reserved-signature",
        ),
        pytest.param(
            {"headers": "X-MatchList-Delivery: s3cret"},
            "InvalidWebhookSecret",
            "s3cret",
            id="reserved-prefix",
        ),
        pytest.param(
            {"headers": "Host: s3cret.example"},
            "InvalidWebhookSecret",
            "s3cret",
            id="reserved-host",
        ),
        # Refused before parsing (a 1 MiB map took 19 s on the event loop): size, then count.
        pytest.param(
            {"headers": "X-A: s3cret\n" + "X-B: v\n" * 3000},
            "InvalidWebhookSecret",
            "s3cret",
            id="too-large",
        ),
        pytest.param(
            {"headers": "[" * 20_000 + "s3cret"},
            "InvalidWebhookSecret",
            "s3cret",
            id="too-deep",
        ),
        pytest.param(
            {"headers": "".join(f"X-H{i}: s3cret\n" for i in range(65))},
            "InvalidWebhookSecret",
            "s3cret",
            id="too-many",
        ),
    ],
)
def test_resolve_target_rejects_bad_secret_without_echoing_it(
    secret: Mapping[str, str], reason: str, leaked: str | None
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        resolve_target(HOOK, secret, source="/t")

    assert caught.value.reason == reason
    assert "Secret hook" in str(caught.value)
    assert next(iter(secret)) in str(caught.value)  # names the key
    if leaked is not None:
        assert leaked not in str(caught.value)
    # No library exception rides along to show the value in a traceback.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_reserved_header_is_named() -> None:
    with pytest.raises(InvalidSpec, match="header Content-Type is set by the operator"):
        resolve_target(HOOK, {"headers": "Content-Type: text/plain"}, source="/t")


@pytest.mark.parametrize(
    ("spec", "secret", "message"),
    [
        (WebhookSpec(url=None, secret_name="hook"), {"hmacKey": "k"}, "has no url"),
        (WebhookSpec(url="http://[::1/"), None, "spec.webhook.url must be"),
        (WebhookSpec(url="http://h.example:99999/"), None, "spec.webhook.url must be"),
        (WebhookSpec(url="https:///path-only"), None, "spec.webhook.url must be"),
    ],
)
def test_resolve_target_without_usable_url(
    spec: WebhookSpec, secret: Mapping[str, str] | None, message: str
) -> None:
    with pytest.raises(InvalidSpec, match=message) as caught:
        resolve_target(spec, secret, source="/t")
    assert caught.value.reason == "InvalidSpec"


def test_resolve_target_missing_secret() -> None:
    with pytest.raises(SecretNotFound, match="Secret hook"):
        resolve_target(HOOK, None, source="/t")


def test_repr_hides_secrets() -> None:
    target = resolve_target(
        WebhookSpec(url=None, secret_name="hook"),
        {
            "url": "https://h.example/in?token=url-s3cret",
            "hmacKey": HMAC_KEY,
            "headers": "Authorization: Bearer header-s3cret",
        },
        source="/t",
    )
    for secret in ("url-s3cret", HMAC_KEY, "header-s3cret", "h.example"):
        assert secret not in repr(target)
        assert secret not in target.display_url


# --- signing and headers --------------------------------------------------------------------


def test_sign_known_vector() -> None:
    # RFC 4231, test case 2.
    assert sign(b"what do ya want for nothing?", b"Jefe") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


SENT = datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC)
OCCURRED = datetime(2026, 11, 28, 10, 0, 1, tzinfo=UTC)
# The Standard Webhooks test vector key (whsec_ form) and a raw key.
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BASE = {
    "Content-Type": "application/json",
    "User-Agent": "mlcd/1",
    "X-MatchList-Event": "MatchListChanged",
    "X-MatchList-Delivery": "d-1",
    "webhook-id": "d-1",
    "webhook-timestamp": "1795860005",
}


@pytest.mark.parametrize(
    ("spec", "secret", "extra", "verifies_with"),
    [
        pytest.param(HOOK, {}, {}, (), id="unsigned"),
        pytest.param(
            HOOK,
            {"hmacKey": "Jefe", "headers": "X-Tenant: anna"},
            {"X-Signature": sign(b"what do ya want for nothing?", b"Jefe"), "X-Tenant": "anna"},
            (b"Jefe",),
            id="raw-key-signs-both",
        ),
        pytest.param(
            HOOK,
            {"hmacKey": WHSEC},
            # X-Signature keeps the key's raw bytes; webhook-signature decodes whsec_.
            {"X-Signature": sign(b"what do ya want for nothing?", WHSEC.encode())},
            (WHSEC,),
            id="whsec-key",
        ),
        pytest.param(
            HOOK,
            {"hmacKey": "new-key", "previousHmacKey": "old-key"},
            {"X-Signature": sign(b"what do ya want for nothing?", b"new-key")},
            (b"new-key", b"old-key"),
            id="rotation-signs-with-both-keys",
        ),
        pytest.param(
            WebhookSpec(url=SPEC_URL, format="cloudevents"),
            {},
            {
                "ce-specversion": "1.0",
                "ce-type": "io.matchlist.v1alpha1.MatchListChanged",
                "ce-source": "/apis/matchlist.io/v1alpha1/namespaces/referees/matchwatchers/anna",
                "ce-id": "d-1",
                "ce-time": "2026-11-28T10:00:01Z",
            },
            (),
            id="cloudevents-binary-mode",
        ),
    ],
)
def test_build_headers(
    spec: WebhookSpec,
    secret: Mapping[str, str],
    extra: Mapping[str, str],
    verifies_with: tuple[str | bytes, ...],
) -> None:
    source = "/apis/matchlist.io/v1alpha1/namespaces/referees/matchwatchers/anna"
    target = resolve_target(spec, secret if spec.secret_name else None, source=source)
    body = b"what do ya want for nothing?"

    headers = build_headers(target, "d-1", body, "mlcd/1", sent=SENT, occurred=OCCURRED)

    signature = headers.pop("webhook-signature", None)
    assert headers == {**BASE, **extra}
    assert (signature is None) == (not verifies_with)
    for key in verifies_with:  # what a receiver does, with the reference implementation
        with freeze_verification_clock(SENT):
            standardwebhooks.Webhook(key).verify(
                body, {**headers, "webhook-signature": str(signature)}, json_parse=False
            )


def freeze_verification_clock(moment: datetime) -> Any:
    """standardwebhooks refuses timestamps older than 5 minutes: verify as if it were `moment`."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:
            return cls.fromtimestamp(moment.timestamp(), tz=UTC)

    return mock.patch("standardwebhooks.webhooks.datetime", Frozen)


def test_a_wrong_key_does_not_verify() -> None:
    target = resolve_target(HOOK, {"hmacKey": "right"}, source="/t")
    headers = build_headers(target, "d-1", b"{}", "mlcd/1", sent=SENT, occurred=OCCURRED)
    with freeze_verification_clock(SENT), pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(b"wrong").verify(b"{}", headers, json_parse=False)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ({"hmacKey": "whsec_not base64!"}, "not base64"),
        ({"hmacKey": "whsec_"}, "not base64"),
        ({"previousHmacKey": "old"}, "previousHmacKey but no hmacKey"),
        ({"hmacKey": "k", "previousHmacKey": ""}, "previousHmacKey is empty"),
        ({"tls.crt": "x"}, "both tls.crt and tls.key"),
        ({"ca.crt": "not a certificate"}, "ca.crt is not a PEM certificate"),
        ({"headers": "ce-type: spoofed"}, "set by the operator"),
        ({"headers": "webhook-signature: spoofed"}, "set by the operator"),
    ],
)
def test_unusable_signing_and_tls_keys(secret: Mapping[str, str], problem: str) -> None:
    with pytest.raises(InvalidSpec, match=problem) as caught:
        resolve_target(HOOK, secret, source="/t")
    assert caught.value.reason == "InvalidWebhookSecret"


# --- retry policy ---------------------------------------------------------------------------

POLICY = RetryPolicy(base_delay=1.0, max_delay=30.0, max_retry_after=120.0)
NOW = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempt", "window"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (7, 30.0), (5000, 30.0)],
)
def test_retry_delay_backoff_stays_in_equal_jitter_bounds(attempt: int, window: float) -> None:
    rng = _rng(42)
    delays = [retry_delay(POLICY, attempt, None, rng) for _ in range(200)]

    assert all(window / 2 <= d <= window for d in delays)
    assert len(set(delays)) > 1  # jittered, not a fixed value


def test_retry_delay_grows_until_cap() -> None:
    rng = _rng(7)
    # Equal jitter keeps consecutive windows disjoint, so growth holds for every draw.
    delays = [retry_delay(POLICY, attempt, None, rng) for attempt in range(1, 7)]

    assert delays == sorted(delays)


def test_retry_delay_is_reproducible_with_seeded_rng() -> None:
    first = [retry_delay(POLICY, n, None, _rng(3)) for n in (1, 2, 3)]
    again = [retry_delay(POLICY, n, None, _rng(3)) for n in (1, 2, 3)]
    assert first == again


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("3", 3.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("86400", 120.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        (format_datetime(NOW + timedelta(days=1), usegmt=True), 120.0),
        ("Sat, 28 Nov 2026 10:00:45 -0000", 45.0),
    ],
)
def test_retry_delay_honours_retry_after(retry_after: str, expected: float) -> None:
    assert retry_delay(POLICY, 1, retry_after, _rng(1), now=NOW) == expected


@pytest.mark.parametrize("retry_after", ["soon", "-5", "1.5", "", "\u00b3"])
def test_retry_delay_ignores_unusable_retry_after(retry_after: str) -> None:
    delay = retry_delay(POLICY, 4, retry_after, _rng(1), now=NOW)
    assert 4.0 <= delay <= 8.0


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (None, True),
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (599, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (410, False),
        (422, False),
        (301, False),
        (302, False),
        (307, False),
        (308, False),
    ],
)
def test_is_retryable(status: int | None, retryable: bool) -> None:
    assert is_retryable(status) is retryable


# --- WebhookSender against a live receiver --------------------------------------------------

BODY = '{"kind":"MatchListChanged",  "note":"åäö \\u00e9"}\n'.encode()


class FakeSleep:
    """Records the delays the sender asked for; `on_sleep` lets a test act in the pause."""

    def __init__(self, on_sleep: Callable[[], None] | None = None) -> None:
        self.delays: list[float] = []
        self._on_sleep = on_sleep

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self._on_sleep is not None:
            self._on_sleep()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(hmac_key=HMAC_KEY) as hook:
        yield hook


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


def _sender(client: httpx.AsyncClient, sleep: FakeSleep) -> WebhookSender:
    return WebhookSender(client, policy=POLICY, user_agent="mlcd-test/1", sleep=sleep, rng=_rng(5))


def _target(url: str, *, max_attempts: int = 5, timeout: float = 5.0) -> WebhookTarget:
    spec = WebhookSpec(
        url=url, secret_name="hook", timeout_seconds=timeout, max_attempts=max_attempts
    )
    return resolve_target(spec, {"hmacKey": HMAC_KEY, "headers": "X-Tenant: anna"}, source="/t")


async def test_delivers_exact_signed_body_first_time(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    receiver.enqueue(200)
    sleep = FakeSleep()

    result = await _sender(client, sleep).deliver(_target(receiver.url), BODY, "d-1")

    assert result.status_code == 200
    assert [a.status_code for a in result.attempts] == [200]
    assert sleep.delays == []
    (got,) = receiver.requests
    assert (got.method, got.path, got.body) == ("POST", "/webhook", BODY)
    assert got.signature_valid is True
    assert got.payload["note"] == "åäö é"
    assert got.header("X-MatchList-Delivery") == "d-1"
    assert got.header("X-MatchList-Event") == "MatchListChanged"
    assert got.header("Content-Type") == "application/json"
    assert got.header("User-Agent") == "mlcd-test/1"
    assert got.header("X-Tenant") == "anna"


async def test_the_shared_gate_is_free_while_a_delivery_waits_to_retry(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    """One receiver answering 503 with a long Retry-After must not hold up other watchers."""
    receiver.enqueue(Reply(503, headers={"Retry-After": "60"}), 204)
    gate = asyncio.Semaphore(1)
    held: list[bool] = []
    sleep = FakeSleep(on_sleep=lambda: held.append(gate.locked()))

    result = await _sender(client, sleep).deliver(_target(receiver.url), BODY, "d-1", gate)

    assert result.status_code == 204
    assert sleep.delays == [60.0]
    assert held == [False]
    assert not gate.locked()


async def test_retries_server_errors_with_backoff(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    receiver.enqueue(500, 500, 200)
    sleep = FakeSleep()

    result = await _sender(client, sleep).deliver(_target(receiver.url), BODY, "d-2")

    assert [a.status_code for a in result.attempts] == [500, 500, 200]
    assert len(sleep.delays) == 2
    assert 0.5 <= sleep.delays[0] <= 1.0
    assert 1.0 <= sleep.delays[1] <= 2.0
    got = receiver.requests
    assert {r.header("X-MatchList-Delivery") for r in got} == {"d-2"}
    assert {r.body for r in got} == {BODY}


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (Reply(400), "answered 400 after 1 attempt"),
        (Reply(404), "answered 404 after 1 attempt"),
        (
            Reply(302, headers={"Location": "/elsewhere"}),
            "answered 302 (redirects are not followed)",
        ),
    ],
)
async def test_permanent_failure_is_not_retried(
    receiver: WebhookReceiver, client: httpx.AsyncClient, reply: Reply, outcome: str
) -> None:
    receiver.enqueue(reply)
    sleep = FakeSleep()

    with pytest.raises(DeliveryFailed) as caught:
        await _sender(client, sleep).deliver(_target(receiver.url), BODY, "d-3")

    assert outcome in str(caught.value)
    assert caught.value.reason == "WebhookFailing"
    assert caught.value.last_status_code == reply.status
    assert len(caught.value.attempts) == 1
    assert sleep.delays == []
    assert len(receiver.requests) == 1


async def test_gives_up_after_max_attempts(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    receiver.enqueue(*[503] * 5)
    sleep = FakeSleep()

    with pytest.raises(DeliveryFailed) as caught:
        await _sender(client, sleep).deliver(_target(receiver.url, max_attempts=3), BODY, "d-4")

    assert str(caught.value) == f"webhook {receiver.url} answered 503 after 3 attempts"
    assert [a.status_code for a in caught.value.attempts] == [503, 503, 503]
    assert len(sleep.delays) == 2
    assert len(receiver.requests) == 3


async def test_honours_retry_after(receiver: WebhookReceiver, client: httpx.AsyncClient) -> None:
    receiver.enqueue(Reply(429, headers={"Retry-After": "3"}), 204)
    sleep = FakeSleep()

    result = await _sender(client, sleep).deliver(_target(receiver.url), BODY, "d-5")

    assert result.status_code == 204
    assert sleep.delays == [3.0]


async def test_connection_refused(receiver: WebhookReceiver, client: httpx.AsyncClient) -> None:
    receiver.down()
    sleep = FakeSleep()

    with pytest.raises(DeliveryFailed) as caught:
        await _sender(client, sleep).deliver(_target(receiver.url, max_attempts=3), BODY, "d-6")

    assert str(caught.value) == f"webhook {receiver.url} connection refused after 3 attempts"
    assert caught.value.last_status_code is None
    assert [(a.status_code, a.error) for a in caught.value.attempts] == [
        (None, "connection refused")
    ] * 3
    assert not caught.value.in_doubt  # nothing reached a receiver
    assert len(sleep.delays) == 2


async def test_recovers_when_receiver_comes_back_on_same_port(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    receiver.down()
    sleep = FakeSleep(on_sleep=receiver.up)

    result = await _sender(client, sleep).deliver(_target(receiver.url), BODY, "d-7")

    assert [a.status_code for a in result.attempts] == [None, 204]
    assert len(receiver.requests) == 1


async def test_timeout_is_retried(receiver: WebhookReceiver, client: httpx.AsyncClient) -> None:
    receiver.enqueue(Reply(204, delay_seconds=30), 204)
    sleep = FakeSleep()

    result = await _sender(client, sleep).deliver(_target(receiver.url, timeout=0.2), BODY, "d-8")

    assert [(a.status_code, a.error) for a in result.attempts] == [
        (None, "timed out after 0.2s"),
        (204, None),
    ]
    # The request had been sent: the receiver may have applied it.
    assert [a.in_doubt for a in result.attempts] == [True, False]
    assert len(sleep.delays) == 1
    assert len(receiver.requests) == 2


def _chained(outer: httpx.TransportError, cause: BaseException) -> httpx.TransportError:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (_chained(httpx.ConnectError("x"), ConnectionRefusedError(111, "x")), "connection refused"),
        (_chained(httpx.ConnectError("x"), socket.gaierror(-2, "x")), "host name did not resolve"),
        (httpx.RemoteProtocolError("peer s3cret"), "transport error (RemoteProtocolError)"),
    ],
)
async def test_transport_errors_are_described_without_library_text(
    raised: httpx.TransportError, error: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as mock:
        with pytest.raises(DeliveryFailed) as caught:
            await _sender(mock, FakeSleep()).deliver(
                _target(SPEC_URL, max_attempts=1), BODY, "d-10"
            )

    assert [a.error for a in caught.value.attempts] == [error]
    assert str(caught.value) == f"webhook {SPEC_URL} {error} after 1 attempt"


async def test_no_secret_in_errors_or_logs(
    receiver: WebhookReceiver, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    target = resolve_target(
        WebhookSpec(url=None, secret_name="hook", max_attempts=2),
        {
            "url": f"{receiver.url}?token=url-s3cret",
            "hmacKey": HMAC_KEY,
            "headers": "Authorization: Bearer header-s3cret",
        },
        source="/t",
    )
    receiver.enqueue(503, 503)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(DeliveryFailed) as caught:
        await _sender(client, FakeSleep()).deliver(target, BODY, "d-9")

    assert str(caught.value) == "webhook <url from Secret hook> answered 503 after 2 attempts"
    # httpx's own INFO line shows the full URL; keeping it quiet is the logging setup's job.
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("controller.")]
    assert ours  # the retry was logged, so the check below means something
    shown = [str(caught.value), repr(caught.value), repr(caught.value.attempts), repr(target)]
    for text in shown + ours:
        for secret in ("url-s3cret", HMAC_KEY, "header-s3cret", receiver.url):
            assert secret not in text
    (first, _) = receiver.requests
    assert first.path == "/webhook?token=url-s3cret"
    assert first.header("Authorization") == "Bearer header-s3cret"
    assert first.signature_valid is True


async def test_receiver_calls_on_request_before_answering(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    # The hook decides the answer to the very request it saw, so it must run before the reply.
    seen: list[str | None] = []

    def hook(got: Received) -> None:
        seen.append(got.header("X-MatchList-Delivery"))
        receiver.enqueue(410)

    receiver.on_request = hook

    with pytest.raises(DeliveryFailed, match="answered 410"):
        await _sender(client, FakeSleep()).deliver(_target(receiver.url), BODY, "d-11")

    assert seen == ["d-11"]


class StepClock:
    """Each call is `step` seconds after the previous one, starting now."""

    def __init__(self, step: float) -> None:
        self._next = datetime.now(UTC)
        self._step = timedelta(seconds=step)

    def __call__(self) -> datetime:
        moment, self._next = self._next, self._next + self._step
        return moment


async def test_every_attempt_is_restamped_and_resigned(
    receiver: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    receiver.enqueue(503, 204)
    sender = WebhookSender(
        client, policy=POLICY, user_agent="t", sleep=FakeSleep(), clock=StepClock(2.0)
    )
    await sender.deliver(_target(receiver.url), BODY, "d-12")

    first, second = receiver.requests
    stamps = [int(str(got.header("webhook-timestamp"))) for got in (first, second)]
    assert stamps[1] - stamps[0] == 2
    for got in (first, second):
        assert got.header("webhook-id") == "d-12"
        standardwebhooks.Webhook(HMAC_KEY.encode()).verify(got.body, dict(got.headers))


async def test_signing_runs_off_the_event_loop(
    receiver: WebhookReceiver, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Structural, not timed: HMAC and Standard Webhooks signatures of a big body are CPU, so
    # both record the thread they ran on, which must not be the event loop's.
    threads: set[int] = set()

    def spy(real: Callable[..., str]) -> Callable[..., str]:
        def recorded(*args: Any) -> str:
            threads.add(threading.get_ident())
            return real(*args)

        return recorded

    monkeypatch.setattr(webhook, "sign", spy(webhook.sign))
    monkeypatch.setattr(webhook, "standard_signature", spy(webhook.standard_signature))
    receiver.enqueue(204)
    await _sender(client, FakeSleep()).deliver(_target(receiver.url), BODY, "d-13")

    assert receiver.requests[0].signature_valid is True
    assert len(threads) == 1
    assert threading.get_ident() not in threads


async def test_410_gone_stops_at_once(receiver: WebhookReceiver, client: httpx.AsyncClient) -> None:
    receiver.enqueue(410, 204)
    with pytest.raises(WebhookGone) as caught:
        await _sender(client, FakeSleep()).deliver(_target(receiver.url), BODY, "d-13")
    assert caught.value.reason == "WebhookGone"
    assert len(receiver.requests) == 1


class _TlsReceiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tls_receiver() -> Iterator[tuple[str, trustme.CA]]:
    """An HTTPS receiver whose certificate comes from a CA of this test's own, and which
    requires a client certificate from that CA."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TlsReceiver)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/in", ca
    finally:
        server.shutdown()
        server.server_close()


def _tls_secret(ca: trustme.CA, *, with_ca: bool = True, with_cert: bool = True) -> dict[str, str]:
    client = ca.issue_cert("mlcd@example.org")
    secret = {}
    if with_ca:
        secret["ca.crt"] = ca.cert_pem.bytes().decode()
    if with_cert:
        secret["tls.crt"] = "".join(blob.bytes().decode() for blob in client.cert_chain_pems)
        secret["tls.key"] = client.private_key_pem.bytes().decode()
    return secret


@pytest.mark.parametrize(
    ("with_ca", "with_cert", "failure"),
    [
        (True, True, None),
        (False, True, "TLS failed"),  # the receiver's certificate is not trusted
        # The receiver wants a client certificate. In TLS 1.3 it says so after the client's
        # handshake is done: an alert (an ssl error), or a reset when the alert loses the race.
        (True, False, r"TLS failed|transport error \(ReadError\)"),
    ],
)
async def test_private_ca_and_client_certificate(
    tls_receiver: tuple[str, trustme.CA],
    client: httpx.AsyncClient,
    with_ca: bool,
    with_cert: bool,
    failure: str | None,
) -> None:
    url, ca = tls_receiver
    spec = WebhookSpec(url=url, secret_name="hook", max_attempts=1, timeout_seconds=5)
    target = resolve_target(
        spec, _tls_secret(ca, with_ca=with_ca, with_cert=with_cert), source="/t"
    )
    sender = _sender(client, FakeSleep())
    try:
        if failure is None:
            assert (await sender.deliver(target, BODY, "d-14")).status_code == 204
        else:
            with pytest.raises(DeliveryFailed, match=failure):
                await sender.deliver(target, BODY, "d-14")
    finally:
        await sender.aclose()


async def test_a_raw_ssl_error_is_a_failed_attempt_not_a_crash() -> None:
    """httpcore lets some TLS alerts through unmapped (a TLS 1.3 receiver refusing our client
    certificate after the handshake): that is the receiver saying no, not a bug of ours."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] certificate required")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as mock:
        spec = WebhookSpec(url="https://127.0.0.1:1/in", max_attempts=1)
        with pytest.raises(DeliveryFailed, match="TLS failed"):
            await _sender(mock, FakeSleep()).deliver(
                resolve_target(spec, None, source="/t"), BODY, "d-15"
            )
