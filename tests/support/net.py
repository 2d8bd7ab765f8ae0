"""HTTP to servers on this machine (probes, metrics, the fakes' control APIs), stdlib only."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of one request with an optional JSON body; status 0 when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - test-made URL
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def http_get(url: str, timeout: float = 2.0) -> str | None:
    """The body of a successful GET, or None (no answer, or an error status)."""
    status, body = http("GET", url, timeout=timeout)
    return body.decode() if 200 <= status < 300 else None


def connected(listener: socket.socket) -> bool:
    """Whether a connection reached a non-blocking listener (a canary) since the last look."""
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        return False
    return True
