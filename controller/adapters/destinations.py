"""Where outgoing requests may go: no link-local or cloud-metadata address, no API server.

Whoever may create a MatchWatcher chooses its webhook URL and FOGIS baseUrl; without this they
could make the operator call the node's metadata service or the Kubernetes API and read the
answer's status code back from the watcher's status and metrics (SSRF). Host names are checked
by what they resolve to, not only as typed. The check runs just before the connection, so a DNS
answer that changes in between (rebinding) is not caught: the allow-lists close that door.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable, Iterable

Resolver = Callable[[str, int], Awaitable[list[str]]]

# Cloud metadata services outside the link-local ranges (AWS IPv6, Alibaba Cloud).
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))
# IPv6 addresses that reach the IPv4 address in their last 32 bits: IPv4-mapped (a dual-stack
# socket connects to the IPv4 address), IPv4-compatible (deprecated, still routed by some
# stacks) and NAT64's well-known prefix (RFC 6052: the node's NAT64 gateway translates it).
_EMBEDS_IPV4 = tuple(ipaddress.IPv6Network(n) for n in ("::ffff:0:0/96", "::/96", "64:ff9b::/96"))


def forbidden_reason(address: str, api_server: Iterable[str] = ()) -> str | None:
    """Why a request must not go to `address` (an IP literal), or None when it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    named = str(ip)
    if isinstance(ip, ipaddress.IPv6Address) and any(ip in net for net in _EMBEDS_IPV4):
        ip = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
        named = f"{ip} (as {named})"
    if ip in _METADATA or ip.is_link_local:
        return f"{named} is a link-local or cloud metadata address"
    if str(ip) in set(api_server):
        return f"{named} is the Kubernetes API server"
    return None


def api_server_addresses() -> frozenset[str]:
    """The API server's Service address as the kubelet gives it to every pod."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    return frozenset({host}) if host else frozenset()


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def refusal(
    host: str,
    port: int,
    *,
    allowed_hosts: frozenset[str] = frozenset(),
    resolve: Resolver = system_resolver,
    api_server: Iterable[str] = (),
) -> str | None:
    """Why a request to host:port is refused, or None. An unresolvable name is not refused
    here: the connection attempt fails on its own and says so."""
    host = host.lower().strip("[]")
    if allowed_hosts and host not in allowed_hosts:
        return f"{host!r} is not in the allow-list"
    try:
        addresses = [host] if _is_ip(host) else await resolve(host, port)
    except OSError:
        return None
    for address in addresses:
        reason = forbidden_reason(address, api_server)
        if reason is not None:
            return f"{host!r}: {reason}" if address != host else reason
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True
