"""A webhook receiver for tests and the demo.

A stdlib HTTP server on 127.0.0.1 in a background thread. It records every request, answers from
a programmable queue of replies (204 when the queue is empty), can be taken down and brought back
on the same port to simulate an outage, and optionally checks `X-Signature` against an HMAC key.
The signature check is written out here on purpose instead of calling
`controller.adapters.webhook.sign`, so a test cannot pass by agreeing with a broken implementation.

    with WebhookReceiver(hmac_key="k") as hook:
        hook.enqueue(503, Reply(429, headers={"Retry-After": "3"}))
        ...  # point the operator at hook.url
        (first, second, third) = hook.wait_for(3)

As a program, for the demo and the end-to-end tests:
`python -m tests.fakes.receiver --port 8000 [--hmac-key K]`, driven over HTTP with
    GET  /_control/requests  every request so far (method, path, headers, payload, signatureValid)
    POST /_control/replies   {"statuses": [503, 503]}: answers for the next requests, in order,
                             instead of any still queued ([] = 204 again from now on)
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import signal
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tests.fakes.background import Answer, BackgroundServer

# Requests under this path drive the receiver instead of being recorded (see _control).
CONTROL_PREFIX = "/_control/"


@dataclass(frozen=True)
class Reply:
    """One programmed answer; `delay_seconds` holds it back to make the client time out."""

    status: int = 204
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    payload: Any  # the body parsed as JSON, None when it is not JSON
    signature_valid: bool | None  # None when the receiver has no HMAC key

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class WebhookReceiver(BackgroundServer):
    thread_name = "webhook-receiver"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hmac_key: bytes | str | None = None,
        on_request: Callable[[Received], None] | None = None,
        check: Callable[[Received], Sequence[str]] | None = None,
    ) -> None:
        super().__init__(host, port)
        # Problems of each request (tests.support.payloads.delivery_check); any found fail the
        # `with` block at its end, so every payload of a test is checked, not only the ones
        # it looks at. A callable: this module stays stdlib-only for the stand-in image.
        self._check = check
        self.problems: list[str] = []
        self._hmac_key = hmac_key.encode() if isinstance(hmac_key, str) else hmac_key
        # Runs in the handler thread after the request is recorded and before the reply is sent.
        self.on_request = on_request
        self._changed = threading.Condition()
        self._requests: list[Received] = []
        self._replies: deque[Reply] = deque()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/webhook"

    @property
    def requests(self) -> list[Received]:
        with self._changed:
            return list(self._requests)

    def enqueue(self, *replies: Reply | int) -> None:
        """Queue replies for the next requests, in order; a bare int is a status code."""
        with self._changed:
            self._replies.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until at least `count` requests arrived; returns them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} requests within {timeout}s, got {len(self._requests)}"
                )
            return list(self._requests)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        if exc_type is None and self.problems:
            raise AssertionError("deliveries broke their promises:\n" + "\n".join(self.problems))

    def up(self) -> None:
        """Start listening; after `down()` this reuses the same port, so clients keep their URL."""
        self.start()

    def down(self) -> None:
        """Close the listening socket, so new connections are refused, and abort delayed replies."""
        self.stop()

    def _signature_valid(self, headers: Mapping[str, str], body: bytes) -> bool | None:
        if self._hmac_key is None:
            return None
        expected = "sha256=" + hmac.new(self._hmac_key, body, hashlib.sha256).hexdigest()
        # http.server decodes headers as latin-1; compare bytes so odd input cannot raise.
        given = headers.get("x-signature", "").encode("latin-1")
        return hmac.compare_digest(given, expected.encode())

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        """The program's remote control (a test outside the receiver's pod drives it over HTTP)."""
        if method == "GET" and path == f"{CONTROL_PREFIX}requests":
            listing = [
                {
                    "method": r.method,
                    "path": r.path,
                    "headers": dict(r.headers),
                    "payload": r.payload,
                    "signatureValid": r.signature_valid,
                }
                for r in self.requests
            ]
            return Reply(200, {"Content-Type": "application/json"}, json.dumps(listing).encode())
        if method == "POST" and path == f"{CONTROL_PREFIX}replies":
            try:
                statuses = [int(code) for code in json.loads(body)["statuses"]]
            except (ValueError, KeyError, TypeError):
                return Reply(400, body=b'expected {"statuses": [503, ...]}')
            with self._changed:
                self._replies.clear()
            self.enqueue(*statuses)
            return Reply(204)
        return Reply(404)

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        if target.startswith(CONTROL_PREFIX):
            reply = self._control(method, target, body)
        else:
            reply = self._record(method, target, headers, body)
        return Answer(reply.status, list(reply.headers.items()), reply.body, reply.delay_seconds)

    def _record(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        received = Received(
            method, path, headers, body, payload, self._signature_valid(headers, body)
        )
        problems = list(self._check(received)) if self._check is not None else []
        with self._changed:
            self._requests.append(received)
            self.problems += [f"request {len(self._requests)}: {p}" for p in problems]
            self._changed.notify_all()
        if self.on_request is not None:
            self.on_request(received)
        with self._changed:
            return self._replies.popleft() if self._replies else Reply()


_print_lock = threading.Lock()
_SHOWN_HEADERS = (
    "user-agent",
    "content-type",
    "x-matchlist-event",
    "x-matchlist-delivery",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)


def _print_delivery(received: Received) -> None:
    lines = [f"--- {received.method} {received.path}"]
    lines += [
        f"{name}: {received.headers[name]}" for name in _SHOWN_HEADERS if name in received.headers
    ]
    if received.signature_valid is not None:
        lines.append(f"x-signature: {'valid' if received.signature_valid else 'INVALID'}")
    if received.payload is not None:
        lines.append(json.dumps(received.payload, indent=2, ensure_ascii=False))
    else:
        lines.append(received.body.decode("utf-8", "replace"))
    with _print_lock:
        print("\n".join(lines), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.receiver",
        description="Print every webhook delivery; answers 204.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--hmac-key", help="check X-Signature with this key")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with WebhookReceiver(
        host=args.host, port=args.port, hmac_key=args.hmac_key, on_request=_print_delivery
    ) as receiver:
        print(f"listening on {receiver.url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
