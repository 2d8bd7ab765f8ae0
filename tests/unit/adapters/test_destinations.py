"""Where outgoing requests may go (controller/adapters/destinations.py): SSRF guard rails."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from controller.adapters.destinations import Resolver, forbidden_reason, refusal
from controller.adapters.fogis import FogisClient, FogisSession
from controller.adapters.webhook import RetryPolicy, WebhookSender, resolve_target
from controller.core.diff import window_for
from controller.core.errors import InvalidSpec, SourceUnavailable
from controller.core.model import Credentials, WebhookSpec

API_SERVER = ("198.19.0.1",)


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("169.254.169.254", "link-local or cloud metadata"),  # AWS, GCP, Azure metadata
        ("169.254.1.1", "link-local or cloud metadata"),
        ("fe80::1", "link-local or cloud metadata"),
        ("fe80::1%eth0", "link-local or cloud metadata"),
        ("fd00:ec2::254", "link-local or cloud metadata"),  # AWS IPv6 metadata
        ("100.100.100.200", "link-local or cloud metadata"),  # Alibaba Cloud metadata
        ("198.19.0.1", "Kubernetes API server"),
        # IPv6 forms that reach an IPv4 address: IPv4-mapped, IPv4-compatible, NAT64 (RFC 6052)
        ("::ffff:169.254.169.254", "link-local or cloud metadata"),
        ("::ffff:a9fe:a9fe", "link-local or cloud metadata"),
        ("::a9fe:a9fe", "link-local or cloud metadata"),
        ("::169.254.169.254", "link-local or cloud metadata"),
        ("64:ff9b::a9fe:a9fe", "link-local or cloud metadata"),
        ("64:ff9b::169.254.169.254", "link-local or cloud metadata"),
        ("64:ff9b::a9fe:101", "link-local or cloud metadata"),  # 169.254.1.1
        ("::ffff:100.100.100.200", "link-local or cloud metadata"),
        ("::6464:64c8", "link-local or cloud metadata"),  # 100.100.100.200
        ("64:ff9b::6464:64c8", "link-local or cloud metadata"),
        ("::ffff:198.19.0.1", "Kubernetes API server"),
        ("::c613:1", "Kubernetes API server"),
        ("64:ff9b::c613:1", "Kubernetes API server"),
        ("198.19.0.2", None),
        ("127.0.0.1", None),
        ("::1", None),
        ("::ffff:127.0.0.1", None),
        ("93.184.216.34", None),
        ("64:ff9b::5db8:d822", None),  # 93.184.216.34 through NAT64
        ("::ffff:93.184.216.34", None),
        ("2001:db8::a9fe:a9fe", None),  # the same last 32 bits, but no embedding prefix
        ("2001:db8::1", None),
        ("not-an-ip", None),
    ],
)
def test_forbidden_reason(address: str, refused: str | None) -> None:
    reason = forbidden_reason(address, API_SERVER)
    assert (reason is None) if refused is None else (refused in (reason or ""))


def test_an_embedded_address_is_named_in_both_forms() -> None:
    reason = forbidden_reason("64:ff9b::a9fe:a9fe")
    assert (
        reason
        == "169.254.169.254 (as 64:ff9b::a9fe:a9fe) is a link-local or cloud metadata address"
    )


def _resolver(table: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("unknown host")
        return table[host]

    return resolve


def _record(sent: list[httpx.Request], request: httpx.Request, answer: httpx.Response) -> Any:
    sent.append(request)
    return answer


NAMES = {
    "metadata.internal": ["169.254.169.254"],
    "sneaky.example": ["93.184.216.34", "fd00:ec2::254"],  # one bad address is enough
    "receiver.example": ["93.184.216.34"],
    "dns64.example": ["64:ff9b::a9fe:a9fe"],  # a DNS64 resolver's answer for an IPv4-only name
}


@pytest.mark.parametrize(
    ("host", "allowed", "refused"),
    [
        ("metadata.internal", frozenset(), "'metadata.internal': 169.254.169.254 is a link-local"),
        ("sneaky.example", frozenset(), "fd00:ec2::254"),
        ("dns64.example", frozenset(), "169.254.169.254 (as 64:ff9b::a9fe:a9fe)"),
        ("receiver.example", frozenset(), None),
        ("receiver.example", frozenset({"other.example"}), "not in the allow-list"),
        ("receiver.example", frozenset({"receiver.example"}), None),
        ("unresolvable.example", frozenset(), None),  # the connection fails on its own
        ("169.254.169.254", frozenset(), "link-local"),
        ("[::a9fe:a9fe]", frozenset(), "link-local"),
    ],
)
async def test_refusal_resolves_names(
    host: str, allowed: frozenset[str], refused: str | None
) -> None:
    reason = await refusal(host, 80, allowed_hosts=allowed, resolve=_resolver(NAMES))
    assert (reason is None) if refused is None else (refused in (reason or ""))


# The metadata service by name and in IPv6 forms that reach it: every client is guarded alike.
METADATA_HOSTS = [
    "metadata.internal",
    "[64:ff9b::a9fe:a9fe]",
    "[::a9fe:a9fe]",
    "[::ffff:a9fe:a9fe]",
]


@pytest.mark.parametrize("host", METADATA_HOSTS)
async def test_a_webhook_to_the_metadata_service_sends_nothing(host: str) -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: _record(sent, r, httpx.Response(204)))
    async with httpx.AsyncClient(transport=transport) as client:
        sender = WebhookSender(
            client, policy=RetryPolicy(), user_agent="t", resolve=_resolver(NAMES)
        )
        spec = WebhookSpec(
            url=f"http://{host}/latest/meta-data/",
            secret_name=None,
            timeout_seconds=5,
            max_attempts=3,
        )
        with pytest.raises(InvalidSpec, match="link-local") as caught:
            await sender.deliver(resolve_target(spec, None, source="/t"), b"{}", "d-1")
    assert caught.value.reason == "WebhookNotAllowed"
    assert sent == []


async def test_a_webhook_url_from_the_secret_is_not_shown_when_refused() -> None:
    async with httpx.AsyncClient() as client:
        sender = WebhookSender(
            client, policy=RetryPolicy(), user_agent="t", resolve=_resolver(NAMES)
        )
        spec = WebhookSpec(url=None, secret_name="hook", timeout_seconds=5, max_attempts=3)
        target = resolve_target(spec, {"url": "http://metadata.internal/s3cret"}, source="/t")
        with pytest.raises(InvalidSpec) as caught:
            await sender.deliver(target, b"{}", "d-1")
    assert "metadata.internal" not in caught.value.message
    assert "s3cret" not in caught.value.message


@pytest.mark.parametrize("host", METADATA_HOSTS)
async def test_fogis_credentials_never_go_to_a_metadata_address(host: str) -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: _record(sent, r, httpx.Response(200)))
    client = FogisClient(transport=transport, resolve=_resolver(NAMES))
    try:
        with pytest.raises(SourceUnavailable, match="link-local") as caught:
            await client.fetch_matches(
                FogisSession(f"http://{host}/mdk"),
                Credentials("anna", "pw"),
                window_for(date(2026, 1, 1), 7, 30),
                date(2026, 1, 1),
            )
    finally:
        await client.aclose()
    assert caught.value.reason == "SourceNotAllowed"
    assert sent == []
